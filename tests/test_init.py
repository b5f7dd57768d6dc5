"""``reconciler init TENANT --from FILE``: a tenant folder from a Teams export (CSV from
Export-Csv or JSON from ConvertTo-Json), validated, never overwriting, every bad row located;
after ``import`` the plan shows no change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.config.export import e164
from tests.helpers.cli import Result
from tests.helpers.workspace import Workspace

HEADER = (
    '"UserPrincipalName","DisplayName","ConferenceId","ServiceNumber",'
    '"TollFreeServiceNumber","Provider","License"'
)
FORMS = ["14255550100", "+14255550100", "tel:+14255550100", "+1 425-555-0100"]


def csv_export(
    path: Path, users: int, *, type_line: bool = True, bom: bool = True, newline: str = "\r\n"
) -> Path:
    rows = (
        ["#TYPE Deserialized.Microsoft.Rtc.Management.DialInConferencingUser"] if type_line else []
    )
    rows.append(HEADER)
    for i in range(users):
        toll_free = "18005550199" if i % 3 == 0 else ""
        rows.append(
            f'"sip:User{i:04d}@Contoso.com","User {i:04d}","{7000000 + i}",'
            f'"{FORMS[i % 4]}","{toll_free}","Microsoft","True"'
        )
    text = ("\ufeff" if bom else "") + newline.join(rows) + newline
    path.write_bytes(text.encode("utf-8"))
    return path


def reconciler(folder: Path, *argv: str) -> Result:
    """``reconciler ARGV`` typed in ``folder``, where nothing is prepared (init makes the
    configuration folder)."""
    return Workspace(folder, str(folder / "state" / "state.db")).cli(*argv)


def adopt(tmp_path: Path, *args: str) -> None:
    init = reconciler(tmp_path, "init", "contoso", *args, "--config", "tenants")
    assert init.code == 0, str(init)
    assert "Next: `reconciler import --tenant contoso`" in init.stdout
    layout = reconciler(tmp_path, "fmt", "--check", "--config", "tenants")
    assert layout.code == 0, str(layout)  # init writes what fmt would write
    (tmp_path / "state").mkdir(exist_ok=True)
    state = ["--config", "tenants", "--state", "state/state.db"]
    assert reconciler(tmp_path, "validate", *state).code == 0
    assert reconciler(tmp_path, "import", *state).code == 0
    plan = reconciler(tmp_path, "plan", "--detailed-exitcode", *state)
    assert plan.code == 0 and "No changes" in plan.stdout, str(plan)  # 0: nothing to do


@pytest.mark.parametrize(
    ("type_line", "bom", "newline"),
    [(True, True, "\r\n"), (False, False, "\n")],
    ids=["ps5", "plain"],
)
def test_a_csv_export_of_2000_users_becomes_a_tenant_that_plans_no_change(
    tmp_path: Path, type_line: bool, bom: bool, newline: str
) -> None:
    csv_export(tmp_path / "users.csv", 2000, type_line=type_line, bom=bom, newline=newline)
    adopt(tmp_path, "--from", "users.csv")
    files = sorted((tmp_path / "tenants" / "contoso" / "users").iterdir())
    assert [f.name for f in files] == ["users-001.yaml", "users-002.yaml"]
    first = files[0].read_text(encoding="utf-8")
    assert first.startswith(
        "users:\n  user0000@contoso.com:\n    display_name: User 0000\n    license: true\n"
    )
    assert '    conference_id: "7000000"\n' in first  # quoted: never a number to any editor
    assert "\n\n  user0001@contoso.com:\n" in first  # a blank line between users


def test_a_json_export_array_or_single_object(tmp_path: Path) -> None:
    users = [
        {
            "UserPrincipalName": f"u{i}@contoso.com",
            "ConferenceId": f"{8000000 + i}",
            "ServiceNumber": {"Number": "tel:+12065550123"},
            "License": "AudioConferencing",
            "Provider": "microsoft",
            "SendEmailToAddress": f"U{i}@contoso.com",
        }
        for i in range(2000)
    ]
    (tmp_path / "users.json").write_text(json.dumps(users), encoding="utf-8")
    adopt(tmp_path, "--from", "users.json", "--users-per-file", "500")
    assert len(list((tmp_path / "tenants" / "contoso" / "users").iterdir())) == 4
    single = tmp_path / "one"
    single.mkdir()
    (single / "user.json").write_text(json.dumps(users[0]), encoding="utf-8")
    adopt(single, "--from", "user.json")


def test_bridge_and_settings_exports(tmp_path: Path) -> None:
    csv_export(tmp_path / "users.csv", 20)
    (tmp_path / "bridge.json").write_text(
        json.dumps(
            {
                "Name": "Conference Bridge",
                "DefaultServiceNumber": {"Number": "14255550100"},
                "ServiceNumbers": [
                    {"Number": "14255550100", "Type": "TollNumber"},
                    {"Number": "12065550123", "Type": "TollNumber"},
                    {"Number": "18005550199", "Type": "TollFreeNumber"},
                ],
            }
        )
    )
    (tmp_path / "settings.json").write_text(
        json.dumps(
            {
                "Identity": "Global",
                "PinLength": 6,
                "UseUniqueConferenceIds": True,
                "AllowPSTNOnlyMeetingsByDefault": False,
                "EnableNameRecording": "False",
            }
        )
    )
    adopt(tmp_path, "--from", "users.csv", "--bridge", "bridge.json", "--settings", "settings.json")
    tenant = (tmp_path / "tenants" / "contoso" / "tenant.yaml").read_text(encoding="utf-8")
    assert tenant.startswith(
        "settings:\n  pin_length: 6\n  use_unique_conference_ids: true\n"
        "  enable_name_recording: false\n"
    )  # the documented order
    assert '- number: "+12065550123"\n      type: toll\n' in tenant
    assert 'default_number: "+14255550100"' in tenant


def test_bad_rows_are_all_located_and_nothing_is_written(tmp_path: Path) -> None:
    (tmp_path / "users.csv").write_text(
        HEADER + "\n"
        '"a@contoso.com","A","7000001","14255550100","","Microsoft","True"\n'
        '"","nobody","7000002","14255550100","","Microsoft","True"\n'
        '"b@contoso.com","B","7000003","999","","Microsoft","True"\n'
        '"c@contoso.com","C","7000004","14255550100","","Other","True"\n'
        '"d@contoso.com","D","7000005","14255550100","","Microsoft","maybe"\n'
        '"A@contoso.com","A again","7000006","14255550100","","Microsoft","True"\n',
        encoding="utf-8",
    )
    result = reconciler(tmp_path, "init", "contoso", "--from", "users.csv", "--config", "tenants")
    assert result.code == 1
    assert result.stderr.splitlines() == [
        "users.csv:3: no UserPrincipalName (or SipAddress)",
        "users.csv:4: '999' is not a valid phone number",
        "users.csv:5: Provider 'Other' is not one of Microsoft, ThirdParty, None",
        "users.csv:6: License must be true or false (or list AudioConferencing)",
        "users.csv:7: a@contoso.com is also on users.csv:2",
        "5 problem(s) found; nothing was written.",
    ]
    assert not (tmp_path / "tenants").exists() or list((tmp_path / "tenants").iterdir()) == []


def test_a_value_the_configuration_checks_refuse_is_named_by_its_export_row(
    tmp_path: Path,
) -> None:
    (tmp_path / "users.csv").write_text(
        HEADER + '\n"a@contoso.com","A","123","14255550100","","Microsoft","True"\n',
        encoding="utf-8",
    )
    result = reconciler(tmp_path, "init", "contoso", "--from", "users.csv", "--config", "tenants")
    assert result.code == 1
    assert result.stderr.splitlines() == [
        "users.csv:2: conference_id: '123' must be exactly 7 digits, e.g. \"8412345\"",
        "1 problem(s) found; nothing was written.",
    ]
    assert list((tmp_path / "tenants").iterdir()) == []


def test_every_problem_of_every_row_shows_in_one_run_sorted_by_line(tmp_path: Path) -> None:
    """A row's problems all show, and the configuration checks run on the clean rows in the
    same run; every line names the export, never the YAML init checked and did not keep."""
    good = [
        f'"u{i}@contoso.com","U{i}","{7000010 + i}","14255550100","","Microsoft","True"'
        for i in range(7)
    ]
    (tmp_path / "users.csv").write_text(
        "\n".join(
            [
                HEADER,
                '"a@contoso.com","A","7000001","14255550100","","Microsoft","True"',
                *good,
                '"","nobody","7000002","999","","Microsoft","maybe"',
                '"b@contoso.com","B","123","14255550100","","Microsoft","True"',
                '"c@contoso.com","C","7000001","14255550100","","Microsoft","True"',
                '"d@contoso.com","D\x1b[2J","7000004","14255550100","","Microsoft","True"',
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    result = reconciler(tmp_path, "init", "contoso", "--from", "users.csv", "--config", "tenants")
    assert result.code == 1
    assert result.stderr.splitlines() == [
        "users.csv:10: no UserPrincipalName (or SipAddress)",
        "users.csv:10: License must be true or false (or list AudioConferencing)",
        "users.csv:10: '999' is not a valid phone number",
        "users.csv:11: conference_id: '123' must be exactly 7 digits, e.g. \"8412345\"",
        "users.csv:12: conference ID '7000001' is also on users.csv:2",
        "users.csv:13: display_name must not contain control or invisible characters such as "
        "line breaks or bidi overrides (found U+001B)",
        "6 problem(s) found; nothing was written.",
    ]
    assert ".yaml" not in result.stdout + result.stderr
    assert list((tmp_path / "tenants").iterdir()) == []


def test_problems_of_the_tenant_name_the_bridge_or_settings_export(tmp_path: Path) -> None:
    csv_export(tmp_path / "users.csv", 3)
    (tmp_path / "bridge.json").write_text(
        json.dumps(
            {
                "ServiceNumbers": [
                    {"Number": "14255550100", "Type": "TollFreeNumber"},
                    {"Number": "999", "Type": "TollNumber"},
                ]
            }
        ),
        encoding="utf-8",
    )
    (tmp_path / "settings.json").write_text(
        json.dumps({"SendEmailFromOverride": True}), encoding="utf-8"
    )
    result = reconciler(
        tmp_path,
        "init",
        "contoso",
        *("--from", "users.csv", "--bridge", "bridge.json", "--settings", "settings.json"),
        *("--config", "tenants"),
    )
    assert result.code == 1
    not_toll = "is not a toll number of the bridge; allowed: none"
    assert result.stderr.splitlines() == [
        "bridge.json:entry 1: service number '999' is not a valid phone number",
        "settings.json:entry 1: send_email_from_override is true, so "
        "send_email_from_address is required",
        "settings.json:entry 1: send_email_from_override is true, so "
        "send_email_from_display_name is required",
        f"users.csv: default_number '+14255550100' {not_toll}",  # the users' most common
        *(f"users.csv:{line}: dial_in_number '+14255550100' {not_toll}" for line in (3, 4, 5)),
        "7 problem(s) found; nothing was written.",
    ]


def test_init_never_overwrites_a_tenant(tmp_path: Path) -> None:
    csv_export(tmp_path / "users.csv", 3)
    (tmp_path / "tenants" / "contoso").mkdir(parents=True)
    result = reconciler(tmp_path, "init", "contoso", "--from", "users.csv", "--config", "tenants")
    assert result.code == 1 and "already exists; init never overwrites" in result.stderr
    assert list((tmp_path / "tenants" / "contoso").iterdir()) == []


@pytest.mark.parametrize("form", [*FORMS, "TEL:+14255550100", {"Number": "14255550100"}])
def test_every_number_form_the_cmdlets_accept(form: object) -> None:
    assert e164(form) == "+14255550100"


def test_invalid_numbers_are_none() -> None:
    assert e164("999") is None and e164("") is None and e164("tel:") is None


def test_the_export_script_writes_the_columns_init_reads(tmp_path: Path) -> None:
    """The PowerShell cannot run here; its output is a CSV with these columns, which init
    reads (the rows below are what Export-Csv -Append -NoTypeInformation writes)."""
    script = (Path(__file__).resolve().parent.parent / "scripts" / "export-teams.ps1").read_text()
    for column in (
        "UserPrincipalName",
        "DisplayName",
        "ConferenceId",
        "ServiceNumber",
        "TollFreeServiceNumber",
        "Provider",
        "License",
    ):
        assert f"{column} " in script or f"{column}=" in script.replace(" ", "")
    assert "Set-Cs" not in script and "New-Cs" not in script and "Remove-" not in script
    (tmp_path / "users.csv").write_text(
        '"UserPrincipalName","DisplayName","ConferenceId","ServiceNumber",'
        '"TollFreeServiceNumber","Provider","License"\n'
        '"ann@contoso.com","Ann","8412345","+14255550100","","Microsoft","True"\n'
        '"bob@contoso.com","Bob","","","","ThirdParty","False"\n',
        encoding="utf-8",
    )
    adopt(tmp_path, "--from", "users.csv")
