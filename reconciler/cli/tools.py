"""Tools around the pipelines: schema, pr-comment and drift-issue."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from reconciler.cli.base import (
    EXIT_ERROR,
    main,
)
from reconciler.errors import UserError
from reconciler.outputs.escape import visible


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
    from reconciler.azure_devops import azure_from_env, set_status, upsert_thread
    from reconciler.pr_comment import forge_from_env, upsert_comment

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
