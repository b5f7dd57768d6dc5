"""``reconciler drift``: a live Teams export (shaped like the cmdlets' own output) against the
YAML and the applied state of the example tenant — which side moved, per user, setting and
bridge number, with what to do — read-only, in three formats, every bad row at once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from reconciler.drift import side_moved, user_findings
from tests.helpers.workspace import Workspace
from tests.test_hostile_outputs import HOSTILE, TERMINAL, code_contents, live_markup

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ("Identity", "SipAddress", "DisplayName", "ConferenceId", "ServiceNumber",
           "TollFreeServiceNumber", "BridgeName")  # fmt: skip
"""Get-CsOnlineDialInConferencingUser's columns that matter here: no License, no Provider."""
LIVE = {
    "alice@contoso.com": ("Alice Martin", "8412345", "14255550100", "18005550199"),
    "bob@contoso.com": ("Bob Kelly", "0123456", "+1 206-555-0123", ""),
    "chloe@contoso.com": ("Chloé Dubois", "7312001", "tel:+33144556677", ""),
    "dan@contoso.com": ("Dan Jump", "5550101", "14255550100", ""),
}
"""The example tenant's enabled users as Teams lists them (numbers in the cmdlets' forms)."""


def cmdlet_csv(path: Path, users: dict[str, tuple[str, ...]]) -> Path:
    """``Get-CsOnlineDialInConferencingUser | Export-Csv`` in Windows PowerShell 5: a BOM, the
    ``#TYPE`` line, every value quoted, CRLF."""
    lines = [
        "#TYPE Deserialized.Microsoft.Rtc.Management.Hosting.DialInConferencing."
        "DialInConferencingUser",
        ",".join(f'"{c}"' for c in COLUMNS),
    ]
    for number, (upn, values) in enumerate(users.items()):
        row = (f"5f0c{number:04d}-7d1a", f"sip:{upn}", *values, "Conference Bridge")
        lines.append(",".join(f'"{value}"' for value in row))
    path.write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8"))
    return path


def convert_to_json(path: Path, data: Any) -> Path:
    """``ConvertTo-Json`` (enums as their numbers) saved as UTF-8."""
    path.write_text(json.dumps(data, indent=4), encoding="utf-8")
    return path


SETTINGS = {  # the example's settings, as the cmdlet returns them
    "Identity": "Global",
    "AutomaticallySendEmailsToUsers": False,
    "SendEmailFromOverride": True,
    "SendEmailFromAddress": "conferencing@contoso.com",
    "SendEmailFromDisplayName": "Contoso Conferencing",
    "PinLength": 6,
    "UseUniqueConferenceIds": False,
    "AllowPSTNOnlyMeetingsByDefault": False,
    "AutomaticallyMigrateUserMeetings": True,
    "AutomaticallyReplaceAcpProvider": False,
    "EnableDialOutJoinConfirmation": False,
    "EnableEntryExitNotifications": True,
    "EnableNameRecording": True,
    "EntryExitAnnouncementsType": 0,
    "MaskPstnNumbersType": 0,
    "MigrateServiceNumbersOnCrossForestMove": False,
}
BRIDGE = {
    "Identity": "b7e6a5d4",
    "Name": "Conference Bridge",
    "DefaultServiceNumber": {"Number": "14255550100"},
    "ServiceNumbers": [
        {"Number": "14255550100", "Type": "Toll", "City": "Redmond, WA"},
        {"Number": "12065550123", "Type": "Toll", "City": "Seattle, WA"},
        {"Number": "33144556677", "Type": "Toll", "City": "Paris"},
        {"Number": "18005550199", "Type": "TollFree", "City": "United States"},
    ],
}


@pytest.fixture
def applied(example_workspace: Workspace) -> Workspace:
    """The example tenant, imported: git and the applied state agree."""
    assert example_workspace.run("import").code == 0
    return example_workspace


def drift(ws: Workspace, *args: str, users: str = "users.csv") -> Any:
    return ws.run("drift", "--tenant", "contoso", "--from", users, *args)


def exports(ws: Workspace, users: dict[str, tuple[str, ...]] | None = None, **settings: Any):
    cmdlet_csv(ws.root / "users.csv", LIVE if users is None else users)
    convert_to_json(ws.root / "settings.json", {**SETTINGS, **settings})
    convert_to_json(ws.root / "bridge.json", BRIDGE)
    return ["--bridge", "bridge.json", "--settings", "settings.json"]


def findings(
    ws: Workspace, *args: str, users: str = "users.csv"
) -> list[tuple[str, str, str | None]]:
    result = drift(ws, *args, "--format", "json", users=users)
    assert result.code == 0, str(result)
    report = json.loads(result.stdout)
    schema = json.loads((ROOT / "schemas" / "drift.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(report)
    return [(f["kind"], f["name"], f["field"]) for f in report["findings"]]


def test_an_export_of_what_git_says_is_no_drift_and_exits_0(applied: Workspace) -> None:
    args = exports(applied)
    result = drift(applied, *args, "--detailed-exitcode")
    assert result.code == 0, str(result)
    assert "no drift: Teams has what git says (4 user(s) in the export, 8 in git)" in result.stdout
    # named, never guessed: the cmdlet's export has no License, Provider, email or locale
    assert "license of each user: users.csv has no License column" in result.stdout
    assert "locale of each user: users.csv has no Locale column" in result.stdout
    assert findings(applied, *args) == []


def test_every_kind_of_drift_is_found_with_what_to_do_and_exits_2(applied: Workspace) -> None:
    live = dict(LIVE)
    live["alice@contoso.com"] = ("Alice Martin", "8499999", "14255550100", "18005550199")
    del live["dan@contoso.com"]
    live["zoe@contoso.com"] = ("Zoe", "7777777", "14255550100", "")
    args = exports(applied, live, AutomaticallySendEmailsToUsers=True, EntryExitAnnouncementsType=1)
    users = applied.config / "contoso" / "users" / "engineering.yaml"
    text = users.read_text(encoding="utf-8")
    users.write_text(text.replace('"0123456"', '"0123999"'), encoding="utf-8")  # not applied
    assert sorted(findings(applied, *args)) == sorted(
        [
            ("microsoft_emails", "automatically_send_emails_to_users", None),
            ("changed_in_teams", "entry_exit_announcements_type", None),
            ("changed_in_teams", "alice@contoso.com", "conference_id"),
            ("not_yet_in_teams", "bob@contoso.com", "conference_id"),
            ("only_in_teams", "zoe@contoso.com", None),
            ("only_in_git", "dan@contoso.com", None),
        ]
    )
    result = drift(applied, *args, "--detailed-exitcode")
    assert result.code == 2, str(result)
    out = result.stdout
    assert (
        "user alice@contoso.com conference_id: Teams 8499999, git 8412345, applied 8412345" in out
    )
    assert "(users.csv:3)" in out  # the export row, as the admin knows it
    assert "reconciler import --force --tenant contoso" in out
    assert "-AutomaticallySendEmailsToUsers $false" in out
    assert "Users only in git (1): give the user Audio Conferencing in Teams" in out


def test_a_bridge_number_changed_in_teams_is_drift_of_the_bridge(applied: Workspace) -> None:
    args = exports(applied)
    bridge = {**BRIDGE, "ServiceNumbers": [*BRIDGE["ServiceNumbers"], "+442071234567"]}
    convert_to_json(applied.root / "bridge.json", bridge)
    assert findings(applied, *args) == [("changed_in_teams", "+442071234567", "type")]


def test_a_users_export_with_license_and_provider_columns_compares_them(
    applied: Workspace,
) -> None:
    rows = [
        {"UserPrincipalName": upn, "DisplayName": name, "ConferenceId": cid,
         "ServiceNumber": toll, "TollFreeServiceNumber": free, "License": "True",
         "Provider": "Microsoft"}
        for upn, (name, cid, toll, free) in LIVE.items()
    ]  # fmt: skip
    rows[3]["License"] = "False"  # dan lost his license in Entra
    rows.append(
        {"UserPrincipalName": "carol@contoso.com", "DisplayName": "Carol Nguyen",
         "ConferenceId": "", "ServiceNumber": "", "TollFreeServiceNumber": "",
         "License": "False", "Provider": "Microsoft"}
    )  # fmt: skip
    convert_to_json(applied.root / "users.json", rows)
    assert findings(applied, users="users.json") == [
        ("changed_in_teams", "dan@contoso.com", "license")
    ]


def test_drift_never_writes_the_state_nor_sends(applied: Workspace) -> None:
    state = Path(applied.state)
    before = state.read_bytes()
    alice = {"alice@contoso.com": LIVE["alice@contoso.com"]}  # the others only in git
    args = exports(applied, alice, AutomaticallySendEmailsToUsers=True)
    result = drift(applied, *args, "--out", "report.md", "--format", "markdown")
    assert result.code == 0, str(result)
    assert (
        (applied.root / "report.md")
        .read_text(encoding="utf-8")
        .startswith("<!-- audio-conferencing-reconciler drift -->\n")
    )
    assert state.read_bytes() == before
    assert not applied.maildir.exists() and not (applied.root / ".reconciler").exists()


def test_drift_without_any_state_creates_none(example_workspace: Workspace) -> None:
    args = exports(example_workspace)
    result = drift(example_workspace, *args)
    assert result.code == 0, str(result)
    assert "has no applied state" in result.stdout
    assert not Path(example_workspace.state).exists()


def test_export_values_are_inert_in_markdown_and_on_a_terminal(applied: Workspace) -> None:
    live = dict(LIVE)
    live["alice@contoso.com"] = (HOSTILE.replace('"', ""), *LIVE["alice@contoso.com"][1:])
    live["bob@contoso.com"] = (TERMINAL, *LIVE["bob@contoso.com"][1:])
    args = exports(applied, live)
    markdown = drift(applied, *args, "--format", "markdown")
    assert markdown.code == 0, str(markdown)
    assert live_markup(markdown.stdout) == []
    assert HOSTILE.replace('"', "") in code_contents(markdown.stdout)
    for fmt in ("text", "markdown", "json"):
        result = drift(applied, *args, "--format", fmt)
        assert "\x1b" not in result.stdout and "\u202e" not in result.stdout
        assert "\x9b" not in result.stdout and "\u2028" not in result.stdout


def test_bad_rows_are_every_one_named_by_file_and_line_at_once(applied: Workspace) -> None:
    args = exports(applied)
    path = cmdlet_csv(
        applied.root / "users.csv",
        {**LIVE, "nobody": ("No One", "1111111", "14255550100", ""),
         "eve@contoso.com": ("Eve", "2222222", "not a number", "")},
    )  # fmt: skip
    text = path.read_bytes().decode("utf-8-sig").replace("sip:nobody", "")
    path.write_bytes(("\ufeff" + text).encode("utf-8"))
    convert_to_json(applied.root / "settings.json", {**SETTINGS, "PinLength": "six"})
    result = drift(applied, *args, "--detailed-exitcode")
    assert result.code == 1 and "Traceback" not in result.output, str(result)
    assert result.stderr.splitlines() == [
        "settings.json:entry 1: PinLength must be a number",
        "users.csv:7: no UserPrincipalName (or SipAddress)",
        "users.csv:8: 'not a number' is not a valid phone number",
        "3 problem(s) found; nothing was compared.",
    ]
    assert result.stdout == ""


def test_an_export_without_a_user_is_refused_while_git_enables_some(applied: Workspace) -> None:
    """An export that failed half-way (headers only) is not "everyone only in git"."""
    args = exports(applied, users={})
    result = drift(applied, *args, "--detailed-exitcode")
    assert result.code == 1 and result.stdout == "", str(result)
    assert result.stderr.splitlines() == [
        "users.csv: no user in this export while the YAML enables some: the wrong file, or an "
        "export that failed? Every one of them would be reported as only in git",
        "1 problem(s) found; nothing was compared.",
    ]


def test_drift_is_for_exactly_one_tenant(applied: Workspace) -> None:
    exports(applied)
    result = applied.run("drift", "--from", "users.csv")
    assert result.code == 1 and "exactly one --tenant" in result.stderr, str(result)


@pytest.mark.parametrize(
    ("live", "git", "applied", "expected"),
    [
        ("a", "a", "b", None),  # Teams has git's value: the state is only behind
        ("b", "a", "a", "changed_in_teams"),
        ("a", "b", "a", "not_yet_in_teams"),
        ("c", "b", "a", "not_yet_in_teams"),  # both moved: Teams must still follow git
    ],
)
def test_the_side_that_moved_is_the_one_that_left_the_applied_value(
    live: str, git: str, applied: str, expected: str | None
) -> None:
    assert side_moved(live, git, applied, True) == expected


def test_the_applied_record_is_read_only_when_a_value_differs() -> None:
    record: Any = {"upn": "a@b.co", "license": True, "provider": "Microsoft", "locale": "en"}

    def unread() -> Any:
        raise AssertionError("read")

    assert user_findings("a@b.co", {"locale": "en"}, record, unread, ["locale"], True) == []


def test_a_long_markdown_report_stays_under_the_limit_and_keeps_rows_of_every_table(
    applied: Workspace,
) -> None:
    live = dict(LIVE)
    live["alice@contoso.com"] = ("A" * 70_000, *LIVE["alice@contoso.com"][1:])
    live["bob@contoso.com"] = ("Robert Kelly", *LIVE["bob@contoso.com"][1:])
    result = drift(applied, *exports(applied, live), "--format", "markdown")
    assert result.code == 0, str(result)
    assert len(result.stdout) <= 65_000
    assert "alice@contoso.com" in result.stdout and "bob@contoso.com" in result.stdout
    assert "A" * 1000 + "…" in result.stdout and "A" * 1001 not in result.stdout
