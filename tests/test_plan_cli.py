"""`reconciler plan` (and import / state show) through the real CLI, on tenants built in tmp_path.

The heart of it is the matrix: for every row and combination rule of SPEC §4, import a "before"
configuration, edit the YAML to the "after", and check `plan --format json` lists exactly the
emails the table says, in send order.
"""

from __future__ import annotations

import contextlib
import email
import fcntl
import json
import os
import re
import shutil
from collections.abc import Iterator
from email import policy
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from reconciler.model import PIN_MODES
from reconciler.state.sqlite import SQLiteStore
from tests.helpers.cli import Result, assert_clean_error
from tests.helpers.tenants import make_tenant
from tests.helpers.workspace import NewWorkspace, Workspace

ROOT = Path(__file__).resolve().parent.parent
PLAN_SCHEMA = json.loads((ROOT / "schemas" / "plan.schema.json").read_text(encoding="utf-8"))

DEFAULT = "+14255550100"
OTHER_TOLL = "+12065550123"
TOLL_FREE = "+18005550199"
PIN = "2026-11-29 #4411"
PIN2 = "2026-12-02 #4412"
INFO = "2026-11-29"
INFO2 = "2026-12-02"

A, B, C, D, Z = (
    "alice@contoso.com",
    "bob@contoso.com",
    "carol@contoso.com",
    "dan@contoso.com",
    "zoe@contoso.com",
)
BYSTANDERS = {  # always present and unchanged: never emailed
    Z: {"license": True, "conference_id": "9999999", "dial_in_number": OTHER_TOLL},
    "yann@contoso.com": {"license": False, "provider": "ThirdParty"},
}


def on(cid: str = "8412345", **extra: Any) -> dict[str, Any]:
    """An enabled user (license, provider Microsoft by default)."""
    return {"license": True, "conference_id": cid, **extra}


def off(cid: str = "8412345", **extra: Any) -> dict[str, Any]:
    """A user without the license."""
    return {"license": False, "conference_id": cid, **extra}


# --------------------------------------------------------------------------- tenant folders


def tenant_yaml(settings: dict[str, Any] | None = None, default_number: str = DEFAULT) -> str:
    return "\n".join(
        [
            f"settings: {json.dumps(settings or {})}",
            "bridge:",
            "  numbers:",
            f'    - {{number: "{DEFAULT}", type: toll, location: "Redmond, WA"}}',
            f'    - {{number: "{OTHER_TOLL}", type: toll, location: "Seattle, WA"}}',
            f'    - {{number: "{TOLL_FREE}", type: toll_free}}',
            f'  default_number: "{default_number}"',
            "email:",
            "  locale: en",
            "",
        ]
    )


def users_yaml(users: dict[str, dict[str, Any]]) -> str:
    """Block style, one key per line, values as JSON scalars (quoted strings)."""
    if not users:
        return "users: {}\n"
    lines = ["users:"]
    for upn, fields in users.items():
        lines.append(f"  {upn}:")
        lines.extend(
            f"    {key}: {json.dumps(value, ensure_ascii=False)}" for key, value in fields.items()
        )
    return "\n".join(lines) + "\n"


def write_tenant(
    config: Path,
    users: dict[str, dict[str, Any]],
    name: str = "contoso",
    settings: dict[str, Any] | None = None,
    default_number: str = DEFAULT,
) -> Path:
    folder = config / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tenant.yaml").write_text(tenant_yaml(settings, default_number), encoding="utf-8")
    (folder / "users.yaml").write_text(users_yaml(users), encoding="utf-8")
    return folder


@pytest.fixture
def ws(new_workspace: NewWorkspace) -> Workspace:
    """An in-process workspace whose commands run without NO_COLOR (no ./templates or
    ./tenants of the checkout: they run in its folder)."""
    return new_workspace(env={"NO_COLOR": None})


def ok(ws: Workspace, *args: str) -> Result:
    result = ws.run(*args)
    assert result.code == 0, str(result)
    return result


def plan_json(ws: Workspace) -> dict[str, Any]:
    result = ok(ws, "plan", "--format", "json")
    document = json.loads(result.stdout)
    jsonschema.validate(document, PLAN_SCHEMA)
    return document


# --------------------------------------------------------------------------- the SPEC §4 matrix

# (id, before users, after users, expected [(user, to, type)], before settings, after settings,
#  after default_number)
MATRIX: list[tuple[Any, ...]] = [
    # rows: not enabled -> enabled
    ("enabled/license-assigned", {A: off()}, {A: on()}, [(A, A, "enabled")]),
    (
        "enabled/provider-ThirdParty-to-Microsoft",
        {A: on(provider="ThirdParty")},
        {A: on(provider="Microsoft")},
        [(A, A, "enabled")],
    ),
    (
        "enabled/provider-None-to-Microsoft",
        {A: on(provider="None")},
        {A: on()},
        [(A, A, "enabled")],
    ),
    ("enabled/new-user", {}, {A: on()}, [(A, A, "enabled")]),
    # rows: enabled -> enabled, details
    ("details-changed/conference-id", {A: on()}, {A: on("8412346")}, [(A, A, "details-changed")]),
    (
        "details-changed/dial-in-number",
        {A: on()},
        {A: on(dial_in_number=OTHER_TOLL)},
        [(A, A, "details-changed")],
    ),
    (
        "details-changed/both",
        {A: on()},
        {A: on("8412346", dial_in_number=OTHER_TOLL)},
        [(A, A, "details-changed")],
    ),
    (
        "details-changed/own-number-equal-to-default-is-no-change",
        {A: on()},
        {A: on(dial_in_number=DEFAULT)},
        [],
    ),
    # rows: requests
    ("pin-reset", {A: on()}, {A: on(pin_reset=PIN)}, [(A, A, "pin-reset")]),
    ("conference-info", {A: on()}, {A: on(send_conference_info=INFO)}, [(A, A, "conference-info")]),
    # rows: enabled -> not enabled
    ("disabled/license-removed", {A: on()}, {A: off()}, [(A, A, "disabled")]),
    (
        "disabled/provider-ThirdParty",
        {A: on()},
        {A: on(provider="ThirdParty")},
        [(A, A, "disabled")],
    ),
    ("disabled/provider-None", {A: on()}, {A: on(provider="None")}, [(A, A, "disabled")]),
    ("disabled/user-removed", {A: on()}, {}, [(A, A, "disabled")]),
    # combinations
    (
        "enabled-alone/with-requests",
        {A: off()},
        {A: on(pin_reset=PIN, send_conference_info=INFO)},
        [(A, A, "enabled")],
    ),
    (
        "enabled-alone/new-user-with-requests-and-details",
        {},
        {A: on("8412346", dial_in_number=OTHER_TOLL, pin_reset=PIN, send_conference_info=INFO)},
        [(A, A, "enabled")],
    ),
    ("disabled-alone/with-details-change", {A: on()}, {A: off("8412346")}, [(A, A, "disabled")]),
    (
        "disabled-alone/with-earlier-request",
        {A: on(pin_reset=PIN, send_conference_info=INFO)},
        {A: off(pin_reset=PIN, send_conference_info=INFO)},
        [(A, A, "disabled")],
    ),
    (
        "details-changed-then-pin-reset",
        {A: on()},
        {A: on("8412346", pin_reset=PIN)},
        [(A, A, "details-changed"), (A, A, "pin-reset")],
    ),
    (
        "pin-reset-then-conference-info",
        {A: on()},
        {A: on(pin_reset=PIN, send_conference_info=INFO)},
        [(A, A, "pin-reset"), (A, A, "conference-info")],
    ),
    (
        "conference-info-suppressed-by-details-changed",
        {A: on()},
        {A: on(dial_in_number=OTHER_TOLL, send_conference_info=INFO)},
        [(A, A, "details-changed")],
    ),
    (
        "details-pin-info",
        {A: on()},
        {A: on("8412346", pin_reset=PIN, send_conference_info=INFO)},
        [(A, A, "details-changed"), (A, A, "pin-reset")],
    ),
    # nothing else sends an email
    ("nothing/display-name", {A: on(display_name="Alice")}, {A: on(display_name="Alice M.")}, []),
    ("nothing/locale", {A: on()}, {A: on(locale="fr")}, []),
    ("nothing/recipient-override", {A: on()}, {A: on(email="alice.m@contoso.com")}, []),
    ("nothing/toll-free-number", {A: on()}, {A: on(toll_free_number=TOLL_FREE)}, []),
    (
        "nothing/tenant-settings",
        {A: on()},
        {A: on()},
        [],
        {},
        {"pin_length": 6, "use_unique_conference_ids": True},
    ),
    ("nothing/not-enabled-details", {A: off()}, {A: off("8412346", dial_in_number=OTHER_TOLL)}, []),
    ("nothing/ThirdParty-to-None", {A: on(provider="ThirdParty")}, {A: on(provider="None")}, []),
    ("nothing/new-unlicensed-user", {}, {A: off()}, []),
    ("nothing/unlicensed-user-removed", {A: off()}, {}, []),
    (
        "nothing/ThirdParty-gets-license-removed",
        {A: on(provider="ThirdParty")},
        {A: off(provider="ThirdParty")},
        [],
    ),
    # requests: only a new value asks
    ("request/unchanged-pin-reset", {A: on(pin_reset=PIN)}, {A: on(pin_reset=PIN)}, []),
    (
        "request/unchanged-conference-info",
        {A: on(send_conference_info=INFO)},
        {A: on(send_conference_info=INFO)},
        [],
    ),
    ("request/cleared", {A: on(pin_reset=PIN, send_conference_info=INFO)}, {A: on()}, []),
    (
        "request/changed-pin-reset",
        {A: on(pin_reset=PIN)},
        {A: on(pin_reset=PIN2)},
        [(A, A, "pin-reset")],
    ),
    (
        "request/changed-conference-info",
        {A: on(send_conference_info=INFO)},
        {A: on(send_conference_info=INFO2)},
        [(A, A, "conference-info")],
    ),
    (
        "request/unchanged-request-on-not-enabled-user",
        {A: off(pin_reset=PIN)},
        {A: off(pin_reset=PIN, display_name="Alice")},
        [],
    ),
    # recipients and effective values
    (
        "to/recipient-override",
        {A: on(email="alice.m@contoso.com")},
        {A: on("8412346", email="alice.m@contoso.com")},
        [(A, "alice.m@contoso.com", "details-changed")],
    ),
    (
        "to/override-of-removed-user",
        {A: on(email="alice.m@contoso.com")},
        {},
        [(A, "alice.m@contoso.com", "disabled")],
    ),
    (
        "to/new-override-used-at-once",
        {A: on()},
        {A: on(email="alice.m@contoso.com", pin_reset=PIN)},
        [(A, "alice.m@contoso.com", "pin-reset")],
    ),
    (
        "effective/default-number-changed",
        {
            A: on(),
            B: on("8412399", dial_in_number=DEFAULT),
            C: on("8412398", dial_in_number=OTHER_TOLL),
        },
        {
            A: on(),
            B: on("8412399", dial_in_number=DEFAULT),
            C: on("8412398", dial_in_number=OTHER_TOLL),
        },
        [(A, A, "details-changed")],
        None,
        None,
        OTHER_TOLL,
    ),
    # several users: users by UPN, then SPEC §4 order
    (
        "order/users-by-upn",
        {D: off("8412304"), C: on("8412303"), B: on("8412302"), A: on("8412301")},
        {
            D: on("8412304"),
            C: off("8412303"),
            B: on("8412302", pin_reset=PIN, send_conference_info=INFO),
            A: on("8412309", pin_reset=PIN),
        },
        [
            (A, A, "details-changed"),
            (A, A, "pin-reset"),
            (B, B, "pin-reset"),
            (B, B, "conference-info"),
            (C, C, "disabled"),
            (D, D, "enabled"),
        ],
    ),
]


def _matrix_params(case: tuple[Any, ...]) -> Any:
    """A MATRIX row as 6 arguments (optional trailing columns default to None)."""
    name, *columns = case
    return pytest.param(*columns, *[None] * (6 - len(columns)), id=name)


@pytest.mark.parametrize(
    ("before", "after", "expected", "settings_before", "settings_after", "default_after"),
    [_matrix_params(case) for case in MATRIX],
)
def test_spec4_matrix(
    ws: Workspace,
    before: dict,
    after: dict,
    expected: list,
    settings_before: dict | None,
    settings_after: dict | None,
    default_after: str | None,
) -> None:
    write_tenant(ws.config, {**before, **BYSTANDERS}, settings=settings_before)
    ok(ws, "import")
    write_tenant(
        ws.config,
        {**after, **BYSTANDERS},
        settings=settings_after,
        default_number=default_after or DEFAULT,
    )
    plan = plan_json(ws)
    (tenant,) = plan["tenants"]
    assert [(e["user"], e["to"], e["type"]) for e in tenant["emails"]] == expected
    assert all(e["reasons"] and not e["suppressed"] for e in tenant["emails"])
    assert plan["summary"]["emails"] == len(expected)
    assert plan["summary"]["suppressed"] == 0
    assert ws.mails() == []  # planning sends nothing


@pytest.mark.parametrize("case", [c for c in MATRIX if c[3]], ids=lambda c: c[0])
def test_spec4_matrix_suppressed(ws: Workspace, case: tuple[Any, ...]) -> None:
    """The same emails are planned, all flagged suppressed, when automatic emails are off."""
    _, before, after, expected, *rest = case
    default_after = rest[2] if len(rest) > 2 else None
    write_tenant(ws.config, {**before, **BYSTANDERS})
    ok(ws, "import")
    write_tenant(
        ws.config,
        {**after, **BYSTANDERS},
        settings={"automatically_send_emails_to_users": False},
        default_number=default_after or DEFAULT,
    )
    plan = plan_json(ws)
    (tenant,) = plan["tenants"]
    assert [(e["user"], e["to"], e["type"]) for e in tenant["emails"]] == expected
    assert all(e["suppressed"] for e in tenant["emails"])
    assert plan["summary"]["emails"] == plan["summary"]["suppressed"] == len(expected)
    assert any("suppressed" in w for w in tenant["warnings"])


def test_apply_then_plan_is_empty_for_a_request(ws: Workspace) -> None:
    """A request satisfied by an apply is not asked again (the state keeps its value)."""
    write_tenant(ws.config, {A: on()})
    ok(ws, "import")
    write_tenant(ws.config, {A: on(pin_reset=PIN)})
    assert [e["type"] for e in plan_json(ws)["tenants"][0]["emails"]] == ["pin-reset"]
    ok(ws, "apply", "--auto-approve")
    assert len(ws.mails()) == 1
    plan = plan_json(ws)
    assert plan["tenants"][0]["emails"] == [] and plan["summary"]["user_changes"] == 0


# --------------------------------------------------------------------------- summary and state


def test_summary_counts(ws: Workspace) -> None:
    write_tenant(ws.config, {A: on(), B: on("8412399"), C: on("8412398")})
    ok(ws, "import")
    write_tenant(
        ws.config,
        {
            A: on("8412346", pin_reset=PIN),
            B: off("8412399"),
            C: on("8412398", display_name="Carol"),
        },
        settings={"automatically_send_emails_to_users": False, "pin_length": 6},
    )
    plan = plan_json(ws)
    assert plan["summary"] == {
        "settings_changes": 2,
        "user_changes": 3,
        "emails": 3,
        "suppressed": 3,
    }
    assert {c["path"] for c in plan["tenants"][0]["settings_changes"]} == {
        "settings.automatically_send_emails_to_users",
        "settings.pin_length",
    }


def test_every_change_says_which_emails_it_sends_or_why_none_in_every_format(
    ws: Workspace,
) -> None:
    """A reviewer never guesses why a change is silent, and checks a new user's values."""
    write_tenant(ws.config, {A: on(), B: on("8412399", pin_reset=PIN), D: off("8412398")})
    write_tenant(
        ws.config, {}, name="fabrikam", settings={"automatically_send_emails_to_users": False}
    )
    ok(ws, "import")
    write_tenant(
        ws.config,
        {
            A: on(display_name="Alice"),
            B: on("8412399"),
            C: on("8412397", locale="fr", toll_free_number=TOLL_FREE),
            D: off("8412398", display_name="Dan"),
            "eve@contoso.com": on("8412396", provider="ThirdParty"),
        },
    )
    write_tenant(
        ws.config,
        {"fay@contoso.com": on("8412395")},
        name="fabrikam",
        settings={"automatically_send_emails_to_users": False},
    )
    notes = {
        A: "no email: display_name changed",
        B: "no email: pin_reset cleared",
        C: None,
        D: "no email: not licensed",
        "eve@contoso.com": "no email: provider is ThirdParty",
        "fay@contoso.com": "suppressed: automatically_send_emails_to_users is false",
    }
    changes = [u for t in plan_json(ws)["tenants"] for u in t["user_changes"]]
    assert {u["user"]: u["note"] for u in changes} == notes
    assert {u["user"]: u["emails"] for u in changes if u["emails"]} == {
        C: ["enabled"],
        "fay@contoso.com": ["enabled"],
    }

    text = ok(ws, "plan").stdout.splitlines()
    shown = {
        **notes,
        C: "email: enabled",
        "fay@contoso.com": f"email: enabled; {notes['fay@contoso.com']}",
    }
    for upn, outcome in shown.items():
        symbol = "~" if upn in (A, B, D) else "+"
        assert f"    {symbol} {upn} ({outcome})" in text, text
    new_user = text[text.index(f"    + {C} (email: enabled)") + 1]
    assert new_user == (
        f'        conference_id: "8412397", dial_in_number: "{DEFAULT}", '
        f'toll_free_number: "{TOLL_FREE}", locale: "fr"'
    )

    markdown = ok(ws, "plan", "--format", "markdown").stdout
    for upn, note in notes.items():
        row = next(
            line
            for line in markdown.splitlines()
            if line.startswith(("| + |", "| ~ |")) and f"`{upn}`" in line
        )
        assert (note or "`enabled`") in row.replace("\\", ""), row
    assert (
        f"| + | `{C}` | new: `conference_id` `8412397`, `dial_in_number` `{DEFAULT}`, "
        f"`toll_free_number` `{TOLL_FREE}`, `locale` `fr` | `enabled` |"
    ) in markdown


def test_summary_counts_across_tenants(ws: Workspace) -> None:
    write_tenant(ws.config, {A: on()}, name="contoso")
    write_tenant(ws.config, {B: on()}, name="fabrikam")
    ok(ws, "import")
    write_tenant(ws.config, {A: on(pin_reset=PIN)}, name="contoso")
    write_tenant(
        ws.config,
        {B: on(pin_reset=PIN)},
        name="fabrikam",
        settings={"automatically_send_emails_to_users": False},
    )
    plan = plan_json(ws)
    assert [t["name"] for t in plan["tenants"]] == ["contoso", "fabrikam"]
    assert plan["summary"] == {
        "settings_changes": 1,
        "user_changes": 2,
        "emails": 2,
        "suppressed": 1,
    }
    assert [e["suppressed"] for t in plan["tenants"] for e in t["emails"]] == [False, True]


def test_lineage_null_and_serial_zero_before_any_state_then_serial_one(ws: Workspace) -> None:
    write_tenant(ws.config, {A: on()})
    plan = plan_json(ws)
    (tenant,) = plan["tenants"]
    assert tenant["state"] == {"lineage": None, "serial": 0}
    assert [(e["user"], e["type"]) for e in tenant["emails"]] == [(A, "enabled")]
    assert plan["summary"]["settings_changes"] > 0
    assert not Path(ws.state).exists() or ok(ws, "state", "show").stdout.count('"name"') == 0

    ok(ws, "import")
    (tenant,) = plan_json(ws)["tenants"]
    assert tenant["state"]["serial"] == 1
    assert isinstance(tenant["state"]["lineage"], str) and tenant["state"]["lineage"]
    assert tenant["emails"] == [] and tenant["settings_changes"] == []


# --------------------------------------------------------------------------- exit codes


def test_detailed_exitcode(ws: Workspace) -> None:
    write_tenant(ws.config, {A: on()})
    assert ws.run("plan", "--detailed-exitcode").code == 2  # no state: everything is new
    ok(ws, "import")
    assert ws.run("plan", "--detailed-exitcode").code == 0
    assert ws.run("plan").code == 0
    write_tenant(ws.config, {A: on(display_name="Alice")})  # a change without an email
    assert ws.run("plan", "--detailed-exitcode").code == 2
    assert ws.run("plan", "--detailed-exitcode", "--format", "json").code == 2
    assert ws.run("plan").code == 0  # without the flag, changes are not an error
    write_tenant(ws.config, {A: on("84123")})  # not 7 digits
    result = ws.run("plan", "--detailed-exitcode")
    assert result.code == 1
    assert "contoso/users.yaml:4:" in result.stderr and "7 digits" in result.stderr
    assert result.stdout == ""


def test_detailed_exitcode_on_a_refused_request_is_one(ws: Workspace) -> None:
    write_tenant(ws.config, {A: on()})
    ok(ws, "import")
    write_tenant(ws.config, {A: off(pin_reset=PIN)})
    assert ws.run("plan", "--detailed-exitcode").code == 1


# --------------------------------------------------------------------------- requests refused


@pytest.mark.parametrize(
    ("before", "after", "key"),
    [
        pytest.param({A: on()}, {A: off(pin_reset=PIN)}, "pin_reset", id="disabled+pin_reset"),
        pytest.param(
            {A: on()},
            {A: on(provider="ThirdParty", send_conference_info=INFO)},
            "send_conference_info",
            id="disabled+send_conference_info",
        ),
        pytest.param({A: off()}, {A: off(pin_reset=PIN2)}, "pin_reset", id="unlicensed+pin_reset"),
        pytest.param(
            {},
            {A: on(provider="None", send_conference_info=INFO)},
            "send_conference_info",
            id="new-not-enabled-user",
        ),
    ],
)
def test_request_for_a_not_enabled_user_is_an_error_at_the_key(
    ws: Workspace, before: dict, after: dict, key: str
) -> None:
    write_tenant(ws.config, {**before, **BYSTANDERS})
    ok(ws, "import")
    folder = write_tenant(ws.config, {**after, **BYSTANDERS})
    lines = (folder / "users.yaml").read_text(encoding="utf-8").splitlines()
    line = next(i for i, text in enumerate(lines, 1) if text.startswith(f"    {key}:"))
    for fmt in ("text", "json"):
        result = ws.run("plan", "--format", fmt)
        assert result.code == 1
        assert result.stdout == ""  # nothing planned
        assert f"contoso/users.yaml:{line}:5: " in result.stderr, result.stderr
        assert key in result.stderr and A in result.stderr and "not enabled" in result.stderr
        assert "Traceback" not in result.output
    assert ws.run("apply", "--auto-approve").code == 1  # apply refuses it too
    assert ws.mails() == []


# --------------------------------------------------------------------------- saved plans


def test_out_saves_valid_json_with_no_pin(ws: Workspace) -> None:
    write_tenant(
        ws.config, {A: on(), B: on("0123456"), C: off("8412398")}, settings={"pin_length": 4}
    )
    ok(ws, "import")
    # No PIN exists at plan time: every run of 4-12 digits comes from the configuration
    # (before or after) and none from anywhere else.
    allowed = _digit_runs(ws.config)
    write_tenant(
        ws.config,
        {
            A: on("8412346", pin_reset=PIN),
            B: off("0123456"),
            C: on("8412398", send_conference_info=INFO),
            D: on("5550101", dial_in_number=OTHER_TOLL, toll_free_number=TOLL_FREE),
        },
        settings={"pin_length": 4},
    )
    out = ws.root / "plan.json"
    result = ok(ws, "plan", "--format", "json", "--out", str(out))
    document = json.loads(out.read_text(encoding="utf-8"))
    jsonschema.validate(document["plan"], PLAN_SCHEMA)
    assert document["plan"] == json.loads(result.stdout)
    assert [e["type"] for e in document["plan"]["tenants"][0]["emails"]] == [
        "details-changed",
        "pin-reset",
        "disabled",
        "enabled",
        "enabled",
    ]

    allowed |= _digit_runs(ws.config)
    runs = [
        run for value in _strings(document) for run in re.findall(r"(?<!\d)\d{4,12}(?!\d)", value)
    ]
    assert runs, "the plan shows conference IDs and numbers"
    stray = {run for run in runs if not any(run in digits for digits in allowed)}
    assert stray == set()
    assert not _keys(document) & {"pin", "pins", "new_pin"}


def test_plan_out_to_an_unwritable_place_is_one_line(ws: Workspace) -> None:
    make_tenant(ws.config)
    result = ws.run("plan", "--out", str(ws.root / "no" / "such" / "dir" / "x.plan"))
    assert_clean_error(result, "cannot write saved plan")


def _digit_runs(config: Path) -> set[str]:
    return {
        run
        for path in config.rglob("*.yaml")
        for run in re.findall(r"\d+", path.read_text(encoding="utf-8"))
    }


def _strings(value: Any, key: str | None = None) -> Iterator[str]:
    """Every string and number in a JSON document, but content hashes and lineage ids."""
    if key in ("files", "lineage"):
        return
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v, key)
    elif isinstance(value, str | int) and not isinstance(value, bool):
        yield str(value)


def _keys(value: Any) -> set[str]:
    """Every key of a JSON document but the tenant setting ``email.pin`` (its value is a mode,
    ``generated`` or ``self_service``, never a PIN)."""
    if isinstance(value, dict):
        keys = {k for k, v in value.items() if not (k == "pin" and v in PIN_MODES)}
        return keys | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


# --------------------------------------------------------------------------- vanished folder


def test_vanished_tenant_folder_is_missing_not_disabled(ws: Workspace) -> None:
    write_tenant(ws.config, {A: on()}, name="contoso")
    write_tenant(ws.config, {B: on(), C: on("8412399")}, name="fabrikam")
    ok(ws, "import")
    shutil.rmtree(ws.config / "fabrikam")
    plan = plan_json(ws)
    by_name = {t["name"]: t for t in plan["tenants"]}
    assert list(by_name) == ["contoso", "fabrikam"]
    gone = by_name["fabrikam"]
    assert gone["missing_from_config"] is True
    assert gone["emails"] == [] and gone["user_changes"] == [] and gone["settings_changes"] == []
    assert gone["state"]["serial"] == 1
    assert len(gone["warnings"]) == 1 and "missing" in gone["warnings"][0]
    assert by_name["contoso"]["missing_from_config"] is False
    assert plan["summary"] == {
        "settings_changes": 0,
        "user_changes": 0,
        "emails": 0,
        "suppressed": 0,
    }
    text = ok(ws, "plan").stdout
    assert "fabrikam" in text and "missing" in text
    # apply leaves it alone
    ok(ws, "apply", "--auto-approve")
    assert ws.mails() == []
    assert plan_json(ws)["tenants"][1]["missing_from_config"] is True


# --------------------------------------------------------------------------- import and state show


def test_import_refuses_to_overwrite_without_force_and_sends_nothing(ws: Workspace) -> None:
    write_tenant(ws.config, {A: on(), B: on("8412399")})
    first = ok(ws, "import")
    assert "no email" in first.stdout
    assert ws.mails() == []
    state_before = Path(ws.state).read_bytes()

    write_tenant(ws.config, {A: on("8412346", pin_reset=PIN)})  # B removed, A changed
    refused = ws.run("import")
    assert refused.code == 1
    assert "--force" in refused.stderr and "contoso" in refused.stderr
    assert Path(ws.state).read_bytes() == state_before
    assert plan_json(ws)["tenants"][0]["state"]["serial"] == 1

    forced = ok(ws, "import", "--force")
    assert "no email" in forced.stdout
    assert ws.mails() == []
    plan = plan_json(ws)
    (tenant,) = plan["tenants"]
    assert tenant["state"]["serial"] == 2
    assert tenant["emails"] == [] and tenant["user_changes"] == []
    shown = json.loads(ok(ws, "state", "show").stdout)
    assert set(shown["tenants"][0]["users"]) == {A}


def test_import_while_locked_is_one_line(ws: Workspace) -> None:
    make_tenant(ws.config)
    fd = os.open(Path(ws.state).with_name("state.db.acme.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        result = ws.run("import")
    finally:
        os.close(fd)
    assert_clean_error(result, "locked")


def test_import_does_not_overwrite_state_an_apply_wrote_after_its_check(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """import checks for existing state, then takes the lock: an apply that committed in
    between must not be overwritten without --force."""
    make_tenant(ws.config)
    original = SQLiteStore.lock

    @contextlib.contextmanager
    def lock_after_an_apply(self, tenant, timeout=0.0):
        monkeypatch.setattr(SQLiteStore, "lock", original)
        assert ws.run("apply", "--auto-approve", "-q").code == 0
        with original(self, tenant, timeout):
            yield

    monkeypatch.setattr(SQLiteStore, "lock", lock_after_an_apply)
    result = ws.run("import")
    assert_clean_error(result, "already has applied state")
    store = SQLiteStore(Path(ws.state))
    assert [h["kind"] for h in store.history("acme")] == ["apply"]


def test_state_show_is_json_without_message_bodies_or_pins(ws: Workspace) -> None:
    write_tenant(ws.config, {A: on()}, settings={"pin_length": 8})
    ok(ws, "import")
    write_tenant(ws.config, {A: on(), B: on("8412399")}, settings={"pin_length": 8})
    ok(ws, "apply", "--auto-approve")
    (message,) = ws.mails()
    parsed = email.message_from_bytes(message.raw, policy=policy.default)
    body = parsed.get_body(("plain",)).get_content()
    pins = set(re.findall(r"(?<!\d)\d{8}(?!\d)", body))
    assert len(pins) == 1, body  # the delivered message carries the PIN

    result = ok(ws, "state", "show")
    shown = json.loads(result.stdout)
    (tenant,) = shown["tenants"]
    assert tenant["name"] == "contoso" and tenant["serial"] == 2
    assert [(m["user"], m["type"]) for m in tenant["outbox"]] == [(B, "enabled")]
    assert pins.pop() not in result.stdout
    for forbidden in ("Content-Type", "MIME-Version", "Subject:", "multipart"):
        assert forbidden not in result.stdout
    assert not _keys(shown) & {"data", "body", "pin", "message", "raw"}


def test_saved_plan_is_written_whole_or_not_at_all(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A saved plan is streamed into a temporary file and renamed into place: a failure half-way
    (a full disk) leaves the previous plan file as it was and no partial file beside it."""
    from reconciler.outputs import json as json_output

    monkeypatch.setattr(json_output, "BATCH", 2)
    write_tenant(ws.config, {f"u{i}@contoso.com": on(f"{8412300 + i}") for i in range(9)})
    out = ws.root / "tfplan.json"
    ok(ws, "plan", "--out", str(out))
    saved = out.read_bytes()
    document = json.loads(saved)
    assert len(document["configs"]["contoso"]["users"]) == 9
    assert document["plan"]["summary"]["user_changes"] == 9
    assert out.stat().st_mode & 0o777 == 0o644  # as any new file under umask 022

    real = json_output.chunks

    def disk_full(plan: Any, **options: Any) -> Iterator[str]:
        pieces = real(plan, **options)
        yield next(pieces)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(json_output, "chunks", disk_full)
    write_tenant(ws.config, {f"u{i}@contoso.com": on(f"{8412400 + i}") for i in range(9)})
    result = ws.run("plan", "--out", str(out))
    assert_clean_error(result, "cannot write saved plan")
    assert "No space left on device" in result.stderr
    assert out.read_bytes() == saved
    assert sorted(p.name for p in ws.root.iterdir() if p.name.startswith(".tfplan")) == []
