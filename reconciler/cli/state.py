"""The applied state: state show, queue, migrate and forget, and history."""

from __future__ import annotations

import sys

import click

from reconciler.cli.base import (
    EXIT_CHANGES,
    common_options,
    lock_timeout_option,
    main,
)
from reconciler.errors import UserError
from reconciler.manager import Manager
from reconciler.model import tenant_name_problem
from reconciler.outputs.escape import json_text, visible


@main.group()
def state() -> None:
    """Inspect or move the applied state."""


@state.command("show")
@common_options("state", "tenants")
def state_show(manager: Manager) -> None:
    """The applied state as JSON (message bodies and PINs are never shown)."""
    manager.read_only = True
    store = manager.reader
    names = [
        n for n in store.tenants() if not manager.options.tenants or n in manager.options.tenants
    ]
    tenants = []
    for name in names:
        applied = store.load(name)
        assert applied is not None
        tenants.append(
            {
                "name": name,
                "lineage": applied.lineage,
                "serial": applied.serial,
                **applied.tenant,
                "users": dict(applied.users),
                "files": applied.files,
                "outbox": list(store.messages(name)),
                "history": store.history(name),
            }
        )
    click.echo(json_text({"tenants": tenants}, indent=2))


@state.command("queue")
@common_options("state", "tenants")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 2 while mail is queued, 0 when none is, 1 on error.",
)
def state_queue(manager: Manager, fmt: str, detailed_exitcode: bool) -> None:
    """How the outbox is going, per tenant and per apply: queued (since when), delivered (last
    when), failed, suppressed. Counts and times only: never a body, PIN or address."""
    from reconciler.outputs.queue import render

    manager.read_only = True
    store = manager.reader
    progress = {
        name: store.waves(name)
        for name in store.tenants()
        if not manager.options.tenants or name in manager.options.tenants
    }
    click.echo(render(progress, fmt), nl=False)
    if detailed_exitcode and any(w.queued for waves in progress.values() for w in waves):
        sys.exit(EXIT_CHANGES)


@state.command("migrate")
@common_options("state", "tenants")
@lock_timeout_option
@click.option(
    "--to",
    "target",
    required=True,
    metavar="PATH|URL",
    help="Destination state: an SQLite path or a postgresql:// URL.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace the copied tenants' state in a destination that already has some "
    "(their history there is kept).",
)
@click.option(
    "--drop-queued",
    is_flag=True,
    help="With --force: drop the email still queued in the destination for the tenants "
    "replaced (they are never sent).",
)
def state_migrate(manager: Manager, target: str, force: bool, drop_queued: bool) -> None:
    """Copy every tenant's state, outbox and history to another backend (--state is the
    source, left unchanged)."""
    done, destination = manager.migrate(target, force, drop_queued)
    click.echo(
        f"Copied {len(done.tenants)} tenant(s) ({', '.join(done.tenants)}) from "
        f"{manager.store.description} to {destination}: {done.users} "
        f"user(s), {done.messages} outbox message(s) ({done.queued} still queued), "
        f"{done.history} history entries."
    )
    if done.replaced:
        dropped = f", {done.dropped} queued email(s) dropped" if done.dropped else ""
        click.echo(
            f"Replaced the previous state of {', '.join(done.replaced)} there (its history "
            f"kept{dropped})."
        )
    if done.untouched:
        click.echo(f"Left {', '.join(done.untouched)} there as it was.")
    click.echo(
        "Point --state (RECONCILER_STATE) at the destination from now on: the source marks "
        "these tenants migrated and refuses to apply them."
    )


@state.command("new-key")
@common_options()
def state_new_key(manager: Manager) -> None:
    """Print a new key for RECONCILER_OUTBOX_KEY: a PostgreSQL state seals its queued emails
    with it, so its write-ahead log and backups never hold a PIN."""
    key, fingerprint = manager.new_outbox_key()
    click.echo(key)
    click.echo(
        f"outbox key {fingerprint}: keep it in the deploy pipeline's secrets "
        "(RECONCILER_OUTBOX_KEY), never in git or the database. To replace it, put the new key "
        "first, a space, then the old one; drop the old one once `reconciler state queue` "
        "shows nothing queued.",
        err=True,
    )


@state.command("forget")
@common_options("state")
@lock_timeout_option
@click.argument("name", metavar="TENANT")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--drop-queued",
    is_flag=True,
    help="Also drop the tenant's queued emails (they are never sent).",
)
def state_forget(manager: Manager, name: str, yes: bool, drop_queued: bool) -> None:
    """Remove a tenant's applied state on purpose (a tenant you stopped managing here).

    Its history stays, with a 'forget' entry. The next apply treats the tenant as new: adopt its
    users without emails with `reconciler import`.
    """
    if why := tenant_name_problem(name):
        raise UserError(f"tenant {name!r} {why}")
    store = manager.store
    applied = store.load(name)
    if applied is None:
        raise UserError(f"{name} has no applied state in {store.description}; nothing to forget")
    if not yes:
        if not sys.stdin.isatty():
            raise UserError(
                f"no terminal to confirm on: pass --yes to forget {name}; nothing was done"
            )
        click.confirm(
            f"Forget the applied state of {name} (serial {applied.serial}, "
            f"{len(applied.users)} user(s))?",
            abort=True,
        )
    done = manager.forget(name, drop_queued)
    dropped = f", {done.dropped} queued email(s) dropped" if done.dropped else ""
    click.echo(
        f"Forgot {name} (serial {done.serial}, {done.users} user(s){dropped}); its "
        "history stays. The next apply treats it as new: `reconciler import` adopts "
        "its users without emails."
    )


@main.command()
@common_options("state", "tenants")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def history(manager: Manager, fmt: str) -> None:
    """Past applies, imports and forgets: time, tenant, lineage (the state a row belongs to:
    `state forget` starts a new one), serial, emails by type."""
    manager.read_only = True
    rows = [
        r
        for r in manager.reader.history()
        if not manager.options.tenants or r["tenant"] in manager.options.tenants
    ]
    if fmt == "json":
        click.echo(json_text(rows, indent=2))
        return
    for r in rows:
        emails = ", ".join(f"{n} {k}" for k, n in sorted(r["emails"].items())) or "no email"
        state = f"lineage {r['lineage'][:8]} " if r["lineage"] else ""
        click.echo(
            visible(
                f"{r['applied_at']}  {r['tenant']}  {state}serial {r['serial']}  {r['kind']}  "
                f"{emails}  ({r['suppressed']} suppressed)  by {r['actor']}"
            )
        )
