"""A tenant's files against the live tenant: init, fmt, import and drift."""

from __future__ import annotations

import shlex
import sys
import uuid
from pathlib import Path

import click

from reconciler.cli.base import (
    EXIT_CHANGES,
    EXIT_ERROR,
    FORMAT_OPTION,
    common_options,
    config_again,
    export_option,
    lock_timeout_option,
    main,
)
from reconciler.errors import UserError
from reconciler.manager import Manager
from reconciler.outputs.escape import visible


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
    from reconciler.adopt import run_init

    config = manager.options.config
    done = run_init(config, name, (source, bridge, settings), default_number, users_per_file)
    for note in done.notes:
        click.echo(visible(note))
    if done.problems:
        for problem in done.problems:
            click.echo(visible(str(problem)), err=True)
        click.echo(f"{len(done.problems)} problem(s) found; nothing was written.", err=True)
        sys.exit(EXIT_ERROR)
    again = "".join(f" {shlex.quote(word)}" for word in config_again(config))
    click.echo(done.summary)
    click.echo(
        visible(
            f"Wrote {config / name}: tenant.yaml and {done.files - 1} users file(s), "
            f"{done.users} user(s). Next: `reconciler import --tenant {name}{again}` "
            "records it as applied without sending any email; "
            f"`reconciler plan{again}` then shows no change."
        )
    )


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
    changes, looked_at, problems = manager.format(paths, check)
    if problems:
        for problem in problems:
            click.echo(visible(str(problem)), err=True)
        click.echo(f"{len(problems)} problem(s) found; nothing was written.", err=True)
        sys.exit(EXIT_ERROR)
    for path in changes:
        click.echo(visible(f"{'would reformat' if check else 'reformatted'} {path}"))
    verb = "would be reformatted" if check else "reformatted"
    click.echo(
        f"{len(changes)} file(s) {verb}, {looked_at - len(changes)} already formatted.", err=True
    )
    if check and changes:
        config = config_again(manager.options.config)
        fix = ["reconciler", "fmt", *config, *map(str, changes)]
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
