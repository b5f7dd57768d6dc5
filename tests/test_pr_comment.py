"""``reconciler pr-comment``: find the plan comment by its hidden marker and update it in place,
against a fake GitHub / GitLab API served in-process on 127.0.0.1 (no network)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import main
from reconciler.errors import UserError
from reconciler.outputs.escape import visible
from reconciler.outputs.markdown import MARKER
from reconciler.pr_comment import (
    GITHUB_LIMIT,
    MAX_PAGES,
    Forge,
    forge_from_env,
    upsert_comment,
    with_marker,
)
from reconciler.redaction import scrub
from tests.fixtures.forge import PR, REPO, TOKEN, Api
from tests.helpers.cli import Result, ci_commands
from tests.helpers.workspace import NewWorkspace, Workspace


def github(forge_api: Api) -> Forge:
    return Forge("github", forge_api.url, REPO, PR, TOKEN)


def plan_body(text: str) -> str:
    return f"{MARKER}\n## Audio Conferencing plan\n\n{text}\n"


def test_creates_the_comment_when_none_has_the_marker(forge_api: Api) -> None:
    forge_api.add("LGTM")
    forge_api.add("the plan is in the comment below")  # mentions the plan, but carries no marker
    result = upsert_comment(github(forge_api), plan_body("3 emails"))
    assert result.action == "created"
    assert [c["body"] for c in forge_api.comments][-1] == plan_body("3 emails")
    assert ("POST", f"/repos/{REPO}/issues/{PR}/comments") in forge_api.requests
    assert set(forge_api.auth) == {f"Bearer {TOKEN}"}


def test_updates_the_marked_comment_in_place_across_pages(forge_api: Api) -> None:
    for i in range(130):
        forge_api.add(f"discussion {i}")
    marked = forge_api.add(plan_body("old plan"), "github-actions[bot]")
    for i in range(50):
        forge_api.add(f"more discussion {i}")
    result = upsert_comment(github(forge_api), plan_body("new plan"))
    assert result.action == "updated" and result.comment_id == marked["id"]
    assert marked["body"] == plan_body("new plan")
    assert len(forge_api.comments) == 181  # nothing new posted
    gets = [path for method, path in forge_api.requests if method == "GET"]
    assert len(gets) == 2  # the marker was on page 2 of 100; pages were followed
    assert ("PATCH", f"/repos/{REPO}/issues/comments/{marked['id']}") in forge_api.requests
    assert not any(method == "POST" for method, _ in forge_api.requests)


def test_every_push_keeps_one_comment(forge_api: Api) -> None:
    forge = github(forge_api)
    for n in range(4):
        upsert_comment(forge, plan_body(f"push {n}"))
    marked = [c for c in forge_api.comments if MARKER in c["body"]]
    assert len(marked) == 1 and marked[0]["body"] == plan_body("push 3")
    again = upsert_comment(forge, plan_body("push 3"))
    assert again.action == "unchanged"  # identical plan: no edit, no notification


def test_marker_added_and_body_capped(forge_api: Api) -> None:
    result = upsert_comment(github(forge_api), "no marker here\n" + "x" * (GITHUB_LIMIT + 5_000))
    body = forge_api.comments[-1]["body"]
    assert result.action == "created"
    assert body.startswith(MARKER) and len(body) <= GITHUB_LIMIT
    assert body.rstrip().endswith("_(comment truncated: the full plan is in the artifacts)_")


def test_a_capped_body_keeps_whole_lines_so_no_code_span_is_left_open() -> None:
    lines = [f"| `user{i}` | `[x](https://evil.example)` |" for i in range(3_000)]
    body = with_marker("\n".join(lines), 10_000)
    kept = body.split("\n\n_(")[0].split("\n")[1:]
    assert len(body) <= 10_000 and kept and set(kept) <= set(lines)


def test_duplicates_are_reported_and_the_oldest_kept(forge_api: Api) -> None:
    first = forge_api.add(plan_body("a"))
    second = forge_api.add(plan_body("b"))
    result = upsert_comment(github(forge_api), plan_body("c"))
    assert result.comment_id == first["id"] and result.duplicates == 1
    assert second["body"] == plan_body("b")


def test_api_errors_are_one_line_and_never_show_the_token(forge_api: Api) -> None:
    forge_api.fail = 403
    with pytest.raises(UserError) as error:
        upsert_comment(github(forge_api), plan_body("x"))
    message = str(error.value)
    assert "403" in message and "pull-requests: write" in message
    assert TOKEN not in message

    forge_api.fail = None
    bad = Forge("github", forge_api.url, REPO, PR, "wrong")
    with pytest.raises(UserError, match="401 Bad credentials"):
        upsert_comment(bad, plan_body("x"))


def test_token_never_follows_a_link_to_another_host(forge_api: Api) -> None:
    for i in range(3):
        forge_api.add(f"c{i}")
    forge_api.next_link = "http://attacker.invalid/steal?page=2"
    with pytest.raises(UserError, match="another host"):
        upsert_comment(github(forge_api), plan_body("x"))
    assert not any(m == "POST" for m, _ in forge_api.requests)


@pytest.mark.parametrize("kind", ["github", "gitlab"])
def test_token_never_follows_a_redirect_to_another_host(
    forge_api: Api, other_forge_api: Api, kind: str
) -> None:
    forge_api.kind = other_forge_api.kind = kind
    forge_api.redirect = other_forge_api.url
    forge = Forge(kind, forge_api.url, "42" if kind == "gitlab" else REPO, PR, TOKEN)
    with pytest.raises(UserError, match=r"redirect .* to another host .* refused") as error:
        upsert_comment(forge, plan_body("x"))
    assert TOKEN not in str(error.value)
    assert other_forge_api.requests == [] and other_forge_api.auth == []


def post_plan(ws: Workspace, forge_api: Api, kind: str = "github", timeout: float = 30.0) -> Result:
    """``pr-comment`` through the command, as CI types it, against ``forge_api``."""
    (ws.root / "plan.md").write_text(plan_body("x"), encoding="utf-8")
    api_url, repo = (forge_api.url, REPO) if kind == "github" else (f"{forge_api.url}/api/v4", "42")
    return ws.cli(
        "pr-comment",
        "--body-file",
        "plan.md",
        "--platform",
        kind,
        "--api-url",
        api_url,
        "--repo",
        repo,
        "--number",
        str(PR),
        env={"GITHUB_TOKEN": TOKEN, "GITLAB_TOKEN": TOKEN},
        timeout=timeout,
    )


@pytest.mark.parametrize("kind", ["github", "gitlab"])
def test_cli_refuses_a_redirect_to_another_port_in_one_line_without_the_token(
    forge_api: Api, other_forge_api: Api, kind: str, new_workspace: NewWorkspace
) -> None:
    """Through the command: the API answers 307 to a second server on another port of the same
    host; that server never sees a request, let alone the token."""
    forge_api.kind = other_forge_api.kind = kind
    forge_api.redirect = other_forge_api.url
    result = post_plan(new_workspace(), forge_api, kind)
    assert result.code == 1 and result.stdout == "", str(result)
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: API redirect from /") and "to another host" in line, line
    assert "Traceback" not in result.stderr and TOKEN not in result.stderr
    assert other_forge_api.requests == [] and other_forge_api.auth == []
    assert forge_api.comments == []


def test_cli_stops_at_a_pagination_that_never_ends_in_one_line(
    forge_api: Api, new_workspace: NewWorkspace
) -> None:
    """A forge whose every page links to a next one: read up to the cap, then refuse."""
    forge_api.add("LGTM")
    forge_api.endless = True
    result = post_plan(new_workspace(), forge_api, timeout=20)
    assert result.code == 1 and result.stdout == "", str(result)
    assert result.stderr.splitlines() == [
        f"error: GitHub API: more than {MAX_PAGES} pages of comments; stopped reading, "
        "nothing was posted"
    ]
    assert [m for m, _ in forge_api.requests] == ["GET"] * MAX_PAGES


def test_cli_stops_reading_comments_past_the_byte_cap(
    forge_api: Api, new_workspace: NewWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages of 100 comments of 8 KB: the second one takes the listing past 1 MiB."""
    monkeypatch.setattr("reconciler.pr_comment.MAX_ANSWER_BYTES", 2**20)
    for i in range(300):
        forge_api.add(f"{i} " + "x" * 8000)
    result = post_plan(new_workspace(), forge_api)
    assert result.code == 1 and result.stdout == "", str(result)
    assert result.stderr.splitlines() == [
        f"error: GitHub API: more than 1 MiB of answers (GET /repos/{REPO}/issues/{PR}/comments); "
        "stopped reading, nothing more was sent"
    ]
    assert [m for m, _ in forge_api.requests] == ["GET", "GET"]


@pytest.mark.parametrize(
    "html_url",
    [
        "https://github.example/pr/7#c1 \x1b[2J ##vso[task.setvariable variable=PWNED]1 "
        "::error::forged \x1b]8;;https://evil.example\x07",
        "javascript:alert(1)",
        "\x1b[2J::add-mask::x",
    ],
)
def test_cli_prints_the_forge_comment_address_only_as_an_inert_web_url(
    forge_api: Api, new_workspace: NewWorkspace, html_url: str
) -> None:
    forge_api.html_url = html_url
    result = post_plan(new_workspace(), forge_api)
    assert result.code == 0, str(result)
    assert ci_commands(result.output) == []
    assert all(line.isprintable() for line in result.output.splitlines()), str(result)
    (line,) = result.stdout.splitlines()
    web = html_url.startswith("https://")
    assert line == f"Plan comment created: {visible(html_url) if web else 'comment 1001'}"


@pytest.mark.parametrize("kind", ["github", "gitlab"])
def test_cli_never_prints_the_token_a_forge_echoes(
    forge_api: Api, new_workspace: NewWorkspace, kind: str
) -> None:
    """In an error message, in a comment's address, in a pagination link it refuses."""
    ws = new_workspace()
    forge_api.kind = kind
    forge_api.fail, forge_api.message = 403, f"token {TOKEN} may not write"
    refused = post_plan(ws, forge_api, kind)
    assert refused.code == 1 and TOKEN not in refused.output
    assert "403 token *** may not write" in refused.stderr, str(refused)

    forge_api.fail = None
    forge_api.html_url = f"https://github.example/pr/7?token={TOKEN}"
    posted = post_plan(ws, forge_api, kind)
    assert posted.code == 0 and TOKEN not in posted.output, str(posted)
    assert "Plan comment created: https://github.example/pr/7?token=***" in posted.stdout

    forge_api.comments.clear()
    for i in range(101):
        forge_api.add(f"c{i}")
    forge_api.next_link = f"http://attacker.invalid/steal?token={TOKEN}"
    stolen = post_plan(ws, forge_api, kind)
    assert stolen.code == 1 and TOKEN not in stolen.output, str(stolen)
    assert "(http://attacker.invalid/steal?token=***) refused" in stolen.stderr


def test_cli_refuses_unusable_replies_in_one_line_without_quoting_them(
    forge_api: Api, new_workspace: NewWorkspace
) -> None:
    """A marked comment whose id is not a number, a same-origin ``next`` link http.client will
    not send: one line each, not a traceback quoting the reply."""
    ws = new_workspace()
    forge_api.add(plan_body("old"))["id"] = "##vso[task.setvariable variable=PWNED]1"
    no_id = post_plan(ws, forge_api)
    assert no_id.code == 1 and no_id.stderr.splitlines() == [
        "error: GitHub API: unexpected answer (no numeric id)"
    ], str(no_id)

    forge_api.comments.clear()
    forge_api.add("LGTM")
    forge_api.next_link = f"{forge_api.url}/page 2"
    unsendable = post_plan(ws, forge_api)
    assert unsendable.code == 1 and "Traceback" not in unsendable.output, str(unsendable)
    (line,) = unsendable.stderr.splitlines()
    assert line.startswith("error: GitHub API unreachable (GET /page 2): URL can't contain"), line


def test_a_token_is_blanked_as_written_and_as_a_url_writes_it() -> None:
    said = "bad token a/b c in https://x.example/?t=a%2Fb%20c"
    assert scrub(said, ["a/b c"]) == "bad token *** in https://x.example/?t=***"
    assert scrub(said, [""]) == said


def test_a_redirect_within_the_api_is_followed(forge_api: Api, other_forge_api: Api) -> None:
    forge_api.redirect = forge_api.url + "/moved"
    with pytest.raises(UserError, match="404 no route GET /moved/repos/"):
        upsert_comment(github(forge_api), plan_body("x"))
    assert [path for _, path in forge_api.requests] == [
        f"/repos/{REPO}/issues/{PR}/comments",
        f"/moved/repos/{REPO}/issues/{PR}/comments",
    ]
    assert forge_api.auth == [f"Bearer {TOKEN}"] * 2 and other_forge_api.requests == []


def test_unreachable_api(forge_api: Api) -> None:
    dead = Forge("github", "http://127.0.0.1:9", REPO, PR, TOKEN)
    with pytest.raises(UserError, match="unreachable"):
        upsert_comment(dead, plan_body("x"))


def test_gitlab_notes(forge_api: Api) -> None:
    forge_api.kind = "gitlab"
    forge = forge_from_env(
        None,
        env={
            "GITLAB_CI": "true",
            "CI_API_V4_URL": f"{forge_api.url}/api/v4",
            "CI_PROJECT_ID": "42",
            "CI_MERGE_REQUEST_IID": str(PR),
            "GITLAB_TOKEN": TOKEN,
        },
    )
    assert forge.kind == "gitlab"
    assert upsert_comment(forge, plan_body("one")).action == "created"
    assert upsert_comment(forge, plan_body("two")).action == "updated"
    assert [c["body"] for c in forge_api.comments] == [plan_body("two")]
    assert (
        "PUT",
        f"/api/v4/projects/42/merge_requests/{PR}/notes/{forge_api.comments[0]['id']}",
    ) in forge_api.requests
    assert set(forge_api.auth) == {f"PRIVATE-TOKEN {TOKEN}"}


def test_settings_from_the_github_actions_environment(tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"number": PR, "pull_request": {"number": PR}}))
    forge = forge_from_env(
        env={
            "GITHUB_API_URL": "https://api.github.com",
            "GITHUB_REPOSITORY": REPO,
            "GITHUB_TOKEN": TOKEN,
            "GITHUB_EVENT_PATH": str(event),
        }
    )
    assert forge == Forge("github", "https://api.github.com", REPO, PR, TOKEN)
    with pytest.raises(UserError) as error:
        forge_from_env(env={"GITHUB_REPOSITORY": REPO})
    assert "GITHUB_TOKEN" in str(error.value) and "pull_request" in str(error.value)
    with pytest.raises(UserError, match="https"):
        forge_from_env(
            api_url="ftp://x", env={"GITHUB_REPOSITORY": REPO, "GITHUB_TOKEN": TOKEN}, number=1
        )


def test_cli_posts_the_rendered_plan(forge_api: Api, example_workspace: Workspace) -> None:
    """The workflow's two steps: render the markdown plan, then post it; twice = one comment."""
    ws = example_workspace
    env = {
        "GITHUB_API_URL": forge_api.url,
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_EVENT_PATH": None,
        "GITLAB_CI": None,
    }
    rendered = ws.cli(
        "plan",
        "--format",
        "markdown",
        "--artifacts-url",
        "https://github.example/run/1/artifacts/9",
    )
    assert rendered.code == 0, str(rendered)
    (ws.root / "plan.md").write_text(rendered.output, encoding="utf-8")
    for expected in ("created", "updated"):
        if expected == "updated":  # the next push changes the plan
            (ws.root / "plan.md").write_text(rendered.output + "\n_edited_\n")
        result = ws.cli("pr-comment", "--body-file", "plan.md", "--number", str(PR), env=env)
        assert result.code == 0, str(result)
        assert f"Plan comment {expected}: https://github.example/" in result.output
    (comment,) = forge_api.comments
    assert comment["body"].startswith(MARKER)
    assert (
        "[JSON plan and email previews](https://github.example/run/1/artifacts/9)"
        in (comment["body"])
    )
    assert "| contoso |" in comment["body"] and comment["body"].endswith("_edited_\n")

    failed = ws.cli("pr-comment", "--body-file", "plan.md", env={**env, "GITHUB_TOKEN": ""})
    assert failed.code == 1 and "--number or a pull_request event" in failed.output
    assert "GITHUB_TOKEN (pass the workflow's token to the step" in failed.output
    offered = {name for param in main.commands["pr-comment"].params for name in param.opts}
    assert set(re.findall(r"--[a-z-]+", failed.output)) <= offered, "names only real options"


# ------------------------------------------------------------ the comment's markdown (render)


def tenant_plan(
    name: str, users: int, kind: str = "details-changed", suppressed: bool = False
) -> Any:
    from reconciler.plan import Change, PlannedEmail, TenantPlan, UserChange

    upns = [f"user{i:06}@{name}.example" for i in range(users)]
    plan = TenantPlan(name, "0f1e2d3c", 4)
    plan.user_changes = [
        UserChange(u, "update", (Change("conference_id", "1000000", f"{2000000 + i}"),))
        for i, u in enumerate(upns)
    ]
    plan.emails = [PlannedEmail(u, u, kind, ("conference ID changed",), suppressed) for u in upns]
    return plan


def balanced(text: str) -> bool:
    return text.count("<details") == text.count("</details>")


def test_comment_counts_per_tenant_and_folds_long_tables() -> None:
    from reconciler.outputs import markdown
    from reconciler.plan import Plan

    small, large = tenant_plan("alpha", 3), tenant_plan("beta", 25, "disabled", suppressed=True)
    out = markdown.render(Plan([small, large]))
    assert (
        "**3** email(s): 3 details-changed · **3** user change(s) · **0** setting change(s)" in out
    )
    assert (
        "**25** email(s): 25 disabled · **25** suppressed (not sent) · **25** user change(s)" in out
    )
    assert "<details open><summary>Emails (3)</summary>" in out  # short: unfolded
    assert "<details><summary>Emails (25)</summary>" in out  # long: folded
    assert balanced(out)


def test_comment_artifacts_link_is_a_safe_markdown_link() -> None:
    from reconciler.outputs import markdown
    from reconciler.plan import Plan

    plan = Plan([tenant_plan("alpha", 1)])
    out = markdown.render(plan, artifacts="https://ci.example/run 1/(artifacts)")
    assert "[JSON plan and email previews](https://ci.example/run%201/%28artifacts%29)" in out
    hostile = markdown.render(plan, artifacts="javascript:alert(1)")
    assert "](javascript" not in hostile and "`javascript:alert(1)`" in hostile
    assert "Artifacts" not in markdown.render(plan)


def test_comment_with_no_changes_says_so() -> None:
    from reconciler.outputs import markdown
    from reconciler.plan import Plan, TenantPlan

    out = markdown.render(Plan([TenantPlan("alpha", "0f1e2d3c", 4)]))
    assert "No changes: the configuration matches the applied state" in out
    assert "_No changes._" in out


def test_hundred_thousand_users_fit_in_one_comment() -> None:
    import time

    from reconciler.outputs import markdown
    from reconciler.plan import Plan

    plan = Plan([tenant_plan("alpha", 100_000)])
    started = time.perf_counter()
    out = markdown.render(plan)
    assert time.perf_counter() - started < 5
    assert len(out) <= markdown.LIMIT and out.startswith(MARKER) and balanced(out)
    assert "| alpha | 0 | 100000 | 0 | 100000 | 0 | 0 | 0 | 0 |" in out
    assert "user000000@alpha.example" in out and "user099999@alpha.example" in out
    assert len(with_marker(out, GITHUB_LIMIT)) == len(out)  # nothing for pr-comment to cut


def test_hundreds_of_tenants_keep_the_summary_and_drop_sections() -> None:
    from reconciler.outputs import markdown
    from reconciler.plan import Plan

    plan = Plan([tenant_plan(f"tenant-{i:03}", 30) for i in range(300)])
    out = markdown.render(plan)
    assert len(out) <= markdown.LIMIT and balanced(out)
    summary_rows = re.findall(r"^\| tenant-\d{3} \| 0 \| 30 \|", out, flags=re.M)
    assert len(summary_rows) == 300  # every tenant counted
    shown = re.findall(r"^### tenant-\d{3}$", out, flags=re.M)
    assert 0 < len(shown) < 300
    assert f"_{300 - len(shown)} more tenant(s) not shown here: see the JSON plan" in out
    assert shown[0] == "### tenant-000"  # sections kept in order, from the first
