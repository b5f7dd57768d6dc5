"""``reconciler drift-issue``: the scheduled drift job's forge step, against fake GitHub and
GitLab issue APIs shaped from their documented REST APIs (tests/fixtures/forge.py): one issue
per tenant, opened on drift, updated and reopened while drift lasts, closed when it is gone,
left alone on an error; the body capped and as inert as the report; the token never shown."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from reconciler.drift_issue import LABEL, sync_issue
from reconciler.outputs.drift import MARKER
from reconciler.pr_comment import GITHUB_LIMIT, MAX_PAGES, Forge
from tests.fixtures.forge import REPO, TOKEN, Api
from tests.helpers.workspace import Workspace
from tests.test_drift import LIVE, drift, exports
from tests.test_hostile_outputs import HOSTILE, live_markup

TITLE = "Audio Conferencing drift: contoso"
SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "export-teams.ps1"


def report(text: str) -> str:
    return f"{MARKER}\n## Audio Conferencing drift: `contoso`\n\n{text}\n"


def forge(api: Api, kind: str) -> Forge:
    api.kind = kind
    if kind == "github":
        return Forge("github", api.url, REPO, 0, TOKEN, "issues")
    return Forge("gitlab", f"{api.url}/api/v4", "42", 0, TOKEN, "issues")


def text_of(issue: dict[str, Any]) -> str:
    return issue.get("body", issue.get("description"))


def writes(api: Api) -> list[tuple[str, str]]:
    return [(method, path) for method, path in api.requests if method != "GET"]


@pytest.mark.parametrize("kind", ["github", "gitlab"])
def test_drift_opens_one_issue_then_updates_it_then_closes_it(forge_api: Api, kind: str) -> None:
    target = forge(forge_api, kind)
    # look-alikes are left alone: another label, another tenant, no marker
    forge_api.add_issue(TITLE, report("by hand"), labels=("bug",))
    forge_api.add_issue("Audio Conferencing drift: fabrikam", report("x"), labels=(LABEL,))
    forge_api.add_issue(TITLE, "no marker here", labels=(LABEL,))
    if kind == "github":  # GitHub lists pull requests among issues
        pull = forge_api.add_issue(TITLE, report("a pull request"), labels=(LABEL,))
        pull["pull_request"] = {"url": "https://github.example/pull/4"}
    before = [dict(issue) for issue in forge_api.issues]

    created = sync_issue(target, "contoso", report("3 finding(s)"), 2)
    assert created.action == "created" and created.url and created.url.startswith("https://")
    ours = forge_api.issues[-1]
    assert ours["title"] == TITLE and text_of(ours) == report("3 finding(s)")
    assert forge_api.label_names(ours) == [LABEL]
    assert forge_api.issues[: len(before)] == before

    assert sync_issue(target, "contoso", report("3 finding(s)"), 2).action == "unchanged"
    updated = sync_issue(target, "contoso", report("4 finding(s)"), 2)
    assert updated.action == "updated" and updated.number == created.number
    assert text_of(ours) == report("4 finding(s)")

    closed = sync_issue(target, "contoso", report("no drift"), 0)
    assert closed.action == "closed" and ours["state"] == "closed"
    assert text_of(ours) == report("no drift")  # the issue says why it was closed
    quiet = len(writes(forge_api))
    assert sync_issue(target, "contoso", report("no drift"), 0).action == "none"
    assert len(writes(forge_api)) == quiet  # nothing to close, nothing touched

    reopened = sync_issue(target, "contoso", report("drift again"), 2)
    assert reopened.action == "reopened" and reopened.number == created.number
    assert ours["state"] in ("open", "opened") and text_of(ours) == report("drift again")
    assert len(forge_api.issues) == len(before) + 1  # still one issue for the tenant
    assert forge_api.issues[: len(before)] == before
    method = "PATCH" if kind == "github" else "PUT"
    assert {m for m, _ in writes(forge_api)} == {"POST", method}
    assert set(forge_api.auth) == {
        f"Bearer {TOKEN}" if kind == "github" else f"PRIVATE-TOKEN {TOKEN}"
    }


@pytest.mark.parametrize("kind", ["github", "gitlab"])
def test_no_drift_and_no_issue_opens_nothing(forge_api: Api, kind: str) -> None:
    result = sync_issue(forge(forge_api, kind), "contoso", report("no drift"), 0)
    assert result.action == "none" and forge_api.issues == [] and writes(forge_api) == []


@pytest.mark.parametrize("code", [1, 3, -1, 127])
def test_an_error_touches_no_issue(forge_api: Api, code: int) -> None:
    forge_api.add_issue(TITLE, report("old drift"), labels=(LABEL,))
    with pytest.raises(Exception, match="left as it is"):
        sync_issue(forge(forge_api, "github"), "contoso", report("?"), code)
    assert forge_api.requests == [] and forge_api.issues[0]["state"] == "open"


def test_an_open_issue_is_preferred_to_a_closed_one_and_found_past_the_first_page(
    forge_api: Api,
) -> None:
    for i in range(130):
        forge_api.add_issue(f"other {i}", report("x"), labels=(LABEL,))
    forge_api.add_issue(TITLE, report("long closed"), labels=(LABEL,), state="closed")
    current = forge_api.add_issue(TITLE, report("open"), labels=(LABEL,))
    result = sync_issue(forge(forge_api, "github"), "contoso", report("new"), 2)
    assert result.action == "updated" and result.number == current["number"]
    assert result.duplicates == 1 and forge_api.issues[130]["body"] == report("long closed")


def test_the_body_is_capped_and_keeps_its_marker(forge_api: Api) -> None:
    sync_issue(forge(forge_api, "github"), "contoso", "x" * (2 * GITHUB_LIMIT), 2)
    body = forge_api.issues[0]["body"]
    assert len(body) <= GITHUB_LIMIT and body.startswith(MARKER)
    assert body.rstrip().endswith("_(report truncated: the full report is in the artifacts)_")


def test_a_tenant_must_be_a_tenant_name(forge_api: Api) -> None:
    with pytest.raises(Exception, match="lowercase"):
        sync_issue(forge(forge_api, "github"), "Contoso](https://evil.example)", report("x"), 2)
    assert forge_api.requests == []


def test_listing_stops_at_the_page_cap(forge_api: Api) -> None:
    for i in range(MAX_PAGES * 100 + 1):
        forge_api.issues.append({"number": i + 1, "title": "x", "body": "", "state": "open",
                                 "labels": [{"name": LABEL}]})  # fmt: skip
    with pytest.raises(Exception, match=f"more than {MAX_PAGES} pages of issues"):
        sync_issue(forge(forge_api, "github"), "contoso", report("x"), 2)
    assert writes(forge_api) == []


# ------------------------------------------------------------------------------ the command


@pytest.fixture
def imported(example_workspace: Workspace) -> Workspace:
    """The example tenant, imported: git and the applied state agree."""
    assert example_workspace.run("import").code == 0
    return example_workspace


def issue_cli(ws: Workspace, api: Api, kind: str, *args: str, token: str = TOKEN) -> Any:
    env = (
        {"GITHUB_API_URL": api.url, "GITHUB_REPOSITORY": REPO, "GITHUB_TOKEN": token,
         "GITLAB_CI": None}
        if kind == "github"
        else {"GITLAB_CI": "true", "CI_API_V4_URL": f"{api.url}/api/v4", "CI_PROJECT_ID": "42",
              "GITLAB_TOKEN": token}
    )  # fmt: skip
    return ws.cli("drift-issue", "--tenant", "contoso", "--body-file", "drift.md", *args, env=env)


@pytest.mark.parametrize("kind", ["github", "gitlab"])
def test_the_scheduled_steps_against_the_example_tenant(
    forge_api: Api,
    imported: Workspace,
    kind: str,
) -> None:
    """drift, then drift-issue with its exit code, as the shipped jobs run them; the report's
    hostile export values stay inert in the issue."""
    forge_api.kind = kind
    ws = imported
    live = dict(LIVE)
    live["alice@contoso.com"] = (HOSTILE, "8499999", "14255550100", "18005550199")
    args = exports(ws, live)
    ran = drift(ws, *args, "--format", "markdown", "--detailed-exitcode", "--out", "drift.md")
    assert ran.code == 2, str(ran)
    opened = issue_cli(ws, forge_api, kind, "--exit-code", "2")
    assert opened.code == 0, str(opened)
    assert opened.stdout.startswith("Drift issue created: https://")
    (issue,) = forge_api.issues
    body = text_of(issue)
    assert body == (ws.root / "drift.md").read_text(encoding="utf-8") and body.startswith(MARKER)
    assert live_markup(body) == [], body

    failed = issue_cli(ws, forge_api, kind, "--exit-code", "1")
    assert failed.code == 1 and "left as it is" in failed.stderr
    assert issue["state"] in ("open", "opened")

    args = exports(ws)  # Teams has what git says again
    ran = drift(ws, *args, "--format", "markdown", "--detailed-exitcode", "--out", "drift.md")
    assert ran.code == 0, str(ran)
    closed = issue_cli(ws, forge_api, kind, "--exit-code", "0")
    assert closed.code == 0 and closed.stdout.startswith("Drift issue closed: https://")
    assert issue["state"] == "closed" and "no drift" in text_of(issue)


@pytest.mark.parametrize("kind", ["github", "gitlab"])
def test_the_command_never_prints_the_token(
    forge_api: Api,
    imported: Workspace,
    kind: str,
) -> None:
    forge_api.kind = kind
    (imported.root / "drift.md").write_text(report("x"), encoding="utf-8")
    forge_api.fail, forge_api.message = 403, f"token {TOKEN} may not write"
    refused = issue_cli(imported, forge_api, kind, "--exit-code", "2")
    assert refused.code == 1 and TOKEN not in refused.output
    assert "403 token *** may not write" in refused.stderr
    if kind == "github":
        assert "permissions: issues: write" in refused.stderr
        assert "forks" not in refused.stderr
    missing = issue_cli(imported, forge_api, kind, "--exit-code", "2", token="")
    assert missing.code == 1 and "cannot post the drift issue" in missing.stderr
    assert ("issues: write" if kind == "github" else "cannot write issues") in missing.stderr


def script_columns() -> list[str]:
    """The columns export-teams.ps1 writes, in its order (its ``[pscustomobject]@{…}``)."""
    block = re.search(r"\[pscustomobject\]@\{(.*?)\n\s*\}", SCRIPT.read_text(), re.S)
    assert block, "export-teams.ps1 builds each row as a [pscustomobject]"
    return re.findall(r"^\s*(\w+)\s*=", block[1], re.M)


def test_the_export_scripts_users_file_is_what_drift_reads(imported: Workspace) -> None:
    """The PowerShell cannot run here: its output can. ``Export-Csv -NoTypeInformation
    -Encoding utf8`` in PowerShell 7 on Windows: no BOM, no #TYPE, CRLF, every value quoted,
    booleans as True/False; with its License and Provider columns every field they carry is
    compared."""
    columns = script_columns()
    assert columns[:2] == ["UserPrincipalName", "DisplayName"]
    assert {"License", "Provider", "ConferenceId", "ServiceNumber"} <= set(columns)
    values = {
        upn: dict(zip(("DisplayName", "ConferenceId", "ServiceNumber", "TollFreeServiceNumber"),
                      row, strict=True), License="True", Provider="Microsoft")
        for upn, row in LIVE.items()
    }  # fmt: skip
    values["carol@contoso.com"] = {"DisplayName": "Carol Nguyen", "License": "False",
                                   "Provider": "Microsoft"}  # fmt: skip
    lines = [",".join(f'"{c}"' for c in columns)] + [
        ",".join(f'"{({"UserPrincipalName": upn} | row).get(c, "")}"' for c in columns)
        for upn, row in values.items()
    ]
    args = exports(imported, LIVE)  # the bridge and the settings; users.csv is the script's
    (imported.root / "users.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8"))
    same = drift(imported, *args, "--detailed-exitcode")
    assert same.code == 0, str(same)
    assert "license of each user" not in same.stdout  # the script's columns are compared

    assert lines[4].startswith('"dan@contoso.com"')
    lines[4] = lines[4].replace('"True"', '"False"')  # dan lost his license in Entra
    (imported.root / "users.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8"))
    moved = drift(imported, *args, "--detailed-exitcode")
    assert moved.code == 2 and "dan@contoso.com license" in moved.stdout, str(moved)
