"""``reconciler init TENANT --from FILE``: a tenant folder from a Teams export (CSV from
Export-Csv or JSON from ConvertTo-Json) that is what the tenant has, validated, never
overwriting, every problem named by its export row, all in one run; after ``import`` the plan
shows no change."""

from __future__ import annotations

import codecs
import json
import os
import tracemalloc
from pathlib import Path

import pytest

from reconciler.config import export_reader as export_module
from reconciler.config import export_text
from reconciler.config.export_tenant import ENUM_SETTINGS
from reconciler.config.export_values import e164
from reconciler.config.schema import load_schema
from tests.helpers.cli import Result
from tests.helpers.workspace import Workspace

HEADER = (
    '"UserPrincipalName","DisplayName","ConferenceId","ServiceNumber",'
    '"TollFreeServiceNumber","Provider","License"'
)
EXAMPLE = Path(__file__).resolve().parent.parent / "tenants" / "contoso"
TENANT_MODELINE = "# yaml-language-server: $schema=../../schemas/tenant.schema.json\n"
USERS_MODELINE = "# yaml-language-server: $schema=../../../schemas/users.schema.json\n"
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


CMDLET_COLUMNS = (
    "Identity",
    "SipAddress",
    "DisplayName",
    "ConferenceId",
    "ServiceNumber",
    "TollFreeServiceNumber",
    "BridgeId",
    "BridgeName",
    "Tenant",
    "AllowPstnOnlyMeetings",
    "AllowTollFreeDialIn",
)
"""What Get-CsOnlineDialInConferencingUser gives: no License, Provider or UserPrincipalName."""


def cmdlet_rows(users: int) -> list[dict[str, str]]:
    """Rows as the cmdlet lists its users: only those with Audio Conferencing from Microsoft."""
    return [
        dict(
            zip(
                CMDLET_COLUMNS,
                (
                    f"5f0c{i:04d}-7d1a-4c3e-9b2f-0a1b2c3d4e5f",
                    f"sip:user{i:02d}@contoso.com",
                    f"User {i:02d}",
                    f"{8400000 + i}",
                    "14255550100" if i % 2 else "12065550123",
                    "18005550199" if i % 3 == 0 else "",
                    "b7e6a5d4-0000-4000-8000-000000000001",
                    "Conference Bridge",
                    "d1c2b3a4-0000-4000-8000-000000000002",
                    "False",
                    "True",
                ),
                strict=True,
            )
        )
        for i in range(users)
    ]


def cmdlet_export(path: Path, users: int) -> Path:
    """What ``Get-CsOnlineDialInConferencingUser | Export-Csv`` writes in Windows PowerShell 5
    (-Encoding UTF8): a BOM, the #TYPE line, every value quoted, CRLF; or, for a ``.json`` path,
    what ``ConvertTo-Json`` writes."""
    rows = cmdlet_rows(users)
    if path.suffix == ".json":
        return write_json(path, rows)
    lines = [
        "#TYPE Deserialized.Microsoft.Rtc.Management.Hosting.DialInConferencing."
        "DialInConferencingUser",
        ",".join(f'"{column}"' for column in CMDLET_COLUMNS),
        *(",".join(f'"{value}"' for value in row.values()) for row in rows),
    ]
    path.write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8"))
    return path


def header_csv(path: Path, *rows: str) -> Path:
    """A CSV with :data:`HEADER`'s columns and these rows."""
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


def write_json(path: Path, data: object) -> Path:
    """``data`` as ``ConvertTo-Json | Set-Content -Encoding utf8`` leaves it in a file."""
    path.write_text(json.dumps(data, indent=4), encoding="utf-8")
    return path


def reconciler(folder: Path, *argv: str) -> Result:
    """``reconciler ARGV`` typed in ``folder``, where nothing is prepared (init makes the
    configuration folder)."""
    return Workspace(folder, str(folder / "state" / "state.db")).cli(*argv)


def refused(folder: Path, *args: str) -> list[str]:
    """The problems of ``init contoso ARGS``, which must fail: exit 1, one line per problem,
    nothing written, and no YAML named — the admin knows the export, not the folder init
    checked and did not keep."""
    result = reconciler(folder, "init", "contoso", *args, "--config", "tenants")
    assert result.code == 1, str(result)
    *problems, last = result.stderr.splitlines()
    assert last == f"{len(problems)} problem(s) found; nothing was written."
    assert not (folder / "tenants").exists() or list((folder / "tenants").iterdir()) == []
    assert ".yaml" not in result.stdout + result.stderr
    return problems


def adopt(tmp_path: Path, *args: str) -> Result:
    """init, fmt --check, validate, import, then a plan that changes nothing; init's result."""
    init = reconciler(tmp_path, "init", "contoso", *args, "--config", "tenants")
    assert init.code == 0, str(init)
    assert init.stdout.splitlines()[-1].endswith(
        "Next: `reconciler import --tenant contoso --config tenants` records it as applied "
        "without sending any email; `reconciler plan --config tenants` then shows no change."
    )  # --config given, so repeated: the hint works as copied
    layout = reconciler(tmp_path, "fmt", "--check", "--config", "tenants")
    assert layout.code == 0, str(layout)  # init writes what fmt would write
    (tmp_path / "state").mkdir(exist_ok=True)
    state = ["--config", "tenants", "--state", "state/state.db"]
    assert reconciler(tmp_path, "validate", "--config", "tenants").code == 0
    assert reconciler(tmp_path, "import", *state).code == 0
    plan = reconciler(tmp_path, "plan", "--detailed-exitcode", *state)
    assert plan.code == 0 and "No changes" in plan.stdout, str(plan)  # 0: nothing to do
    return init


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
        f"{USERS_MODELINE}users:\n"
        "  user0000@contoso.com:\n    display_name: User 0000\n    license: true\n"
    )
    assert '    conference_id: "7000000"\n' in first  # quoted: never a number to any editor
    assert "\n\n  user0001@contoso.com:\n" in first  # a blank line between users


@pytest.mark.parametrize("export", ["users.csv", "users.json"])
def test_the_cmdlets_own_export_adopts_every_user_as_licensed_with_microsoft(
    tmp_path: Path, export: str
) -> None:
    """Get-CsOnlineDialInConferencingUser lists only users who have Audio Conferencing with
    Microsoft as provider, so a row of its export without License or Provider is such a user."""
    cmdlet_export(tmp_path / export, 12)
    init = adopt(tmp_path, "--from", export)
    assert init.stdout.splitlines()[:3] == [
        f"{export}: no License column: every user is taken as licensed "
        "(Get-CsOnlineDialInConferencingUser lists only users with Audio Conferencing)",
        f"{export}: no Provider column: every user is taken to have Microsoft as provider "
        "(Get-CsOnlineDialInConferencingUser lists only users whose provider is Microsoft)",
        "12 user(s): 12 licensed with Microsoft as provider, 0 licensed with another provider "
        "or none, 0 not licensed",
    ]
    users = (tmp_path / "tenants" / "contoso" / "users" / "users-001.yaml").read_text("utf-8")
    assert users.count("    license: true\n") == 12 and "provider" not in users
    assert (
        "  user03@contoso.com:\n    display_name: User 03\n    license: true\n"
        '    conference_id: "8400003"\n    dial_in_number: "+14255550100"\n'
        '    toll_free_number: "+18005550199"\n'
    ) in users


def test_written_files_point_editors_at_their_schema_as_the_example_tenants_do(
    tmp_path: Path,
) -> None:
    cmdlet_export(tmp_path / "users.csv", 5)
    init = reconciler(
        tmp_path,
        "init",
        "contoso",
        "--from",
        "users.csv",
        "--users-per-file",
        "2",
        "--config",
        "tenants",
    )
    assert init.code == 0, str(init)
    folder = tmp_path / "tenants" / "contoso"
    example_tenant = (EXAMPLE / "tenant.yaml").read_text(encoding="utf-8")
    assert example_tenant.startswith(TENANT_MODELINE)
    assert (folder / "tenant.yaml").read_text(encoding="utf-8").startswith(TENANT_MODELINE)
    users = sorted((folder / "users").iterdir())
    assert len(users) == 3
    for path in [*users, *(EXAMPLE / "users").iterdir()]:
        assert path.read_text(encoding="utf-8").startswith(USERS_MODELINE), path
    layout = reconciler(tmp_path, "fmt", "--check", "--config", "tenants")
    assert layout.code == 0, str(layout)


BOMS = {
    "utf-16-le": codecs.BOM_UTF16_LE,
    "utf-16-be": codecs.BOM_UTF16_BE,
    "utf-32-le": codecs.BOM_UTF32_LE,
    "utf-8-sig": b"",
    "utf-8": b"",
}


@pytest.mark.parametrize("encoding", BOMS)
@pytest.mark.parametrize("export", ["users.json", "users.csv"])
def test_an_export_in_any_encoding_powershell_writes_is_read(
    tmp_path: Path, export: str, encoding: str
) -> None:
    """Windows PowerShell 5.1's ``ConvertTo-Json > users.json`` writes UTF-16 LE after a
    byte-order mark; ``Out-File -Encoding`` and ``Export-Csv -Encoding`` can write the others."""
    path = cmdlet_export(tmp_path / export, 12)
    text = path.read_text(encoding="utf-8-sig").replace("\r\n", "\n").replace("\n", "\r\n")
    path.write_bytes(BOMS[encoding] + text.encode(encoding))
    init = adopt(tmp_path, "--from", export)
    assert "12 user(s): 12 licensed with Microsoft as provider" in init.stdout
    users = (tmp_path / "tenants" / "contoso" / "users" / "users-001.yaml").read_text("utf-8")
    assert "  user03@contoso.com:\n    display_name: User 03\n" in users


def test_a_csv_field_longer_than_pythons_limit_is_a_problem_of_its_line(tmp_path: Path) -> None:
    header_csv(
        tmp_path / "users.csv",
        '"a@contoso.com","A","7000001","14255550100","","Microsoft","True"',
        f'"b@contoso.com","{"B" * 140_000}","7000002","14255550100","","Microsoft","True"',
    )
    assert refused(tmp_path, "--from", "users.csv") == [
        "users.csv:3: a field is longer than 131,072 characters (a quote left open?)"
    ]


@pytest.mark.parametrize(("text", "problem"), [("null", "entry 1"), ("[{}, 7]", "entry 2")])
def test_json_entries_that_are_not_objects_are_named_by_their_entry(
    tmp_path: Path, text: str, problem: str
) -> None:
    (tmp_path / "bridge.json").write_text(text, encoding="utf-8")
    cmdlet_export(tmp_path / "users.csv", 3)
    assert refused(tmp_path, "--from", "users.csv", "--bridge", "bridge.json") == [
        f"bridge.json:{problem}: expected an object"
    ]


@pytest.mark.parametrize("text", ["[{} {}]", "[{}] x", "[{}", "[", "[{},\n{}}]", "[]]"])
def test_json_read_an_entry_at_a_time_reports_errors_as_a_whole_parse_would(
    tmp_path: Path, text: str
) -> None:
    with pytest.raises(json.JSONDecodeError) as whole:
        json.loads(text)
    (tmp_path / "bridge.json").write_text(text, encoding="utf-8")
    cmdlet_export(tmp_path / "users.csv", 3)
    assert refused(tmp_path, "--from", "users.csv", "--bridge", "bridge.json") == [
        f"bridge.json:{whole.value.lineno}: not JSON ({whole.value})"
    ]


PIECE_CASES = [
    '[{"Identity": "zoë@contoso.com", "ConferenceId": 7000001, "n": 12345, "ok": true},\n'
    ' {"Identity": "日本@contoso.com", "ConferenceId": 7000002, "x": [1, 2.5e3, null]}]',
    '  {"Identity": "solo@contoso.com"}  ',
    '[{"a": 1},\n {"a": 2} {"a": 3}]',
    '[{"a": 1}]\n\n x',
    '[{"a": tru}]',
    '[{"a": 1},\n 123',
    "[\n",
]


@pytest.mark.parametrize("piece", [1, 7, 2**20], ids=["1 byte", "7 bytes", "1 MiB"])
@pytest.mark.parametrize("text", PIECE_CASES)
def test_where_the_pieces_end_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piece: int, text: str
) -> None:
    """Entries, and errors with their line, column and character, are what ``json.loads``
    gives for the whole text, however the file is cut into pieces (a UTF-16 file too)."""
    monkeypatch.setattr(export_text, "PIECE_BYTES", piece)
    for encoding in ("utf-8", "utf-16"):
        path = tmp_path / "users.json"
        path.write_text(text, encoding=encoding)
        export, rows = export_module.open_export(path)
        read = [row for _, row in rows]
        try:
            whole = json.loads(text)
        except json.JSONDecodeError as exc:
            assert read == []
            assert [str(p) for p in export.problems] == [f"{path}:{exc.lineno}: not JSON ({exc})"]
        else:
            entries = whole if isinstance(whole, list) else [whole]
            assert read == [{k.lower(): v for k, v in e.items()} for e in entries]
            assert export.problems == []


@pytest.mark.parametrize("piece", [1, 5, 2**20], ids=["1 byte", "5 bytes", "1 MiB"])
def test_a_csv_cut_into_pieces_keeps_its_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piece: int
) -> None:
    monkeypatch.setattr(export_text, "PIECE_BYTES", piece)
    path = tmp_path / "users.csv"
    path.write_bytes(
        '#TYPE X\r\n"Identity","DisplayName"\r\n"zoë@contoso.com","Zoë\r\nSecond line"\r\n'
        '"b@contoso.com","B"\r\n"\udcff"'.encode("utf-8", "surrogateescape")
    )
    export, rows = export_module.open_export(path)
    read = [(str(place), row) for place, row in rows]
    assert read == [
        (f"{path}:4", {"identity": "zoë@contoso.com", "displayname": "Zoë\r\nSecond line"}),
        (f"{path}:5", {"identity": "b@contoso.com", "displayname": "B"}),
    ]
    assert [str(p) for p in export.problems] == [f"{path}:6: not {export_text.SAVE_AS}"]


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 2**20])
def test_a_number_cut_where_a_piece_ends_is_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piece: int
) -> None:
    monkeypatch.setattr(export_text, "PIECE_BYTES", piece)
    path = tmp_path / "users.json"
    path.write_text('[{"Identity": "a@x.com"}, 12.5, 2.5e3, 1e+1, -Infinity]', encoding="utf-8")
    export, rows = export_module.open_export(path)
    assert [row for _, row in rows] == [{"identity": "a@x.com"}]
    assert [str(p) for p in export.problems] == [
        f"{path}:entry {n}: expected an object" for n in (2, 3, 4, 5)
    ]


@pytest.mark.parametrize("piece", [1, 7, 2**20])
@pytest.mark.parametrize(
    ("encoding", "bad"),
    [("utf-8-sig", b"\xff"), ("utf-16-be", b"\xdc\x00"), ("utf-16-le", b"\x00\xdc")],
)
def test_an_undecodable_byte_after_a_byte_order_mark_is_named_by_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piece: int, encoding: str, bad: bytes
) -> None:
    """PowerShell 5.1 writes UTF-8 with a BOM (``-Encoding UTF8``) and UTF-16 with one (``>``):
    the BOM is not counted in the place of the bad byte."""
    monkeypatch.setattr(export_text, "PIECE_BYTES", piece)
    path = tmp_path / "users.csv"
    text = '"UserPrincipalName","DisplayName"\r\n"a@contoso.com","José Müller"\r\n"b","'
    bom = {"utf-16-be": codecs.BOM_UTF16_BE, "utf-16-le": codecs.BOM_UTF16_LE}.get(encoding, b"")
    path.write_bytes(bom + text.encode(encoding) + bad)  # utf-8-sig writes its own
    export, rows = export_module.open_export(path)
    assert [(str(place), row["userprincipalname"]) for place, row in rows] == [
        (f"{path}:2", "a@contoso.com")
    ]
    assert [str(p) for p in export.problems] == [f"{path}:3: not {export_text.SAVE_AS}"]


@pytest.mark.parametrize(
    "after", [b"\0", b"\xff", "\x00{".encode("utf-16-le")], ids=["NUL", "not UTF-8", "UTF-16"]
)
def test_bytes_after_a_whole_json_document_are_a_problem_not_a_traceback(
    tmp_path: Path, after: bytes
) -> None:
    path = tmp_path / "users.json"
    path.write_bytes(b'[{"Identity": "a@x.com"}]\n' + after)
    export, rows = export_module.open_export(path)
    assert list(rows) == []
    assert len(export.problems) == 1 and f"{path}:2: " in str(export.problems[0])


def test_a_json_export_changed_between_its_two_readings_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    path.write_text('[{"Identity": "a@x.com"}, {"Identity": "b@x.com"}]', encoding="utf-8")
    export, rows = export_module.open_export(path)  # the first reading: its columns
    path.write_text('[{"Identity": "a@x.com"}, {"Identity": "b@x.com"', encoding="utf-8")
    assert list(rows) == []
    assert [str(p) for p in export.problems] == [f"{path}: {export_text.CHANGED}"]


def test_an_export_that_is_a_pipe_is_refused_in_one_line(tmp_path: Path) -> None:
    """A JSON export is read twice, a pipe only once: asked to save the export first."""
    fifo = tmp_path / "users.csv"
    os.mkfifo(fifo)
    export, rows = export_module.open_export(fifo)  # never blocks: the pipe is not opened
    assert list(rows) == []
    assert [str(p) for p in export.problems] == [
        f"{fifo}: cannot read: not a regular file (a pipe?); save the export to a file first"
    ]


def test_a_malformed_json_export_is_not_read_whole_to_say_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export_text, "PIECE_BYTES", 2**16)
    path = tmp_path / "users.json"
    entries = ",".join(f'{{"Identity": "u{n}@x.com"}}' for n in range(200_000))
    path.write_text('[{"Identity": tru},' + entries + "]", encoding="utf-8")
    tracemalloc.start()
    try:
        export, rows = export_module.open_export(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert list(rows) == [] and "line 1 column 15" in str(export.problems[0])
    assert peak < 2**20 < path.stat().st_size, (peak, path.stat().st_size)


def test_a_json_text_that_is_not_unicode_is_a_problem_of_its_entry(tmp_path: Path) -> None:
    """JSON may spell a lone surrogate, which no YAML file or email can hold."""
    (tmp_path / "users.json").write_text(
        '[{"UserPrincipalName": "a@contoso.com", "DisplayName": "A\\ud800"}]', encoding="utf-8"
    )
    assert refused(tmp_path, "--from", "users.json", "--default-number", "14255550100") == [
        "users.json:entry 1: holds text that is not Unicode text"
    ]


def test_the_rows_before_an_undecodable_line_are_read_and_checked_too(tmp_path: Path) -> None:
    """A decode error stops the text at its line; the rows before it are read as at any piece
    size (a file of one piece used to report the encoding alone)."""
    (tmp_path / "users.csv").write_bytes(b'"UserPrincipalName"\n"a@contoso.com"\n"\xff"\n')
    assert refused(tmp_path, "--from", "users.csv", "--default-number", "14255550100") == [
        "users.csv:2: an enabled user (license: true, provider: Microsoft) needs a conference_id"
        " (7 digits)",
        f"users.csv:3: not {export_text.SAVE_AS}",
    ]


@pytest.mark.parametrize("kind", ["json", "csv"])
def test_an_export_is_read_a_piece_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """Never in memory whole, as text or as rows: reading 20,000 users (a 64 KiB piece at a
    time) peaks under 1 MiB (about 0.5 MiB measured), less than the file itself, CSV (1.8 MB)
    or indented JSON (4.8 MB) alike."""
    monkeypatch.setattr(export_text, "PIECE_BYTES", 2**16)
    users = [
        {
            "Identity": f"u{n}@contoso.com",
            "DisplayName": f"User {n}",
            "ConferenceId": 7000000 + n,
            "ServiceNumber": "14255550100",
            "Provider": "Microsoft",
            "BridgeName": "Conference Bridge",
        }
        for n in range(20_000)
    ]
    path = tmp_path / f"users.{kind}"
    if kind == "json":
        write_json(path, users)
    else:
        rows = [list(users[0]), *(list(user.values()) for user in users)]
        path.write_text("".join(",".join(f'"{v}"' for v in r) + "\r\n" for r in rows))

    tracemalloc.start()
    try:
        export, rows = export_module.open_export(path)
        count = sum(1 for _ in rows)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (count, export.problems) == (20_000, []) and export.has("conference_id")
    assert peak < 2**20 < path.stat().st_size, (peak, path.stat().st_size)


@pytest.mark.parametrize("depth", [101, 100_000])
def test_json_nested_too_deeply_is_a_problem_of_the_file(tmp_path: Path, depth: int) -> None:
    nested = "[" * depth + "]" * depth
    (tmp_path / "bridge.json").write_text(
        '{"DefaultServiceNumber": "14255550100", "ServiceNumbers": ' + nested + "}",
        encoding="utf-8",
    )
    cmdlet_export(tmp_path / "users.csv", 3)
    assert refused(tmp_path, "--from", "users.csv", "--bridge", "bridge.json") == [
        "bridge.json: nested too deeply (more than 100 levels)"
    ]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'"UserPrincipalName"\n"\xff@contoso.com"\n', "users.csv:2: not UTF-8 text"),
        (
            '"UserPrincipalName"\n"a@contoso.com"\n'.encode("utf-16-le"),
            "users.csv:1: holds NUL characters: not UTF-8 text",
        ),
    ],
    ids=["not-utf-8", "utf-16-without-bom"],
)
def test_an_export_that_is_not_text_says_how_to_save_it(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    (tmp_path / "users.csv").write_bytes(content)
    assert refused(tmp_path, "--from", "users.csv", "--default-number", "14255550100") == [
        f"{problem} (nor UTF-16 after a byte-order mark); save the export as UTF-8 (-Encoding UTF8)"
    ]


def test_an_export_larger_than_init_reads_is_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export_module, "MAX_EXPORT_BYTES", 2**20)
    cmdlet_export(tmp_path / "users.csv", 3)
    (tmp_path / "settings.json").write_bytes(b" " * 2**20 + b"{}")
    assert refused(tmp_path, "--from", "users.csv", "--settings", "settings.json") == [
        "settings.json: larger than 1 MiB, the most init reads: is it the export? (a UTF-8 "
        "CSV of 300,000 users is under 100 MB)"
    ]


def test_a_license_column_wins_over_the_cmdlets_meaning(tmp_path: Path) -> None:
    (tmp_path / "users.csv").write_text(
        '"SipAddress","ConferenceId","ServiceNumber","License"\n'
        '"sip:ann@contoso.com","8412345","14255550100","True"\n'
        '"sip:bob@contoso.com","","","False"\n'
        '"sip:cat@contoso.com","8412347","14255550100","AudioConferencing"\n'
        '"sip:dan@contoso.com","","","False"\n',
        encoding="utf-8",
    )
    init = adopt(tmp_path, "--from", "users.csv")
    assert init.stdout.splitlines()[:2] == [
        "users.csv: no Provider column: every user is taken to have Microsoft as provider "
        "(Get-CsOnlineDialInConferencingUser lists only users whose provider is Microsoft)",
        "4 user(s): 2 licensed with Microsoft as provider, 0 licensed with another provider "
        "or none, 2 not licensed",
    ]
    users = (tmp_path / "tenants" / "contoso" / "users" / "users-001.yaml").read_text("utf-8")
    assert "  bob@contoso.com:\n    license: false\n" in users
    assert "  dan@contoso.com:\n    license: false\n" in users


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
    write_json(tmp_path / "users.json", users)
    adopt(tmp_path, "--from", "users.json", "--users-per-file", "500")
    assert len(list((tmp_path / "tenants" / "contoso" / "users").iterdir())) == 4
    single = tmp_path / "one"
    single.mkdir()
    write_json(single / "user.json", users[0])
    adopt(single, "--from", "user.json")


def test_bridge_and_settings_exports(tmp_path: Path) -> None:
    csv_export(tmp_path / "users.csv", 20)
    write_json(
        tmp_path / "bridge.json",
        {
            "Name": "Conference Bridge",
            "DefaultServiceNumber": {"Number": "14255550100"},
            "ServiceNumbers": [
                {"Number": "14255550100", "Type": "TollNumber"},
                {"Number": "12065550123", "Type": "TollNumber"},
                {"Number": "18005550199", "Type": "TollFreeNumber"},
            ],
        },
    )
    write_json(
        tmp_path / "settings.json",
        {
            "Identity": "Global",
            "PinLength": 6,
            "UseUniqueConferenceIds": True,
            "AllowPSTNOnlyMeetingsByDefault": False,
            "EnableNameRecording": "False",
        },
    )
    adopt(tmp_path, "--from", "users.csv", "--bridge", "bridge.json", "--settings", "settings.json")
    tenant = (tmp_path / "tenants" / "contoso" / "tenant.yaml").read_text(encoding="utf-8")
    assert tenant.startswith(
        f"{TENANT_MODELINE}settings:\n  pin_length: 6\n  use_unique_conference_ids: true\n"
        "  enable_name_recording: false\n"
    )  # the documented order
    assert '- number: "+12065550123"\n      type: toll\n' in tenant
    assert 'default_number: "+14255550100"' in tenant


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ({"EntryExitAnnouncementsType": 1, "MaskPstnNumbersType": 2}, ("ToneOnly", "NoMasking")),
        ({"EntryExitAnnouncementsType": 0, "MaskPstnNumbersType": 1}, (None, "MaskedForAllUsers")),
        (
            {"EntryExitAnnouncementsType": "tonEonly", "MaskPstnNumbersType": "0"},
            ("ToneOnly", None),
        ),
    ],
    ids=["numbers", "a default by number", "names"],
)
def test_enum_settings_convertto_json_wrote_as_numbers_are_read_by_name(
    tmp_path: Path, written: dict[str, object], expected: tuple[str | None, str | None]
) -> None:
    cmdlet_export(tmp_path / "users.csv", 3)
    settings = {"Identity": "Global", "PinLength": 5, **written}
    write_json(tmp_path / "settings.json", settings)
    adopt(tmp_path, "--from", "users.csv", "--settings", "settings.json")
    tenant = (tmp_path / "tenants" / "contoso" / "tenant.yaml").read_text(encoding="utf-8")
    names = ("entry_exit_announcements_type", "mask_pstn_numbers_type")
    for name, value in zip(names, expected, strict=True):
        assert (f"  {name}: {value}\n" in tenant) if value else (name not in tenant)


def test_an_enum_number_without_a_name_is_a_problem_of_the_settings_export(
    tmp_path: Path,
) -> None:
    cmdlet_export(tmp_path / "users.csv", 3)
    write_json(
        tmp_path / "settings.json",
        {"EntryExitAnnouncementsType": 2, "MaskPstnNumbersType": "Sometimes"},
    )
    assert refused(tmp_path, "--from", "users.csv", "--settings", "settings.json") == [
        "settings.json:entry 1: EntryExitAnnouncementsType 2 is not one of UseNames (0), "
        "ToneOnly (1)",
        "settings.json:entry 1: MaskPstnNumbersType 'Sometimes' is not one of "
        "MaskedForExternalUsers (0), MaskedForAllUsers (1), NoMasking (2)",
    ]


def test_the_enum_names_are_those_the_schema_allows_in_its_order() -> None:
    settings = load_schema("tenant.schema.json")["properties"]["settings"]["properties"]
    for key, (_, members) in ENUM_SETTINGS.items():
        assert list(members) == settings[key]["enum"]


def service_number(number: str, kind: str, city: str | None) -> dict[str, object]:
    """A ``ServiceNumbers`` entry as ``Get-CsOnlineDialInConferencingBridge | ConvertTo-Json``
    writes it."""
    return {
        "Number": number,
        "PrimaryLanguage": "en-US",
        "SecondaryLanguages": ["es-US", "fr-CA"],
        "City": city,
        "Type": kind,
        "IsShared": True,
    }


def test_the_bridge_exports_cities_are_the_numbers_locations(tmp_path: Path) -> None:
    cmdlet_export(tmp_path / "users.csv", 12)
    redmond = service_number("14255550100", "TollNumber", "Redmond")
    write_json(
        tmp_path / "bridge.json",
        {
            "Identity": "b7e6a5d4-0000-4000-8000-000000000001",
            "Name": "Conference Bridge",
            "Region": "NOAM",
            "DefaultServiceNumber": redmond,
            "ServiceNumbers": [
                redmond,
                service_number("12065550123", "TollNumber", "Seattle, WA"),
                service_number("18005550199", "TollFreeNumber", None),
            ],
            "IsDefault": True,
        },
    )
    adopt(tmp_path, "--from", "users.csv", "--bridge", "bridge.json")
    tenant = (tmp_path / "tenants" / "contoso" / "tenant.yaml").read_text(encoding="utf-8")
    assert tenant.endswith(
        "bridge:\n  numbers:\n"
        '    - number: "+12065550123"\n      type: toll\n      location: Seattle, WA\n'
        '    - number: "+14255550100"\n      type: toll\n      location: Redmond\n'
        '    - number: "+18005550199"\n      type: toll_free\n'
        '  default_number: "+14255550100"\n'
    )


def test_location_columns_of_the_users_export_are_their_numbers_locations(
    tmp_path: Path,
) -> None:
    (tmp_path / "users.csv").write_text(
        '"SipAddress","ConferenceId","ServiceNumber","City","TollFreeServiceNumber",'
        '"TollFreeLocation"\n'
        '"sip:ann@contoso.com","8412345","14255550100","Redmond","",""\n'
        '"sip:bob@contoso.com","8412346","33144556677","Paris","18005550199","United States"\n'
        '"sip:cat@contoso.com","8412347","14255550100","","",""\n',
        encoding="utf-8",
    )
    adopt(tmp_path, "--from", "users.csv")
    tenant = (tmp_path / "tenants" / "contoso" / "tenant.yaml").read_text(encoding="utf-8")
    assert (
        '    - number: "+14255550100"\n      type: toll\n      location: Redmond\n'
        '    - number: "+18005550199"\n      type: toll_free\n      location: United States\n'
        '    - number: "+33144556677"\n      type: toll\n      location: Paris\n'
    ) in tenant


def test_locations_that_disagree_or_cannot_be_shown_are_named_by_their_export(
    tmp_path: Path,
) -> None:
    (tmp_path / "users.csv").write_text(
        '"SipAddress","ConferenceId","ServiceNumber","Location"\n'
        '"sip:ann@contoso.com","8412345","14255550100","Redmond"\n'
        '"sip:bob@contoso.com","8412346","14255550100","Bellevue"\n',
        encoding="utf-8",
    )
    write_json(
        tmp_path / "bridge.json",
        [
            {"ServiceNumbers": [service_number("14255550100", "TollNumber", "Redmond")]},
            {"ServiceNumbers": [service_number("12065550123", "TollNumber", "Seattle\u202e")]},
        ],
    )
    assert refused(tmp_path, "--from", "users.csv", "--bridge", "bridge.json") == [
        "bridge.json:entry 2: location must not contain control or invisible characters such "
        "as line breaks or bidi overrides (found U+202E)",
        "users.csv:3: location 'Bellevue' of +14255550100 differs from 'Redmond' on "
        "bridge.json:entry 1",
    ]


def test_bad_rows_are_all_located_and_nothing_is_written(tmp_path: Path) -> None:
    header_csv(
        tmp_path / "users.csv",
        '"a@contoso.com","A","7000001","14255550100","","Microsoft","True"',
        '"","nobody","7000002","14255550100","","Microsoft","True"',
        '"b@contoso.com","B","7000003","999","","Microsoft","True"',
        '"c@contoso.com","C","7000004","14255550100","","Other","True"',
        '"d@contoso.com","D","7000005","14255550100","","Microsoft","maybe"',
        '"A@contoso.com","A again","7000006","14255550100","","Microsoft","True"',
    )
    assert refused(tmp_path, "--from", "users.csv") == [
        "users.csv:3: no UserPrincipalName (or SipAddress)",
        "users.csv:4: '999' is not a valid phone number",
        "users.csv:5: Provider 'Other' is not one of Microsoft, ThirdParty, None",
        "users.csv:6: License must be true or false (or list AudioConferencing)",
        "users.csv:7: a@contoso.com is also on users.csv:2",
    ]


def test_a_sign_in_address_too_long_for_a_yaml_key_is_a_row_problem(tmp_path: Path) -> None:
    """Export files are untrusted: what cannot be written is refused at its row, never a
    traceback from the writer."""
    write_json(
        tmp_path / "users.json",
        [
            {"SipAddress": f"sip:{'a' * 1100}@contoso.com", "ServiceNumber": "14255550100"},
            {"SipAddress": "sip:bob@contoso.com", "ConferenceId": "8412346"},
        ],
    )
    assert refused(tmp_path, "--from", "users.json") == [
        "users.json:entry 1: UserPrincipalName is longer than 1024 characters",
    ]


def test_a_value_the_configuration_checks_refuse_is_named_by_its_export_row(
    tmp_path: Path,
) -> None:
    header_csv(
        tmp_path / "users.csv", '"a@contoso.com","A","123","14255550100","","Microsoft","True"'
    )
    assert refused(tmp_path, "--from", "users.csv") == [
        "users.csv:2: conference_id: '123' must be exactly 7 digits, e.g. \"8412345\"",
    ]


def test_every_problem_of_every_row_shows_in_one_run_sorted_by_line(tmp_path: Path) -> None:
    """A row's problems all show, and the configuration checks run on the clean rows in the
    same run; every line names the export, never the YAML init checked and did not keep."""
    good = [
        f'"u{i}@contoso.com","U{i}","{7000010 + i}","14255550100","","Microsoft","True"'
        for i in range(7)
    ]
    header_csv(
        tmp_path / "users.csv",
        '"a@contoso.com","A","7000001","14255550100","","Microsoft","True"',
        *good,
        '"","nobody","7000002","999","","Microsoft","maybe"',
        '"b@contoso.com","B","123","14255550100","","Microsoft","True"',
        '"c@contoso.com","C","7000001","14255550100","","Microsoft","True"',
        '"d@contoso.com","D\x1b[2J","7000004","14255550100","","Microsoft","True"',
    )
    assert refused(tmp_path, "--from", "users.csv") == [
        "users.csv:10: no UserPrincipalName (or SipAddress)",
        "users.csv:10: License must be true or false (or list AudioConferencing)",
        "users.csv:10: '999' is not a valid phone number",
        "users.csv:11: conference_id: '123' must be exactly 7 digits, e.g. \"8412345\"",
        "users.csv:12: conference ID '7000001' is also on users.csv:2",
        "users.csv:13: display_name must not contain control or invisible characters such as "
        "line breaks or bidi overrides (found U+001B)",
    ]


def test_problems_of_the_tenant_name_the_bridge_or_settings_export(tmp_path: Path) -> None:
    csv_export(tmp_path / "users.csv", 3)
    write_json(
        tmp_path / "bridge.json",
        {
            "ServiceNumbers": [
                {"Number": "14255550100", "Type": "TollFreeNumber"},
                {"Number": "999", "Type": "TollNumber"},
            ]
        },
    )
    write_json(tmp_path / "settings.json", {"SendEmailFromOverride": True})
    lines = refused(
        tmp_path, "--from", "users.csv", "--bridge", "bridge.json", "--settings", "settings.json"
    )
    not_toll = "is not a toll number of the bridge; allowed: none"
    assert lines == [
        "bridge.json:entry 1: service number '999' is not a valid phone number",
        "settings.json:entry 1: send_email_from_override is true, so "
        "send_email_from_address is required",
        "settings.json:entry 1: send_email_from_override is true, so "
        "send_email_from_display_name is required",
        f"users.csv: default_number '+14255550100' {not_toll}",  # the users' most common
        *(f"users.csv:{line}: dial_in_number '+14255550100' {not_toll}" for line in (3, 4, 5)),
    ]


def test_the_next_hint_names_a_config_folder_only_when_one_was_given(tmp_path: Path) -> None:
    cmdlet_export(tmp_path / "users.csv", 3)
    init = reconciler(tmp_path, "init", "contoso", "--from", "users.csv")
    assert init.code == 0, str(init)
    assert "Next: `reconciler import --tenant contoso` records" in init.stdout
    assert "`reconciler plan` then shows no change." in init.stdout
    init = reconciler(tmp_path, "init", "fabrikam", "--from", "users.csv", "--config", "my tenants")
    assert init.code == 0, str(init)
    assert "Next: `reconciler import --tenant fabrikam --config 'my tenants'` records" in (
        init.stdout
    )


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
