"""The command line: parse options, call the manager, print. No logic lives here."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shlex
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email import policy
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from reconciler import __version__, planfile
from reconciler.apply import (
    DEFAULT_DELIVERY_TIMEOUT,
    DEFAULT_RETRY_BACKOFF,
    DeliveryLimits,
    run_apply,
)
from reconciler.config import tenant_findings
from reconciler.delivery import deliver
from reconciler.delivery.options import default_sender, mail_transport
from reconciler.emails import (
    TEST_MESSAGE,
    check_templates,
    compose_test_message,
    message_id,
    sender_for,
)
from reconciler.errors import ConfigError, UserError
from reconciler.manager import Manager, Options
from reconciler.model import tenant_name_problem
from reconciler.outputs import chunks
from reconciler.outputs.escape import json_text, visible
from reconciler.plan import Plan
from reconciler.state import MailQueued, NewMessage

EXIT_ERROR, EXIT_CHANGES, EXIT_LIMITED = 1, 2, 3
"""``apply`` exits 3 when it only stopped at a sending limit or throttling: nothing failed, the
rest is queued and the next apply sends it first."""


class _Rate(click.ParamType):
    """``N/min`` (or plain ``N``): messages per minute."""

    name = "rate"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        text = str(value).strip().lower().removesuffix("/min").strip()
        try:
            rate = float(text)
        except ValueError:
            rate = 0.0
        if not 0 < rate < float("inf"):
            self.fail(f"{value!r} is not a rate such as 30/min", param, ctx)
        return rate


RATE = _Rate()


_COMMON_OPTIONS = {
    "config": click.option(
        "--config",
        "config",
        type=click.Path(path_type=Path),
        default="tenants",
        envvar="RECONCILER_CONFIG",
        show_default=True,
        help="Folder holding one folder per tenant.",
    ),
    "state": click.option(
        "--state",
        default=".reconciler/state.db",
        envvar="RECONCILER_STATE",
        show_default=True,
        help="State: an SQLite path or a postgresql:// URL (docs/STATE.md).",
    ),
    "mail": click.option(
        "--mail",
        default="maildir:.reconciler/mail",
        envvar="RECONCILER_MAIL_URL",
        show_default=True,
        help="maildir:PATH, graph://SENDER (Exchange Online), smtp://, "
        "smtp+starttls:// or smtps:// URL (?auth=xoauth2 for OAuth).",
    ),
    "default_from": click.option(
        "--default-from",
        envvar="RECONCILER_DEFAULT_FROM",
        help="Default sender ('Name <address>' or address); required for SMTP.",
    ),
    "templates": click.option(
        "--templates",
        type=click.Path(path_type=Path),
        envvar="RECONCILER_TEMPLATES",
        help="Email templates folder (default ./templates, else the packaged copy).",
    ),
    "tenants": click.option(
        "--tenant", "tenants", multiple=True, help="Only this tenant (repeatable; default all)."
    ),
}
_DEFAULTS = Options()


def common_options(*offered: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The options of SPEC §5 that a command uses, accepted after its name. An option the
    command would ignore is not offered, so `init foo --tenant bar` or `fmt --mail …` is refused
    instead of silently doing something else than the administrator meant; their environment
    variables stay harmless, as pipelines set them for every step."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            values = {
                name: kwargs.pop(name) if name in offered else getattr(_DEFAULTS, name)
                for name in _COMMON_OPTIONS
            }
            for name in values["tenants"]:
                if why := tenant_name_problem(name):
                    click.echo(
                        f"error: --tenant {name!r} {why}; a tenant is named by its folder",
                        err=True,
                    )
                    sys.exit(EXIT_ERROR)
            if values["templates"] is None and Path("templates").is_dir():
                values["templates"] = Path("templates")
            options = Options(**values, lock_timeout=kwargs.pop("lock_timeout", 0.0))
            manager = Manager(options)
            try:
                return command(manager, **kwargs)
            except ConfigError as exc:
                for problem in exc.problems:
                    click.echo(visible(str(problem)), err=True)
                click.echo(
                    f"{len(exc.problems)} problem(s) found; nothing was planned, applied or sent.",
                    err=True,
                )
                sys.exit(EXIT_ERROR)
            except UserError as exc:
                click.echo(f"error: {visible(str(exc))}", err=True)
                sys.exit(EXIT_ERROR)
            finally:
                manager.close()

        for name in reversed(list(_COMMON_OPTIONS)):
            if name in offered:
                wrapper = _COMMON_OPTIONS[name](wrapper)
        return wrapper

    unknown = set(offered) - set(_COMMON_OPTIONS)
    assert not unknown, f"no common option {unknown}"
    return decorate


def export_option(*names: str, help: str, required: bool = False) -> Callable[..., Any]:
    """An exported file of the live tenant (``init``, ``drift``): it must exist."""
    return click.option(
        *names,
        required=required,
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        help=help,
    )


FORMAT_OPTION = click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "markdown", "json"]),
    default="text",
    show_default=True,
)
"""The report formats of ``plan`` and ``drift``."""


def lock_timeout_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--lock-timeout",
        type=float,
        default=0.0,
        show_default=True,
        help="Seconds to wait for another apply's lock.",
    )(command)


def retry_backoff_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--retry-backoff",
        type=click.FloatRange(min=0),
        default=DEFAULT_RETRY_BACKOFF,
        envvar="RECONCILER_RETRY_BACKOFF",
        show_default=True,
        metavar="SECONDS",
        help="Pause before retrying a temporary delivery failure (SMTP 4xx, server "
        "unreachable), doubled at each retry (env RECONCILER_RETRY_BACKOFF).",
    )(command)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="reconciler")
def main() -> None:
    """Reconcile Microsoft 365 Audio Conferencing users with their YAML configuration."""
    _silence_sdk_logs()


SDK_LOGGERS = ("azure", "msal")
"""azure-identity, azure-core and MSAL: their warnings quote the identity platform's reply,
which may echo a secret, and their lower levels request headers and bodies."""


def _silence_sdk_logs() -> None:
    """Keep the SDKs' log records off the terminal: with no handler, Python's last resort
    would print their warnings to stderr. Our own error line says what failed, scrubbed."""
    for name in SDK_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [logging.NullHandler()]
        logger.propagate = False


@main.command()
@common_options("config", "templates", "tenants")
def validate(manager: Manager) -> None:
    """Check the configuration and templates (no state needed)."""
    problems = check_templates(manager.options.templates)
    try:
        loaded = manager.load()
    except ConfigError as exc:
        raise ConfigError([*exc.problems, *problems]) from None
    if problems:
        raise ConfigError(problems)
    if loaded.missing:
        raise UserError(
            f"no tenant folder {', '.join(loaded.missing)} under {manager.options.config}"
        )
    users = sum(len(t.users) for t in loaded.tenants.values())
    click.echo(f"Configuration valid: {len(loaded.tenants)} tenant(s), {users} user(s).")


@main.command()
@common_options("config", "state", "templates", "tenants")
@FORMAT_OPTION
@click.option("--out", type=click.Path(path_type=Path), help="Save the plan for `apply FILE`.")
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 when nothing changes, 2 when something does, 1 on error.",
)
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@click.option(
    "--artifacts-url",
    metavar="URL",
    help="markdown: link the comment to the CI artifacts (JSON plan, previews).",
)
def plan(
    manager: Manager,
    fmt: str,
    out: Path | None,
    detailed_exitcode: bool,
    quiet: bool,
    artifacts_url: str | None,
) -> None:
    """Show what apply would change and which emails each user would get."""
    manager.read_only = True
    loaded = manager.load(reuse_state=True)
    result = manager.plan(loaded, manager.tenant_names(loaded))
    if out is not None:
        planfile.save(result, out, manager.history_counts(loaded.tenants), manager.options.config)
    if not quiet:
        for chunk in chunks(result, fmt, color=_color(), artifacts=artifacts_url):
            click.echo(chunk, nl=False, color=_color())
    if detailed_exitcode and result.has_changes:
        sys.exit(EXIT_CHANGES)


@main.command()
@common_options("config", "state", "mail", "default_from", "templates", "tenants")
@lock_timeout_option
@retry_backoff_option
@click.argument("planfile", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--auto-approve", is_flag=True, help="Apply without asking.")
@click.option(
    "--allow-mass-disable",
    is_flag=True,
    help="Allow disabling more than 10% of a tenant's enabled users.",
)
@click.option(
    "--allow-mass-email",
    is_flag=True,
    envvar="RECONCILER_ALLOW_MASS_EMAIL",
    help="Allow emailing more than 10% of the users of a tenant that has applied state "
    "(otherwise refused: one edit must not email a whole tenant by surprise).",
)
@click.option(
    "--allow-new-state",
    is_flag=True,
    envvar="RECONCILER_ALLOW_NEW_STATE",
    help="Allow emailing more than 10 users of a tenant that has no applied state "
    "(otherwise refused: a wrong --state would re-onboard everyone; adopt "
    "existing users with `import`).",
)
@click.option(
    "--delivery-timeout",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    default=DEFAULT_DELIVERY_TIMEOUT,
    show_default=True,
    envvar="RECONCILER_DELIVERY_TIMEOUT",
    help="Stop delivering after this long; the rest stays queued for the next apply.",
)
@click.option(
    "--max-rate",
    type=RATE,
    metavar="N/min",
    envvar="RECONCILER_MAX_RATE",
    help="Send at most N messages a minute (Exchange Online SMTP submission: 30).",
)
@click.option(
    "--max-messages",
    type=click.IntRange(min=0),
    metavar="N",
    envvar="RECONCILER_MAX_MESSAGES",
    help="Send at most N messages in this apply; the rest stays queued for the next.",
)
@click.option(
    "--quiet",
    "-q",
    is_flag=True,
    help="No plan, progress or summary: only errors and the paths of suppressed "
    "messages (the operator must act on those).",
)
def apply(
    manager: Manager,
    planfile: Path | None,
    auto_approve: bool,
    allow_mass_disable: bool,
    allow_mass_email: bool,
    allow_new_state: bool,
    delivery_timeout: float,
    max_rate: float | None,
    max_messages: int | None,
    quiet: bool,
    retry_backoff: float,
) -> None:
    """Send exactly the planned emails and record the new state.

    Exit codes: 0 everything delivered; 1 an error, a refusal, or mail still queued or failed;
    3 stopped only at a sending limit or throttling (nothing failed; the rest is queued and the
    next apply sends it first).
    """
    outcome = run_apply(
        manager,
        ClickUI(quiet=quiet),
        saved=planfile,
        auto_approve=auto_approve,
        allow_mass_disable=allow_mass_disable,
        allow_mass_email=allow_mass_email,
        allow_new_state=allow_new_state,
        limits=DeliveryLimits(retry_backoff, delivery_timeout, max_rate, max_messages),
    )
    for path in outcome.suppressed:
        click.echo(visible(f"suppressed: kept for the operator (inform the user yourself): {path}"))
    applied = ", ".join(f"{name} (serial {serial})" for name, serial in outcome.applied)
    if not quiet:
        click.echo(
            f"Applied: {applied or 'nothing to change'}. {outcome.delivered} email(s) "
            f"delivered, {len(outcome.suppressed)} suppressed, {outcome.queued_count} "
            f"queued, {len(outcome.failed)} failed."
        )
    for mid, reason in sorted(outcome.failed.items()):
        click.echo(
            visible(
                f"failed: {outcome.about.get(mid, '')} {mid}: {reason} (refused for "
                "good: not retried)"
            ),
            err=True,
        )
    for mid in outcome.queued:
        why = outcome.why_queued.get(mid, "not delivered")
        if why not in outcome.limits:
            click.echo(visible(f"queued: {outcome.about.get(mid, '')} {mid}: {why}"), err=True)
    for why, count in sorted(outcome.untried.items()):
        if why not in outcome.limits:
            click.echo(visible(f"queued: {count} more email(s) not attempted: {why}"), err=True)
    for limit, held in sorted(outcome.held_back().items()):
        click.echo(visible(f"held back: {held} email(s) by a sending limit: {limit}"), err=True)
    if outcome.queued_count:
        click.echo(
            f"{outcome.queued_count} email(s) still queued: the next apply delivers them first.",
            err=True,
        )
    if outcome.only_limited:
        sys.exit(EXIT_LIMITED)
    if not outcome.ok:
        sys.exit(EXIT_ERROR)


@main.command()
@common_options("config")
@click.argument("name", metavar="TENANT")
@export_option(
    "--from",
    "source",
    required=True,
    help="Users export: CSV (Export-Csv) or JSON (ConvertTo-Json) of "
    "Get-CsOnlineDialInConferencingUser, one row per user.",
)
@export_option(
    "--bridge",
    help="Export of Get-CsOnlineDialInConferencingBridge (ServiceNumbers, "
    "DefaultServiceNumber); default: the numbers the users have.",
)
@export_option(
    "--settings",
    help="Export of Get-CsOnlineDialInConferencingTenantSettings; default: the "
    "documented defaults.",
)
@click.option("--default-number", help="The bridge's default toll number.")
@click.option("--users-per-file", type=click.IntRange(min=1), default=1000, show_default=True)
def init(
    manager: Manager,
    name: str,
    source: Path,
    bridge: Path | None,
    settings: Path | None,
    default_number: str | None,
    users_per_file: int,
) -> None:
    """Write a new tenant folder from a Teams export, then validate it (adopt a tenant)."""
    from reconciler.config import export

    if why := tenant_name_problem(name):
        raise UserError(f"tenant {name!r} {why}")
    config = manager.options.config
    if (config / name).exists():
        raise UserError(f"{config / name} already exists; init never overwrites a tenant")
    adoption = export.adopt(
        export.read_export(source),
        export.read_export(bridge) if bridge else None,
        export.read_export(settings) if settings else None,
        default_number,
    )
    for note in adoption.notes:
        click.echo(visible(note))
    config.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".init-", dir=config))
    try:
        folder = staging / name
        written = 0
        for relative, text in adoption.files(users_per_file):
            path = folder / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            written += 1
        problems = adoption.all_problems(*tenant_findings(staging, name))
        if problems:
            for problem in problems:
                click.echo(visible(str(problem)), err=True)
            click.echo(f"{len(problems)} problem(s) found; nothing was written.", err=True)
            sys.exit(EXIT_ERROR)
        folder.rename(config / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    again = "".join(f" {shlex.quote(word)}" for word in _config_again(config))
    click.echo(adoption.summary())
    click.echo(
        visible(
            f"Wrote {config / name}: tenant.yaml and {written - 1} users file(s), "
            f"{len(adoption.users)} user(s). Next: `reconciler import --tenant {name}{again}` "
            "records it as applied without sending any email; "
            f"`reconciler plan{again}` then shows no change."
        )
    )


def _config_again(config: Path) -> list[str]:
    """``--config DIR`` when this command was given one: to repeat in a command we suggest."""
    given = click.get_current_context().get_parameter_source("config")
    return ["--config", str(config)] if given is ParameterSource.COMMANDLINE else []


@main.command()
@common_options("config", "state", "tenants")
@export_option(
    "--from",
    "source",
    required=True,
    help="Live users export, as init reads it (CSV or JSON of Get-CsOnlineDialInConferencingUser).",
)
@export_option(
    "--bridge",
    help="Live export of Get-CsOnlineDialInConferencingBridge; without it the bridge is "
    "not compared.",
)
@export_option(
    "--settings",
    help="Live export of Get-CsOnlineDialInConferencingTenantSettings; without it the "
    "settings (and whether Teams sends its own emails) are not compared.",
)
@FORMAT_OPTION
@click.option(
    "--out", type=click.Path(path_type=Path, dir_okay=False), help="Write the report here."
)
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 when Teams has what git says, 2 on drift, 1 on error.",
)
def drift(
    manager: Manager,
    source: Path,
    bridge: Path | None,
    settings: Path | None,
    fmt: str,
    out: Path | None,
    detailed_exitcode: bool,
) -> None:
    """Compare a live Teams export with the YAML and the applied state (read-only: no email,
    no state written): which side moved, per user, setting and bridge number."""
    from reconciler.drift_run import ExportProblems, LiveExport, run_drift
    from reconciler.outputs.drift import render

    if len(manager.options.tenants) != 1:
        raise UserError("drift needs exactly one --tenant (the tenant the export is from)")
    try:
        report = run_drift(
            manager, manager.options.tenants[0], LiveExport(source, bridge, settings)
        )
    except ExportProblems as exc:
        for problem in exc.problems:
            click.echo(visible(str(problem)), err=True)
        click.echo(f"{len(exc.problems)} problem(s) found; nothing was compared.", err=True)
        sys.exit(EXIT_ERROR)
    text = render(report, fmt)
    if out is None:
        click.echo(text, nl=False)
    else:
        partial = out.with_name(f".{out.name}.{uuid.uuid4().hex}.tmp")
        try:
            partial.write_text(text, encoding="utf-8")
            partial.replace(out)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
        click.echo(visible(f"Drift report written to {out}."), err=True)
    if detailed_exitcode and report.has_drift:
        sys.exit(EXIT_CHANGES)


@main.command("fmt")
@common_options("config")
@click.option(
    "--check",
    is_flag=True,
    help="Change nothing: list the files fmt would change, exit 1 if there are any.",
)
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path), metavar="[PATH]...")
def fmt_(manager: Manager, check: bool, paths: tuple[Path, ...]) -> None:
    """Lay out tenant and users files canonically, keeping comments and meaning.

    PATH is a tenant folder, a folder of tenants or a file; default: every tenant under --config.
    """
    from reconciler.config import fmt

    changes, looked_at, problems = fmt.changed_files(paths, manager.options.config)
    if problems:
        for problem in problems:
            click.echo(visible(str(problem)), err=True)
        click.echo(f"{len(problems)} problem(s) found; nothing was written.", err=True)
        sys.exit(EXIT_ERROR)
    for path, text in changes:
        if not check:
            fmt.write(path, text)
        click.echo(visible(f"{'would reformat' if check else 'reformatted'} {path}"))
    verb = "would be reformatted" if check else "reformatted"
    click.echo(
        f"{len(changes)} file(s) {verb}, {looked_at - len(changes)} already formatted.", err=True
    )
    if check and changes:
        config = _config_again(manager.options.config)
        fix = ["reconciler", "fmt", *config, *(str(path) for path, _ in changes)]
        click.echo(visible(f"To fix: {shlex.join(fix)}"), err=True)
        sys.exit(EXIT_ERROR)


@main.command("import")
@common_options("config", "state", "tenants")
@lock_timeout_option
@click.option("--force", is_flag=True, help="Overwrite a tenant's existing applied state.")
def import_(manager: Manager, force: bool) -> None:
    """Record the configuration as applied without sending anything (adopt a tenant)."""
    from reconciler.adopt import run_import

    for done in run_import(manager, force):
        click.echo(
            f"Imported {done.tenant}: {done.users} user(s), serial {done.serial}; no email sent."
        )


@main.group()
def state() -> None:
    """Inspect or move the applied state."""


@state.command("show")
@common_options("state", "tenants")
def state_show(manager: Manager) -> None:
    """The applied state as JSON (message bodies and PINs are never shown)."""
    manager.read_only = True
    store = manager.store
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
    store = manager.store
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
    from reconciler.state import open_store
    from reconciler.state.migrate import migrate

    destination = open_store(target, option="--to")
    try:
        done = migrate(
            manager.store,
            destination,
            only=manager.options.tenants,
            force=force,
            drop_queued=drop_queued,
            lock_timeout=manager.options.lock_timeout,
        )
    finally:
        destination.close()
    click.echo(
        f"Copied {len(done.tenants)} tenant(s) ({', '.join(done.tenants)}) from "
        f"{manager.store.description} to {destination.description}: {done.users} "
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
    try:
        with manager.locked([name]):
            done = store.forget(name, drop_queued=drop_queued)
    except MailQueued as exc:
        raise UserError(
            f"{name}: {exc}; run apply to deliver them, or pass --drop-queued "
            "(they would never be sent); nothing was done"
        ) from None
    if done is None:
        raise UserError(f"{name} has no applied state any more; nothing to forget")
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
        for r in manager.store.history()
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


@main.command("test-email")
@common_options("config", "mail", "default_from", "templates", "tenants")
@retry_backoff_option
@click.option("--to", "to", required=True, help="Where to send the test message.")
def test_email(manager: Manager, to: str, retry_backoff: float) -> None:
    """Send one test message with the tenant's From settings and sample details (no PIN)."""
    if len(manager.options.tenants) != 1:
        raise UserError("test-email needs exactly one --tenant")
    loaded = manager.load()
    name = manager.options.tenants[0]
    if name not in loaded.tenants:
        raise UserError(f"no tenant folder {name} under {manager.options.config}")
    tenant = loaded.tenants[name].tenant
    sender = sender_for(
        tenant["settings"], default_sender(manager.options.mail, manager.options.default_from)
    )
    mid = message_id(name, uuid.uuid4().hex, 0, to, TEST_MESSAGE)
    try:
        message = compose_test_message(
            tenant_name=name,
            tenant=tenant,
            to=to,
            sender=sender,
            message_id=mid,
            date=datetime.now(UTC),
            templates=manager.templates,
        )
    except ValueError as exc:  # the header classes refuse a malformed --to
        raise UserError(f"--to {to!r}: {exc}") from None
    sample = NewMessage(
        to, TEST_MESSAGE, mid, sender.address, [to], message.as_bytes(policy=policy.SMTP), False
    )
    with mail_transport(manager.options.mail, sender.address) as transport:
        report = deliver(
            [sample],
            transport,
            on_delivered=lambda m: None,
            on_failed=lambda m, r: None,
            backoff=retry_backoff,
        )
    if not report.delivered:
        reason = report.failed.get(mid) or report.queued_reasons.get(mid, "not delivered")
        raise UserError(f"sample not delivered to {to}: {reason}")
    click.echo(
        visible(
            f"Sample sent to {to} from {sender.display_name} <{sender.address}> via "
            f"{transport.description}."
        )
    )


@main.command()
@common_options("config", "state", "mail", "default_from", "templates", "tenants")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Folder for index.html and one .eml + .html per email (an older preview "
    "there is replaced).",
)
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
def preview(manager: Manager, out: Path, quiet: bool) -> None:
    """Render every email the plan would send, PIN masked, without sending or recording."""
    from reconciler.preview import write_previews

    result = write_previews(manager, out)
    if not quiet:
        click.echo(f"{len(result.emails)} email preview(s) written; open {result.index}")


@main.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Folder to write tenant, users and plan JSON Schemas to.",
)
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
def schema(out: Path, quiet: bool) -> None:
    """Export the JSON Schemas (tenant.yaml, users files, JSON plan) for editors and CI."""
    from reconciler.schema_export import export_schemas, vscode_settings

    try:
        written = export_schemas(out)
    except UserError as exc:
        click.echo(f"error: {visible(str(exc))}", err=True)
        sys.exit(EXIT_ERROR)
    if not quiet:
        for path in written:
            click.echo(f"wrote {path}")
        click.echo("VS Code (YAML extension), .vscode/settings.json:")
        click.echo(vscode_settings(out), nl=False)


def body_file_option(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--body-file``: the markdown a forge command posts (``what``)."""
    return click.option(
        "--body-file",
        type=click.File("r", encoding="utf-8"),
        default="-",
        show_default=True,
        help=f"The markdown {what}.",
    )


def posted(done: str, where: str, note: str | int) -> None:
    """What a forge command did, where (escaped), and a note on stderr if any."""
    click.echo(f"{done}: {visible(where)}")
    if note:
        click.echo(note, err=True)


REPO_OPTION = click.option(
    "--repo",
    help="owner/name (GitHub; env GITHUB_REPOSITORY) or project id (GitLab; env CI_PROJECT_ID).",
)
API_URL_OPTION = click.option("--api-url", help="env GITHUB_API_URL / CI_API_V4_URL.")


@main.command("pr-comment")
@body_file_option("plan (`plan --format markdown`)")
@click.option(
    "--platform",
    type=click.Choice(["github", "gitlab", "azure"]),
    help="Default: azure in Azure Pipelines (TF_BUILD set), gitlab under GitLab CI "
    "(GITLAB_CI set), else github.",
)
@REPO_OPTION
@click.option(
    "--number",
    type=click.IntRange(min=1),
    help="Pull request number (default: from the GitHub event, "
    "SYSTEM_PULLREQUEST_PULLREQUESTID) or merge request IID "
    "(env CI_MERGE_REQUEST_IID).",
)
@API_URL_OPTION
@click.option(
    "--status",
    type=click.Choice(["succeeded", "failed"]),
    default="succeeded",
    show_default=True,
    help="Azure DevOps: the pull request status reconciler/plan to set (failed when "
    "validate or plan failed and the body holds the errors).",
)
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
def pr_comment(
    body_file: Any,
    platform: str | None,
    repo: str | None,
    number: int | None,
    api_url: str | None,
    status: str,
    quiet: bool,
) -> None:
    """Post the plan as the pull request's plan comment, or update it in place.

    The token comes from GITHUB_TOKEN, GITLAB_TOKEN or SYSTEM_ACCESSTOKEN (never a command-line
    argument)."""
    from reconciler.pr_comment import (
        azure_from_env,
        forge_from_env,
        set_status,
        upsert_comment,
        upsert_thread,
    )

    platform = platform or ("azure" if os.environ.get("TF_BUILD") else None)
    body = body_file.read()
    try:
        if platform == "azure":
            azure = azure_from_env(number=number)
            result = upsert_thread(azure, body)
            set_status(
                azure,
                status,
                "Audio Conferencing plan"
                if status == "succeeded"
                else "The configuration is invalid or could not be planned",
            )
        else:
            forge = forge_from_env(platform, api_url=api_url, project=repo, number=number)
            result = upsert_comment(forge, body)
    except UserError as exc:
        click.echo(f"error: {visible(str(exc))}", err=True)
        sys.exit(EXIT_ERROR)
    if platform == "azure" and body_file.name not in ("-", "<stdin>"):
        # Azure Pipelines shows the markdown in the run's summary too.
        click.echo(f"##vso[task.uploadsummary]{os.path.abspath(body_file.name)}")
    if not quiet:
        where = (
            result.url or f"{'thread' if platform == 'azure' else 'comment'} {result.comment_id}"
        )
        posted(
            f"Plan comment {result.action}",
            where,
            result.duplicates
            and f"note: {result.duplicates} older plan comment(s) also carry the marker; "
            "only the first is kept up to date",
        )


@main.command("drift-issue")
@click.option(
    "--tenant", required=True, help="The tenant the report is about (the issue's title names it)."
)
@body_file_option("report (`drift --format markdown`)")
@click.option(
    "--exit-code",
    type=int,
    required=True,
    help="What `drift --detailed-exitcode` exited with: 2 opens or updates the issue, 0 "
    "closes it, anything else touches nothing and fails.",
)
@click.option(
    "--platform",
    type=click.Choice(["github", "gitlab"]),
    help="Default: gitlab under GitLab CI (GITLAB_CI set), else github.",
)
@REPO_OPTION
@API_URL_OPTION
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
def drift_issue(
    tenant: str,
    body_file: Any,
    exit_code: int,
    platform: str | None,
    repo: str | None,
    api_url: str | None,
    quiet: bool,
) -> None:
    """Open, update, reopen or close the tenant's one drift issue from a drift report.

    The token comes from GITHUB_TOKEN (issues: write) or GITLAB_TOKEN (never a command-line
    argument)."""
    from reconciler.drift_issue import drifted, sync_issue, title_of
    from reconciler.pr_comment import forge_from_env

    try:
        drifted(exit_code)  # an error is refused before anything is read or asked
        title_of(tenant)
        body = body_file.read()
        forge = forge_from_env(platform, api_url=api_url, project=repo, issues=True)
        result = sync_issue(forge, tenant, body, exit_code)
    except UserError as exc:
        click.echo(f"error: {visible(str(exc))}", err=True)
        sys.exit(EXIT_ERROR)
    if not quiet:
        where = result.url or (f"issue {result.number}" if result.number else "no issue")
        posted(
            f"Drift issue {result.action}",
            where,
            result.duplicates
            and f"note: {result.duplicates} other drift issue(s) of {tenant} carry the marker; "
            "only one is kept up to date",
        )


class ClickUI:
    """apply's terminal: the plan, the prompt, and a progress bar only on a TTY (none of them
    but the prompt when ``quiet``)."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def show_plan(self, plan: Plan) -> None:
        if self.quiet:
            return
        for chunk in chunks(plan, "text", color=_color()):
            click.echo(chunk, nl=False, color=_color())

    def confirm(self, plan: Plan) -> bool:
        if not sys.stdin.isatty():
            raise UserError(
                "no terminal to confirm on: review with `plan` and pass --auto-approve, "
                "or apply a saved plan file; nothing was done"
            )
        answer = click.prompt(
            "Apply this plan and send these emails? Only 'yes' is accepted",
            default="",
            show_default=False,
        )
        return answer.strip() == "yes"

    def echo(self, message: str, err: bool = False) -> None:
        click.echo(message, err=err)

    @contextlib.contextmanager
    def progress(self, total: int, label: str) -> Iterator[Callable[[object], None]]:
        if self.quiet or total < 20 or not sys.stderr.isatty():
            yield lambda _message: None
            return
        with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
            yield lambda _message: bar.update(1)


def _color() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ
