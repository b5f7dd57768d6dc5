"""validate, plan and preview: what a pull request shows."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from reconciler import planfile
from reconciler.cli.base import (
    EXIT_CHANGES,
    FORMAT_OPTION,
    color,
    common_options,
    main,
)
from reconciler.manager import Manager
from reconciler.outputs import chunks


@main.command()
@common_options("config", "templates", "tenants")
def validate(manager: Manager) -> None:
    """Check the configuration and templates (no state needed)."""
    loaded = manager.validate()
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
        for chunk in chunks(result, fmt, color=color(), artifacts=artifacts_url):
            click.echo(chunk, nl=False, color=color())
    if detailed_exitcode and result.has_changes:
        sys.exit(EXIT_CHANGES)


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
