"""Values from a pull request cannot become live markup in the PR comment or escapes in the
terminal. The markdown is rendered by a real CommonMark + GFM renderer (markdown-it-py with
tables and linkify, as GitHub would) and the HTML is checked: no link, image, mention or tag that
we did not write, every value shown verbatim inside its code span."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from reconciler.outputs import render
from reconciler.outputs.escape import code_span, json_text, markdown_text, visible
from reconciler.outputs.text import _value
from reconciler.plan import Change, Plan, PlannedEmail, TenantPlan, UserChange
from tests.fixtures.forge import PR, REPO, TOKEN, Api
from tests.helpers.cli import ci_commands
from tests.helpers.tenants import TOLL, enabled_users, tenant_doc, user_doc, write_tenant
from tests.helpers.workspace import NewWorkspace, Workspace

GFM = MarkdownIt("gfm-like")
OUR_TAGS = {
    "details",
    "summary",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "code",
    "strong",
    "em",
    "h2",
    "h3",
    "p",
    "blockquote",
    "hr",
    "ul",
    "li",
    "br",
}
HOSTILE = (
    "x` [a](https://evil.example) ![i](https://evil.example/i.png) @org/team "
    "<img src=x onerror=alert(1)> www.evil.example **b** ``` | ~~s~~ &amp; :warning: "
    "https://evil.example evil.example me@evil.example #1 !2 ~bug"
)
TERMINAL = "\x1b[31mred\x1b]8;;https://evil.example\x07link \u202eevil \x9b2J \u2028 \x7f"
"""Characters a terminal acts on: validation refuses them, the outputs do not rely on it."""
REFERENCE = re.compile(
    r"[@#!~%$&^][\w\"]|\bGH-\d+\b|\b[0-9a-f]{7,40}\b|\[\w+:\w|\*iteration:", re.IGNORECASE
)
"""A mention (GitHub, GitLab) or a reference a forge links: an issue, merge request, label,
milestone... (``#12``, ``GH-12``, ``!3``, ``~bug``, ``%v1``, ``[vulnerability:1]``,
``*iteration:1``) or a commit SHA (``deadbeef``)."""


def live_markup(markdown: str) -> list[str]:
    """Tags in the rendered HTML that we did not write, and mentions outside code."""
    rendered = GFM.render(markdown)
    tags = {m.lower() for m in re.findall(r"<([a-zA-Z][a-zA-Z0-9]*)", rendered)}
    outside_code = re.sub(r"<code>.*?</code>", "", rendered, flags=re.S)
    references = REFERENCE.findall(html.unescape(outside_code))
    return sorted(tags - OUR_TAGS) + references


def plain_text(markdown: str) -> str:
    """What a reader sees: the rendered text without tags, whitespace runs as one space."""
    text = html.unescape(re.sub(r"<[^>]+>", " ", GFM.render(markdown)))
    return " ".join(text.split())


def code_contents(markdown: str) -> list[str]:
    return [html.unescape(c) for c in re.findall(r"<code>(.*?)</code>", GFM.render(markdown))]


@settings(max_examples=400, deadline=None, derandomize=True)
@given(value=st.text(alphabet=st.sampled_from("`|\\ <>[]()!@*_~&:#a\n"), max_size=30))
def test_a_code_span_shows_any_value_verbatim_and_nothing_else(value: str) -> None:
    markdown = f"| a |\n|---|\n| {code_span(value)} |\n"
    assert live_markup(markdown) == []
    [content] = code_contents(markdown)
    shown = visible(value)
    # CommonMark strips one leading and trailing space when both are there.
    assert content in (shown, shown.strip(" ")) or content.strip(" ") == shown.strip(" ")


MARKUP_CHARACTERS = "/@#!~&%$^`[]()<>*_|\\: 0\u200d\n\x1b"
LINK_PIECES = [
    "www.",
    "https://",
    "evil",
    ".example",
    ".AL",
    "org/team",
    "GH-",
    "deadbee",
    "[vulnerability:",
    "*iteration:",
    *MARKUP_CHARACTERS,
]
LINKISH = st.lists(st.sampled_from(LINK_PIECES), max_size=12).map("".join)
"""Text made of the pieces of links, mentions, references and markup."""


@settings(max_examples=500, deadline=None, derandomize=True)
@given(value=st.one_of(st.text(max_size=40), LINKISH))
def test_markdown_text_has_no_live_markup_and_shows_the_text(value: str) -> None:
    quoted = f"> :warning: {markdown_text(value)}\n"
    cell = f"| a |\n|---|\n| {markdown_text(value)} |\n"
    assert live_markup(quoted) == [] and live_markup(cell) == []
    assert plain_text(cell) == " ".join(f"a {visible(value)}".split())


def test_markdown_text_puts_links_mentions_and_references_in_code() -> None:
    assert markdown_text("see https://evil.example, @org/team and #12 now") == (
        "see `https://evil.example,` `@org/team` and `#12` now"
    )
    assert markdown_text("*not* <b>bold</b> 30%) a.") == r"\*not\* \<b\>bold\</b\> 30%) a."


TACOMA = {"number": "+12065550177", "type": "toll", "location": "Tacoma `WA`"}


def applied_acme(new_workspace: NewWorkspace) -> tuple[Workspace, dict[str, dict[str, Any]]]:
    """A workspace whose tenant ``acme`` (two enabled users, returned) is applied: what a pull
    request then changes."""
    ws = new_workspace()
    users = enabled_users(2, domain="acme.com")
    write_tenant(ws.config, "acme", tenant_doc(), users)
    ws.apply()
    return ws, users


@pytest.fixture
def hostile(new_workspace: NewWorkspace) -> Workspace:
    """An applied tenant whose pull request puts :data:`HOSTILE` (which validates) in a bridge
    location, the From display name, a user's display name and ``send_conference_info``."""
    ws, users = applied_acme(new_workspace)
    hostile_tenant = tenant_doc(override=(HOSTILE, "conf@acme.com"))
    hostile_tenant["bridge"]["numbers"][0]["location"] = HOSTILE
    hostile_tenant["bridge"]["numbers"].append(TACOMA)
    users["u000@acme.com"] = user_doc("7000000", display_name=HOSTILE, send_conference_info=HOSTILE)
    write_tenant(ws.config, "acme", hostile_tenant, users)
    return ws


def test_markdown_plan_with_hostile_values_has_no_live_markup(hostile: Workspace) -> None:
    result = hostile.run("plan", "--format", "markdown")
    assert result.code == 0, str(result)
    assert live_markup(result.stdout) == []
    assert HOSTILE in code_contents(result.stdout)  # the display name, shown as written
    assert "{'" not in result.stdout  # structured values as JSON, never Python reprs
    assert json.dumps(TACOMA, ensure_ascii=False) in code_contents(result.stdout)


def test_text_and_json_plans_show_hostile_values_as_written(hostile: Workspace) -> None:
    text = hostile.run("plan")
    assert text.code == 0 and all(printable(line) for line in text.output.splitlines())
    assert f'display_name: "User 000" -> {json.dumps(HOSTILE)}' in text.stdout, text.stdout
    assert json.dumps(TACOMA, ensure_ascii=False) in text.stdout and "{'" not in text.stdout
    data = hostile.run("plan", "--format", "json")
    assert data.code == 0 and printable(data.stdout.rstrip("\n"))
    changes = json.loads(data.stdout)["tenants"][0]["settings_changes"]
    after = {c["path"]: c["after"] for c in changes}
    assert after["bridge.numbers[0].location"] == HOSTILE and after["bridge.numbers[3]"] == TACOMA


def test_pr_comment_of_a_hostile_plan_has_no_live_markup(
    hostile: Workspace, forge_api: Api
) -> None:
    body = posted_comment(hostile, forge_api)
    assert live_markup(body) == [] and HOSTILE in code_contents(body)


def posted_comment(ws: Workspace, forge_api: Api) -> str:
    """The CI's two steps, each a command: render the markdown plan, then post it; the body
    the forge received, which is the rendered plan."""
    rendered = ws.run("plan", "--format", "markdown")
    assert rendered.code == 0, str(rendered)
    (ws.root / "plan.md").write_text(rendered.stdout, encoding="utf-8")
    command = ["pr-comment", "--body-file", "plan.md", "--platform", "github", "--repo", REPO]
    posted = ws.cli(
        *command, "--api-url", forge_api.url, "--number", str(PR), env={"GITHUB_TOKEN": TOKEN}
    )
    assert posted.code == 0, str(posted)
    (comment,) = forge_api.comments
    assert comment["body"] == rendered.stdout
    return str(comment["body"])


def test_terminal_escapes_in_the_configuration_are_refused_without_reaching_the_terminal(
    hostile: Workspace,
) -> None:
    """Validation refuses control and bidi characters; its messages do not echo them."""
    tenant = tenant_doc()
    tenant["bridge"]["numbers"][0]["location"] = TERMINAL
    users = enabled_users(2, domain="acme.com")
    users["u000@acme.com"] = user_doc("7000000", display_name="\u202eevil\x1b[2J")
    write_tenant(hostile.config, "acme", tenant, users)
    for command in (("plan",), ("plan", "--format", "markdown"), ("validate",)):
        result = hostile.run(*command)
        assert result.code == 1 and result.stdout == "", str(result)
        assert all(printable(line) for line in result.stderr.splitlines()), result.stderr
        assert "acme/tenant.yaml:" in result.stderr and "acme/users.yaml:" in result.stderr


@pytest.mark.parametrize(
    "value", ["\x1b[31mred", "a\u202eb", "\x9b31m", "\x07bell", "a\rb", "\u2028", "\ufeff", "\x00"]
)
def test_terminal_values_never_carry_control_or_bidi_characters(value: str) -> None:
    for rendered in (visible(value), _value(value), _value({"k": value})):
        assert rendered.isprintable(), repr(rendered)
    assert visible("ZWNJ \u200c and ZWJ \u200d stay") == "ZWNJ \u200c and ZWJ \u200d stay"


def printable(text: str) -> bool:
    return (text.replace("\u200c", "").replace("\u200d", "")).isprintable()


@settings(max_examples=300, deadline=None, derandomize=True)
@given(value=st.text())
def test_visible_text_is_always_printable(value: str) -> None:
    assert printable(visible(value))
    if printable(value):
        assert visible(value) == value


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(value=JSON_VALUES)
def test_json_text_is_the_same_data_with_nothing_live_on_a_terminal(value: Any) -> None:
    for text in (json_text(value), json_text(value, indent=2)):
        assert json.loads(text) == value
        assert all(printable(line) for line in text.split("\n"))


def hostile_plan(value: str) -> Plan:
    """Every place of a plan a configuration value can reach, holding ``value``."""
    tenant = TenantPlan("acme", "0f1e2d3c", 3, warnings=[value])
    structured = {"number": "+14255550100", "location": value, "list": [value]}
    tenant.settings_changes = [Change("bridge.numbers", [structured], [value, 1])]
    tenant.user_changes = [
        UserChange(value, "update", (Change("display_name", value, structured),)),
        UserChange(value, "create", ()),
    ]
    tenant.emails = [PlannedEmail(value, value, "details-changed", (value, value), False)]
    return Plan([tenant])


@pytest.mark.parametrize("value", [HOSTILE, TERMINAL, HOSTILE + TERMINAL])
def test_no_output_format_lets_a_value_act(value: str) -> None:
    plan = hostile_plan(value)
    text = render(plan, "text")
    assert all(printable(line) for line in text.splitlines()), text
    assert visible(value) in text and "{'" not in text
    markdown = render(plan, "markdown")
    assert live_markup(markdown) == [] and all(printable(line) for line in markdown.splitlines())
    assert visible(value) in code_contents(markdown) and "{'" not in markdown
    assert '{"number": "+14255550100", "location": ' in markdown
    data = render(plan, "json")
    assert printable(data.rstrip("\n"))
    assert json.loads(data)["tenants"][0]["user_changes"][0]["changes"][0]["after"] == {
        "number": "+14255550100",
        "location": value,
        "list": [value],
    }


def test_error_lines_are_printed_without_escapes(new_workspace: NewWorkspace) -> None:
    ws = new_workspace()
    write_tenant(
        ws.config,
        "acme",
        tenant_doc(),
        'users:\n  "a\\e[31m@acme.com": {license: false}\n  b@acme.com: {x\\u202e: 1}\n',
    )
    (ws.config / "acme" / "users" / "\x1b[2Jevil.yaml").parent.mkdir()
    (ws.config / "acme" / "users" / "\x1b[2Jevil.yaml").write_text("users: []\n")
    result = ws.run("validate")
    assert result.code == 1 and "Traceback" not in result.output, str(result)
    assert "\x1b" not in result.output and "\u202e" not in result.output
    assert "\\x1b[2Jevil.yaml" in result.stderr


CI_COMMANDS = (
    "##vso[task.setvariable variable=PWNED]1 ##[error]forged ::add-mask::x "
    "##VSO[task.complete result=Succeeded]"
)
"""Azure Pipelines and GitHub Actions logging commands that validate as free text."""
LINE_START_COMMAND = "::stop-commands::pwned"
"""GitHub acts on ``::`` only at the start of a line (after spaces)."""


def test_ci_logging_commands_in_values_are_printed_readable_but_inert(
    new_workspace: NewWorkspace,
) -> None:
    """Through the commands a CI log shows: the text, markdown and JSON plans, validation
    errors and init's notes, where a value can also start a line."""
    ws, users = applied_acme(new_workspace)
    tenant = tenant_doc(override=(CI_COMMANDS, "conf@acme.com"))
    tenant["bridge"]["numbers"][0]["location"] = LINE_START_COMMAND
    users["u000@acme.com"] = user_doc("7000000", display_name=CI_COMMANDS, pin_reset=CI_COMMANDS)
    write_tenant(ws.config, "acme", tenant, users)
    for command in (("plan",), ("plan", "--format", "markdown"), ("plan", "--format", "json")):
        result = ws.run(*command)
        assert result.code == 0 and ci_commands(result.output) == [], str(result)
    text = ws.run("plan").stdout
    assert f"pin-reset: PIN reset requested ({visible(CI_COMMANDS)})" in text, text
    assert visible(CI_COMMANDS).startswith("\\x23#vso[task.setvariable variable=PWNED]1")
    data = json.loads(ws.run("plan", "--format", "json").stdout)
    assert data["tenants"][0]["emails"][0]["reasons"] == [f"PIN reset requested ({CI_COMMANDS})"]

    users["u001@acme.com"] = {**users["u001@acme.com"], CI_COMMANDS: 1}
    write_tenant(ws.config, "acme", tenant, users)
    invalid = ws.run("validate")
    assert invalid.code == 1 and "unknown key" in invalid.stderr, str(invalid)
    assert ci_commands(invalid.output) == [], str(invalid)

    export = ws.root / f"{LINE_START_COMMAND}.json"
    row = {
        "SipAddress": "sip:a@fabrikam.com",
        "DisplayName": CI_COMMANDS,
        "ConferenceId": "8400001",
    }
    export.write_text(json.dumps([row]), encoding="utf-8")
    adopted = ws.cli(
        "init", "fabrikam", "--from", export.name, "--default-number", TOLL, "--config", "new"
    )
    assert adopted.code == 0 and "no License column" in adopted.stdout, str(adopted)
    assert ci_commands(adopted.output) == [], str(adopted)
    assert adopted.stdout.startswith(visible(LINE_START_COMMAND)), str(adopted)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(value=st.lists(st.sampled_from(["#", ":", "vso", "VSO", "[", " ", "\n", "x"])).map("".join))
def test_no_printed_value_holds_a_ci_logging_command(value: str) -> None:
    for text in (visible(value), json_text(value), json_text({value: [value]}, indent=2)):
        assert ci_commands(text) == [] and "::" not in text, text
    assert json.loads(json_text(value)) == value


AUTOLINKS = (
    "GH-12 gh-7 deadbeef a5c3785ed8d6a35868bc169f07e40e889087fd2e owner/repo#12 @user !12 "
    "~label %milestone [vulnerability:3] *iteration:4"
)
"""References GitHub or GitLab would link or notify from in a comment's text."""


def test_forge_references_in_requests_and_tenant_names_stay_code_in_the_comment(
    new_workspace: NewWorkspace, forge_api: Api
) -> None:
    """A request's text (shown in the emails' "Why" column) and tenant folder names (headings,
    the summary table) are written in the pull request: they reach the comment as code."""
    ws, users = applied_acme(new_workspace)
    users["u000@acme.com"] = user_doc("7000000", pin_reset=AUTOLINKS)
    users["u001@acme.com"] = user_doc("7000001", send_conference_info=AUTOLINKS)
    write_tenant(ws.config, "acme", tenant_doc(), users)
    for name in ("gh-12", "deadbeef"):
        write_tenant(ws.config, name, tenant_doc(), enabled_users(1, domain=f"{name}.example"))
    body = posted_comment(ws, forge_api)
    assert live_markup(body) == [], body
    shown = code_contents(body)
    assert AUTOLINKS in shown and "gh-12" in shown and "deadbeef" in shown
    assert f"PIN reset requested ({code_span(AUTOLINKS)})" in body
    assert f"conference info requested ({code_span(AUTOLINKS)})" in body
