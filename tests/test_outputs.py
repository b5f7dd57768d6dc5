"""The plan renderers: text (terminal), markdown (pull-request comment), json (schema'd)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import click.testing
import jsonschema
import pytest

from reconciler.config.semantic import effective_tenant, effective_user
from reconciler.model import EMAIL_TYPES, Applied, TenantConfig
from reconciler.outputs import RENDERERS, markdown, render, text
from reconciler.outputs import json as json_output
from reconciler.outputs.escape import markdown_text
from reconciler.plan import (
    Change,
    Plan,
    PlannedEmail,
    TenantPlan,
    UserChange,
    plan_missing,
    plan_tenant,
)
from tests.helpers.cli import Env
from tests.helpers.workspace import NewWorkspace, Workspace

ROOT = Path(__file__).resolve().parent.parent
PLAN_SCHEMA = json.loads((ROOT / "schemas" / "plan.schema.json").read_text(encoding="utf-8"))
ANSI = re.compile(r"\x1b\[[0-9;]*m")

DEFAULT, OTHER, TOLL_FREE = "+14255550100", "+12065550123", "+18005550199"


def tenant_doc(**settings: Any) -> dict[str, Any]:
    return {
        "settings": settings,
        "bridge": {
            "numbers": [
                {"number": DEFAULT, "type": "toll"},
                {"number": OTHER, "type": "toll"},
                {"number": TOLL_FREE, "type": "toll_free"},
            ],
            "default_number": DEFAULT,
        },
    }


def config(
    users: dict[str, dict[str, Any]], name: str = "contoso", **settings: Any
) -> TenantConfig:
    tenant = effective_tenant(tenant_doc(**settings))
    return TenantConfig(
        name,
        tenant,
        {k: effective_user(k, raw, tenant) for k, raw in users.items()},
        {k: (f"{name}/users.yaml", k) for k in users},
    )


def state_of(cfg: TenantConfig, serial: int = 3) -> Applied:
    return Applied("0f1e2d3c", serial, copy.deepcopy(cfg.tenant), copy.deepcopy(cfg.users))


BEFORE = {
    "alice@contoso.com": {"license": True, "conference_id": "8412345"},
    "bob@contoso.com": {"license": True, "conference_id": "8412399", "display_name": "Bob"},
    "dan@contoso.com": {"license": True, "conference_id": "8412398"},
}
AFTER = {
    "alice@contoso.com": {"license": True, "conference_id": "8412346", "pin_reset": "r1"},
    "carol@contoso.com": {
        "license": True,
        "conference_id": "8412347",
        "email": "carol.x@contoso.com",
    },
    "dan@contoso.com": {
        "license": True,
        "conference_id": "8412398",
        "display_name": "Dan | Sales <team>",
    },
}


def sample_plan(**settings: Any) -> Plan:
    """alice: update (details-changed + pin-reset); bob: delete (disabled); carol: create
    (enabled); dan: display name only; plus a pin_length change."""
    before = config(BEFORE)
    tenant, findings = plan_tenant(config(AFTER, pin_length=6, **settings), state_of(before))
    assert findings == []
    return Plan([tenant])


def no_change_plan() -> Plan:
    cfg = config(BEFORE)
    return Plan([plan_tenant(cfg, state_of(cfg))[0]])


# --------------------------------------------------------------------------- text


def test_text_symbols_and_values() -> None:
    out = text.render(sample_plan())
    lines = out.splitlines()
    assert lines[0] == "Tenant contoso (serial 3, lineage 0f1e2d3c)"
    assert "    ~ settings.pin_length: 5 -> 6" in lines
    assert "    ~ alice@contoso.com (emails: details-changed, pin-reset)" in lines
    assert '        conference_id: "8412345" -> "8412346"' in lines
    assert "    - bob@contoso.com (email: disabled)" in lines
    assert "    + carol@contoso.com (email: enabled)" in lines
    assert '        conference_id: "8412347", dial_in_number: "+14255550100", locale: "en"' in lines
    assert "    ~ dan@contoso.com (no email: display_name changed)" in lines
    assert '        display_name: null -> "Dan | Sales <team>"' in lines
    emails = [line.strip() for line in lines if line.startswith("    @ ")]
    assert [e.split(":")[0] for e in emails] == [
        "@ alice@contoso.com <alice@contoso.com> details-changed",
        "@ alice@contoso.com <alice@contoso.com> pin-reset",
        "@ bob@contoso.com <bob@contoso.com> disabled",
        "@ carol@contoso.com <carol.x@contoso.com> enabled",
    ]
    assert "conference ID changed" in out and "user removed from the configuration" in out
    assert lines[-1] == ("Plan: 1 setting change(s), 4 user change(s), 4 email(s) (0 suppressed).")
    assert "[suppressed]" not in out


def test_the_terminal_legend_in_the_docs_is_what_the_renderer_prints() -> None:
    docs = (ROOT / "docs" / "PIPELINES.md").read_text(encoding="utf-8")
    section = docs[docs.index("## Terminal") :]
    block = section[section.index("```text\n") + len("```text\n") : section.index("```\n\n")]
    assert block == text.render(sample_plan())
    legend = section[section.index("```\n\n") :].split("\n\n")[1]
    for symbol in ("+", "~", "-", "@", "!"):
        assert f"`{symbol}`" in legend, symbol
    for note in ("no email: not licensed", "no email: display_name changed", "suppressed: "):
        assert note in legend.replace("\n", " "), note


def test_text_without_color_has_no_ansi_and_with_color_has_it() -> None:
    plain = text.render(sample_plan(), color=False)
    colored = text.render(sample_plan(), color=True)
    assert not ANSI.search(plain)
    assert ANSI.search(colored)
    assert click.style("+", fg="green", bold=False) + " carol@contoso.com" in colored
    assert click.style("-", fg="red", bold=False) + " bob@contoso.com" in colored
    assert click.style("~", fg="yellow", bold=False) + " alice@contoso.com" in colored
    assert ANSI.sub("", colored) == plain


def test_text_suppressed_and_warning() -> None:
    out = text.render(sample_plan(automatically_send_emails_to_users=False))
    assert out.count("[suppressed]") == 4
    assert "! automatically_send_emails_to_users is false: 4 email(s) will be suppressed" in out
    assert "(4 suppressed)" in out


def test_text_no_changes_and_missing_and_no_state() -> None:
    out = text.render(no_change_plan())
    assert "  no changes" in out.splitlines()
    assert out.rstrip().endswith("No changes. The configuration matches the applied state.")
    cfg = config(BEFORE)
    missing = text.render(Plan([plan_missing("fabrikam", state_of(cfg))]))
    assert "missing from the configuration" in missing
    assert "  no changes" not in missing.splitlines()
    first = text.render(Plan([plan_tenant(cfg, None)[0]]))
    assert first.splitlines()[0] == "Tenant contoso (no applied state yet)"
    assert "    + alice@contoso.com (email: enabled)" in first.splitlines()


@pytest.fixture
def plan_cli(new_workspace: NewWorkspace) -> Workspace:
    """contoso in an in-process workspace whose commands run without NO_COLOR."""
    ws = new_workspace(env={"NO_COLOR": None})
    folder = ws.config / "contoso"
    folder.mkdir()
    (folder / "tenant.yaml").write_text(json.dumps(tenant_doc()), encoding="utf-8")
    (folder / "users.yaml").write_text(json.dumps({"users": AFTER}), encoding="utf-8")
    return ws


def plan_text(ws: Workspace, env: Env | None = None) -> str:
    result = ws.run("plan", env=env)
    assert result.code == 0, str(result)
    assert "+ alice@contoso.com" in ANSI.sub("", result.stdout)
    return result.stdout


def test_cli_text_has_no_color_when_not_a_tty(plan_cli: Workspace) -> None:
    assert not ANSI.search(plan_text(plan_cli))


def test_cli_text_colors_a_tty_unless_no_color(
    plan_cli: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the in-process stdout (CliRunner's) pretends to be a terminal
    monkeypatch.setattr(
        click.testing._NamedTextIOWrapper, "isatty", lambda self: True, raising=False
    )
    assert ANSI.search(plan_text(plan_cli))
    assert not ANSI.search(plan_text(plan_cli, env={"NO_COLOR": "1"}))
    assert not ANSI.search(plan_text(plan_cli, env={"NO_COLOR": ""}))  # set at all: no colour


# --------------------------------------------------------------------------- markdown


def test_markdown_summary_counts_and_tables() -> None:
    out = markdown.render(sample_plan())
    assert out.startswith(markdown.MARKER + "\n## Audio Conferencing plan\n")
    assert "**1** setting change(s), **4** user change(s), **4** email(s), **0** suppressed." in out
    header = "| Tenant | Settings | Users | " + " | ".join(EMAIL_TYPES) + " | Suppressed |"
    assert header in out
    # enabled, details-changed, pin-reset, conference-info, disabled
    assert "| contoso | 1 | 4 | 1 | 1 | 1 | 0 | 1 | 0 |" in out
    assert "| User | To | Email | Why |" in out
    assert "| `carol@contoso.com` | `carol.x@contoso.com` | `enabled` |" in out
    assert "| `settings.pin_length` | `5` | `6` |" in out
    assert (
        "| ~ | `alice@contoso.com` | `conference_id`: `8412345` → `8412346`, "
        "`pin_reset`: — → `r1` | `details-changed`, `pin-reset` |"
    ) in out
    assert "| - | `bob@contoso.com` | removed | `disabled` |" in out
    assert (
        "| + | `carol@contoso.com` | new: `conference_id` `8412347`, `dial_in_number` "
        "`+14255550100`, `locale` `en` | `enabled` |"
    ) in out
    assert "| no email\\: display\\_name changed |" in out
    # a cell value cannot break the table, and HTML stays inside its code span
    assert "`display_name`: — → `Dan \\| Sales <team>` |" in out
    assert out.count("<team>") == 1


def test_markdown_counts_per_tenant_and_suppressed() -> None:
    plan = sample_plan(automatically_send_emails_to_users=False)
    other = config(
        {"erin@contoso.com": {"license": True, "conference_id": "1234567"}}, name="fabrikam"
    )
    plan.tenants.append(plan_tenant(other, state_of(config({}, name="fabrikam")))[0])
    out = markdown.render(plan)
    assert "| contoso | 2 | 4 | 1 | 1 | 1 | 0 | 1 | 4 |" in out
    assert "| fabrikam | 0 | 1 | 1 | 0 | 0 | 0 | 0 | 0 |" in out
    assert "**4** suppressed" in out and "`enabled` (suppressed)" in out
    assert out.index("### contoso") < out.index("### fabrikam")
    assert ":warning:" in out


def test_markdown_no_changes_and_missing() -> None:
    assert "_No changes._" in markdown.render(no_change_plan())
    cfg = config(BEFORE)
    out = markdown.render(Plan([plan_missing("fabrikam", state_of(cfg))]))
    assert "_Missing from the configuration._" in out and ":warning:" in out


def big_plan(n: int) -> Plan:
    users = [f"user{i:05}@contoso.com" for i in range(n)]
    tenant = TenantPlan("contoso", "0f1e2d3c", 9)
    tenant.user_changes = [
        UserChange(u, "update", (Change("conference_id", f"{i:07}", f"{i + 1:07}"),))
        for i, u in enumerate(users)
    ]
    tenant.emails = [
        PlannedEmail(u, u, "details-changed", ("conference ID changed",), False) for u in users
    ]
    tenant.settings_changes = [Change(f"settings.s{i}", i, i + 1) for i in range(300)]
    return Plan([tenant])


def test_text_comes_a_thousand_lines_at_a_time_and_reads_as_one_text() -> None:
    plan = big_plan(1500)

    pieces = list(text.chunks(plan))

    lines = "".join(pieces).count("\n")
    assert lines > 3000 and len(pieces) == -(-lines // 1000)
    assert all(piece.count("\n") == 1000 for piece in pieces[:-1])
    assert "".join(pieces) == text.render(plan) == render(plan, "text")


def test_markdown_truncates_in_the_middle_with_a_count() -> None:
    out = markdown.render(big_plan(500))
    assert "| `user00000@contoso.com` | `user00000@contoso.com` |" in out  # head kept
    assert "| `user00499@contoso.com` | `user00499@contoso.com` |" in out  # tail kept
    assert "user00250@contoso.com" not in out  # middle cut
    assert out.count("*300 more row(s) not shown*") == 2  # emails and user changes
    assert "*100 more row(s) not shown*" in out  # settings (300 rows)
    # the cut is between head and tail
    head = out.index("| `user00099@contoso.com` | `user00099")
    gap = out.index("*300 more row(s) not shown*")
    tail = out.index("| `user00400@contoso.com` | `user00400")
    assert head < gap < tail
    assert "**500** email(s)" in out  # summary counts are never truncated


def test_markdown_fifty_thousand_changes_stays_under_the_limit() -> None:
    plan = big_plan(50_000)
    out = markdown.render(plan)
    assert len(out) < 65_000
    assert "**50000** user change(s), **50000** email(s)" in out
    assert "| contoso | 300 | 50000 | 0 | 50000 | 0 | 0 | 0 | 0 |" in out
    assert "user00000@contoso.com" in out and "user49999@contoso.com" in out
    gaps = [int(n) for n in re.findall(r"\*(\d+) more row\(s\) not shown\*", out)]
    assert len(gaps) == 3 and all(g > 0 for g in gaps)
    assert 49_000 < max(gaps) < 50_000
    assert out == markdown.render(plan)  # deterministic


def test_markdown_hard_limit() -> None:
    out = markdown.render(big_plan(2_000), limit=3_000)
    assert len(out) <= 3_000
    assert out.startswith(markdown.MARKER)


def test_markdown_artifacts_link() -> None:
    out = markdown.render(sample_plan(), artifacts="https://ci.example/run/1")
    assert "https://ci.example/run/1" in out


# --------------------------------------------------------------------------- json

TENANT_KEYS = {
    "name",
    "state",
    "missing_from_config",
    "mass_disable",
    "mass_email",
    "settings_changes",
    "user_changes",
    "emails",
    "warnings",
}


def test_json_has_exactly_the_spec_fields() -> None:
    document = json.loads(json_output.render(sample_plan()))
    jsonschema.validate(document, PLAN_SCHEMA)
    assert list(document) == ["format_version", "tenants", "summary"]
    assert document["format_version"] == "1"
    assert document["summary"] == {
        "settings_changes": 1,
        "user_changes": 4,
        "emails": 4,
        "suppressed": 0,
    }
    (tenant,) = document["tenants"]
    assert set(tenant) == TENANT_KEYS | {"meeting_migration_users"}
    assert tenant["meeting_migration_users"] == 1  # alice's conference ID
    assert tenant["name"] == "contoso"
    assert tenant["state"] == {"lineage": "0f1e2d3c", "serial": 3}
    assert tenant["missing_from_config"] is False
    assert tenant["settings_changes"] == [{"path": "settings.pin_length", "before": 5, "after": 6}]
    alice = tenant["user_changes"][0]
    assert alice == {
        "user": "alice@contoso.com",
        "action": "update",
        "changes": [
            {"path": "conference_id", "before": "8412345", "after": "8412346"},
            {"path": "pin_reset", "before": None, "after": "r1"},
        ],
        "emails": ["details-changed", "pin-reset"],
        "note": None,
    }
    assert [(u["emails"], u["note"]) for u in tenant["user_changes"][1:]] == [
        (["disabled"], None),
        (["enabled"], None),
        ([], "no email: display_name changed"),
    ]
    assert (tenant["mass_disable"], tenant["mass_email"]) == (False, False)
    assert [u["action"] for u in tenant["user_changes"]] == ["update", "delete", "create", "update"]
    assert tenant["emails"][0] == {
        "user": "alice@contoso.com",
        "to": "alice@contoso.com",
        "type": "details-changed",
        "reasons": ["conference ID changed"],
        "suppressed": False,
        "locale": "en",
        "requested_locale": "en",
    }
    assert [set(e) for e in tenant["emails"]] == [
        {"user", "to", "type", "reasons", "suppressed", "locale", "requested_locale"}
    ] * 4
    assert tenant["warnings"] == [MIGRATION]


def test_json_is_deterministic_whatever_the_input_order() -> None:
    before = config(BEFORE)
    reordered = config(dict(reversed(list(AFTER.items()))), pin_length=6)
    first = json_output.render(sample_plan())
    second = json_output.render(Plan([plan_tenant(reordered, state_of(before))[0]]))
    assert first == json_output.render(sample_plan())
    assert first == second
    assert first.endswith("\n")


def test_json_missing_tenant_and_suppressed() -> None:
    plan = sample_plan(automatically_send_emails_to_users=False)
    plan.tenants.append(plan_missing("fabrikam", state_of(config(BEFORE))))
    document = json.loads(json_output.render(plan))
    jsonschema.validate(document, PLAN_SCHEMA)
    contoso, fabrikam = document["tenants"]
    assert all(e["suppressed"] for e in contoso["emails"])
    assert document["summary"]["suppressed"] == document["summary"]["emails"] == 4
    assert fabrikam["missing_from_config"] is True and fabrikam["emails"] == []
    assert set(fabrikam) == TENANT_KEYS


def test_render_dispatch() -> None:
    plan = sample_plan()
    assert set(RENDERERS) == {"text", "markdown", "json"}
    assert render(plan, "json") == json_output.render(plan)
    assert render(plan, "markdown") == markdown.render(plan)
    assert render(plan, "text", color=False) == text.render(plan)


def test_plan_schema_is_valid_and_strict() -> None:
    jsonschema.Draft202012Validator.check_schema(PLAN_SCHEMA)
    document = json.loads(json_output.render(sample_plan()))
    jsonschema.validate(document, PLAN_SCHEMA)
    for mutate in (
        lambda d: d["tenants"][0]["emails"][0].__setitem__("pin", "12345"),
        lambda d: d["tenants"][0]["emails"][0].__setitem__("type", "welcome"),
        lambda d: d["tenants"][0]["user_changes"][0].__setitem__("action", "replace"),
        lambda d: d["tenants"][0].pop("missing_from_config"),
        lambda d: d["summary"].pop("suppressed"),
        lambda d: d.__setitem__("format_version", "2"),
    ):
        broken = copy.deepcopy(document)
        mutate(broken)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, PLAN_SCHEMA)


def test_json_plan_streamed_in_batches_is_the_same_text_as_one_document(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`plan --format json` is written a batch of users at a time (flat memory): the text is
    exactly the one-piece encoding of the plan, terminal escapes included."""
    monkeypatch.setattr(json_output, "BATCH", 3)
    users = [
        UserChange(f"u{i}@contoso.com", "create", (Change("display_name", None, f"\x1b[31mU{i}"),))
        for i in range(10)
    ]
    emails = [
        PlannedEmail(f"u{i}@contoso.com", f"u{i}@contoso.com", "enabled", ("license",), False)
        for i in range(7)
    ]
    plan = Plan(
        [
            TenantPlan("contoso", None, 0, [Change("settings.pin_length", None, 5)], users, emails),
            TenantPlan("empty", "lineage", 4),
            TenantPlan("fabrikam", "lineage", 2, user_changes=users[:3], warnings=["\u202e"]),
        ]
    )
    pieces = list(json_output.chunks(plan))
    whole = json_output.json_text(json_output.plan_to_dict(plan), separators=(",", ":")) + "\n"
    assert "".join(pieces) == whole
    assert len(pieces) > 10 and max(map(len, pieces)) < len(whole) // 3
    assert "\x1b" not in whole and "\u202e" not in whole
    assert json_output.render(Plan([])) == (
        '{"format_version":"1","tenants":[],"summary":{"settings_changes":0,'
        '"user_changes":0,"emails":0,"suppressed":0}}\n'
    )


# --------------------------------------------------------------------------- meeting migration

MIGRATION = (
    "automatically_migrate_user_meetings is true: once the Teams side is changed, Microsoft's "
    "Meeting Migration re-sends the future meetings of 1 user(s) whose conference ID or "
    "dial-in number changes to all their attendees"
)


def test_every_format_notes_the_meetings_microsoft_will_resend() -> None:
    plan = sample_plan()  # alice, enabled before and after, gets another conference ID
    assert f"  ! {MIGRATION}" in text.render(plan).splitlines()
    assert f"> :warning: {markdown_text(MIGRATION)}\n" in markdown.render(plan)
    document = json.loads(json_output.render(plan))
    jsonschema.validate(document, PLAN_SCHEMA)
    (tenant,) = document["tenants"]
    assert tenant["meeting_migration_users"] == 1 and MIGRATION in tenant["warnings"]


def test_no_meeting_migration_note_when_the_tenant_does_not_migrate_meetings() -> None:
    plan = sample_plan(automatically_migrate_user_meetings=False)
    for out in (text.render(plan), markdown.render(plan), json_output.render(plan)):
        assert "Meeting Migration" not in out
    (tenant,) = json.loads(json_output.render(plan))["tenants"]
    assert set(tenant) == TENANT_KEYS
