"""Values from a pull request cannot become live markup in the PR comment or escapes in the
terminal. The markdown is rendered by a real CommonMark + GFM renderer (markdown-it-py with
tables and linkify, as GitHub would) and the HTML is checked: no link, image, mention or tag that
we did not write, every value shown verbatim inside its code span."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from reconciler.outputs.escape import code_span, markdown_text, visible
from reconciler.outputs.text import _value
from tests.helpers import Workspace, enabled_users, tenant_doc, user_doc, write_tenant

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
    "<img src=x onerror=alert(1)> www.evil.example **b** ``` | ~~s~~ &amp; :warning:"
)


def live_markup(markdown: str) -> list[str]:
    """Tags in the rendered HTML that we did not write, and mentions outside code."""
    rendered = GFM.render(markdown)
    tags = {m.lower() for m in re.findall(r"<([a-zA-Z][a-zA-Z0-9]*)", rendered)}
    outside_code = re.sub(r"<code>.*?</code>", "", rendered, flags=re.S)
    mentions = re.findall(r"@[A-Za-z0-9]", html.unescape(outside_code))
    return sorted(tags - OUR_TAGS) + mentions


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


@settings(max_examples=300, deadline=None, derandomize=True)
@given(value=st.text(max_size=40))
def test_markdown_text_has_no_live_markup(value: str) -> None:
    assert live_markup(f"> :warning: {markdown_text(value)}\n") == []
    assert live_markup(f"| a |\n|---|\n| {markdown_text(value)} |\n") == []


def test_markdown_plan_with_hostile_values_has_no_live_markup(tmp_path: Path) -> None:
    ws = Workspace(tmp_path, str(tmp_path / "state" / "state.db"))
    users = enabled_users(2, domain="acme.com")
    write_tenant(ws.config, "acme", tenant_doc(), users)
    ws.apply()
    hostile_tenant = tenant_doc(override=(HOSTILE, "conf@acme.com"))
    hostile_tenant["bridge"]["numbers"][0]["location"] = HOSTILE
    hostile_tenant["bridge"]["numbers"].append(
        {"number": "+12065550177", "type": "toll", "location": "Tacoma `WA`"}
    )
    users["u000@acme.com"] = user_doc("7000000", display_name=HOSTILE, send_conference_info=HOSTILE)
    write_tenant(ws.config, "acme", hostile_tenant, users)
    result = ws.run("plan", "--format", "markdown")
    assert result.code == 0, str(result)
    assert live_markup(result.stdout) == []
    assert HOSTILE in code_contents(result.stdout)  # the display name, shown as written
    assert "{'" not in result.stdout  # structured values as JSON, never Python reprs
    assert '{"number": "+12065550177", "type": "toll", "location": "Tacoma `WA`"}' in code_contents(
        result.stdout
    )


@pytest.mark.parametrize(
    "value", ["\x1b[31mred", "a\u202eb", "\x9b31m", "\x07bell", "a\rb", "\u2028", "\ufeff", "\x00"]
)
def test_terminal_values_never_carry_control_or_bidi_characters(value: str) -> None:
    for rendered in (visible(value), _value(value), _value({"k": value})):
        assert rendered.isprintable(), repr(rendered)
    assert visible("ZWNJ \u200c and ZWJ \u200d stay") == "ZWNJ \u200c and ZWJ \u200d stay"


def test_error_lines_are_printed_without_escapes(tmp_path: Path) -> None:
    ws = Workspace(tmp_path, str(tmp_path / "state" / "state.db"))
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
