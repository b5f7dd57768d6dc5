"""Every kind of bad input (SPEC §3) through the real command line: `validate`, `plan`, `apply`
(and `import`) exit 1, print each problem located as ``path:line:column: message`` on stderr,
print no traceback, and write nothing: no state database, no maildir, no saved plan, and an
existing state database keeps its exact bytes."""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from reconciler.cli import main
from tests.helpers.cli import Result, assert_clean_error, invoke
from tests.helpers.problems import PROBLEM_LINE
from tests.helpers.tenants import (
    EXAMPLE,
    TENANT,
    USERS,
    copy_example,
    make_tenant,
    with_settings,
    with_user,
    write_files,
)
from tests.helpers.workspace import NewWorkspace, Workspace, offered, with_options

SUMMARY = "problem(s) found; nothing was planned, applied or sent."
ENABLED = 'license: true\nconference_id: "1234567"\n'


def case(
    users: str | None = USERS, tenant: str | None = TENANT, name: str = "acme", **extra: str
) -> dict[str, str | bytes]:
    files: dict[str, str | bytes] = {}
    if tenant is not None:
        files[f"{name}/tenant.yaml"] = tenant
    if users is not None:
        files[f"{name}/users.yaml"] = users
    files.update({f"{name}/{rel}": text for rel, text in extra.items()})
    return files


# kind -> (files, one problem line the run must print)
BAD_INPUTS: dict[str, tuple[dict[str, str | bytes], str]] = {
    "yes-is-not-a-boolean": (
        case(with_user("license: yes\n")),
        "acme/users.yaml:3:14: license: expected true or false, got 'yes' (only true and false "
        "are booleans; yes/no/on/off are not)",
    ),
    "explicit-tag": (
        case(with_user("license: !!python/object/apply:os.system ['true']\n")),
        "acme/users.yaml:3:14: YAML tags such as 'tag:yaml.org,2002:python/object/apply:"
        "os.system' are not allowed",
    ),
    "int-tag": (
        case(with_user("license: true\nconference_id: !!int 1234567\n")),
        "acme/users.yaml:4:20: YAML tags such as 'tag:yaml.org,2002:int' are not allowed; "
        "write plain values",
    ),
    "two-documents": (
        case(USERS + "---\nusers: {}\n"),
        "acme/users.yaml:5:1: only one YAML document is allowed per file",
    ),
    "not-a-mapping": (
        case("- alice@acme.com\n"),
        'acme/users.yaml:1:1: expected a mapping of keys to values, got ["alice@acme.com"]',
    ),
    "duplicate-key": (
        case(with_user(ENABLED + "license: false\n")),
        "acme/users.yaml:5:5: duplicate key 'license' (first defined on line 3); each key may "
        "appear once",
    ),
    "syntax-error": (
        case("users:\n  alice@acme.com: {license: true\n"),
        "acme/users.yaml:3:1: invalid YAML: while parsing a flow mapping did not find expected "
        "',' or '}'",
    ),
    "not-utf8": (
        case(b"users:\n  alice@acme.com:\n    display_name: Ren\xe9\n    license: false\n"),
        "acme/users.yaml:3:22: invalid YAML: the file is not UTF-8 text (byte 0xe9: invalid "
        "continuation byte); save it as UTF-8",
    ),
    "unknown-key": (
        case(with_user(ENABLED + "licence: true\n")),
        "acme/users.yaml:5:5: unknown key 'licence' (did you mean 'license'?); allowed: "
        "conference_id, dial_in_number, display_name, email, license, locale, pin_reset, "
        "provider, send_conference_info, toll_free_number",
    ),
    "missing-required-key": (
        case("users:\n  alice@acme.com:\n    display_name: Alice\n"),
        "acme/users.yaml:2:3: missing required key 'license' in this entry",
    ),
    "missing-tenant-yaml": (
        case(tenant=None),
        "acme/tenant.yaml:1:1: missing tenant.yaml: every tenant folder needs one (settings "
        "and bridge)",
    ),
    "missing-settings": (
        case(tenant=TENANT[TENANT.index("bridge:") :]),
        "acme/tenant.yaml:1:1: missing required key 'settings' in the file",
    ),
    "missing-bridge": (
        case(tenant="settings:\n  pin_length: 5\n"),
        "acme/tenant.yaml:1:1: missing required key 'bridge' in the file",
    ),
    "invalid-e164": (
        case(tenant=TENANT.replace('"+12065550123"', '"+11234567890"')),
        "acme/tenant.yaml:6:16: bridge number '+11234567890' is not a valid phone number for "
        "its country code",
    ),
    "duplicate-bridge-number": (
        case(tenant=TENANT.replace('"+12065550123"', '"+14255550100"')),
        "acme/tenant.yaml:6:16: bridge number '+14255550100' is listed twice",
    ),
    "default-number-toll-free": (
        case(
            tenant=TENANT.replace(
                'default_number: "+14255550100"', 'default_number: "+18005550199"'
            )
        ),
        "acme/tenant.yaml:8:19: default_number '+18005550199' is not a toll number of the "
        "bridge; allowed: +12065550123, +14255550100",
    ),
    "dial-in-toll-free": (
        case(with_user(ENABLED + 'dial_in_number: "+18005550199"\n')),
        "acme/users.yaml:5:21: dial_in_number '+18005550199' is not a toll number of the "
        "bridge; allowed: +12065550123, +14255550100",
    ),
    "toll-free-number-toll": (
        case(with_user(ENABLED + 'toll_free_number: "+12065550123"\n')),
        "acme/users.yaml:5:23: toll_free_number '+12065550123' is not a toll_free number of "
        "the bridge; allowed: +18005550199",
    ),
    "conference-id-six-digits": (
        case(with_user("license: true\nconference_id: 123456\n")),
        "acme/users.yaml:4:20: conference_id: '123456' must be exactly 7 digits, e.g. \"8412345\"",
    ),
    "conference-id-duplicate": (
        case(USERS, **{"users/b.yaml": with_user(ENABLED, "bob@acme.com")}),
        "acme/users/b.yaml:4:20: conference_id '1234567' is defined more than once: also in "
        "acme/users.yaml (alice@acme.com)",
    ),
    "enabled-without-conference-id": (
        case(with_user("license: true\n")),
        "acme/users.yaml:2:3: an enabled user (license: true, provider: Microsoft) needs a "
        "conference_id (7 digits)",
    ),
    "enabled-without-dial-in": (
        case(tenant=TENANT.replace('  default_number: "+14255550100"\n', "")),
        "acme/users.yaml:2:3: an enabled user needs a dial_in_number, and the bridge has no "
        "default_number",
    ),
    "from-override-incomplete": (
        case(
            tenant=with_settings(
                "send_email_from_override: true\nsend_email_from_display_name: Acme\n"
            )
        ),
        "acme/tenant.yaml:1:1: send_email_from_override is true, so send_email_from_address "
        "is required",
    ),
    "crlf-in-display-name": (
        case(with_user(ENABLED + 'display_name: "Alice\\r\\nBcc: evil@example.com"\n')),
        "acme/users.yaml:5:19: display_name must not contain control or invisible characters "
        "such as line breaks or bidi overrides (found U+000D)",
    ),
    "crlf-in-from-display-name": (
        case(
            tenant=with_settings(
                "send_email_from_override: true\n"
                "send_email_from_address: conf@acme.com\n"
                'send_email_from_display_name: "A\\nB"\n'
            )
        ),
        "acme/tenant.yaml:5:33: send_email_from_display_name must not contain control or "
        "invisible characters such as line breaks or bidi overrides (found U+000A)",
    ),
    "invalid-upn": (
        case(with_user(ENABLED, "alice.acme.com")),
        "acme/users.yaml:2:3: user key 'alice.acme.com' is not a valid sign-in address: An "
        "email address must have an @-sign.",
    ),
    "invalid-email-override": (
        case(with_user(ENABLED + "email: alice@\n")),
        "acme/users.yaml:5:12: email There must be something after the @-sign.",
    ),
    "pin-length-too-short": (
        case(tenant=TENANT.replace("pin_length: 5", "pin_length: 3")),
        "acme/tenant.yaml:2:15: pin_length: 3 is out of range; allowed: 4 to 12",
    ),
    "pin-length-too-long": (
        case(tenant=TENANT.replace("pin_length: 5", "pin_length: 13")),
        "acme/tenant.yaml:2:15: pin_length: 13 is out of range; allowed: 4 to 12",
    ),
    "tenant-folder-name": (
        case(name="Acme_Corp"),
        "Acme_Corp/tenant.yaml:1:1: tenant folder name 'Acme_Corp' must be 1-63 lowercase "
        "letters, digits or '-'",
    ),
    "user-in-two-files": (
        case(USERS, **{"users/more.yaml": with_user("license: false\n", "Alice@Acme.com")}),
        "acme/users.yaml:2:3: user 'alice@acme.com' is defined more than once: also in "
        "acme/users/more.yaml (Alice@Acme.com)",
    ),
    "malformed-locale": (
        case(with_user(ENABLED + "locale: fr_CA\n")),
        "acme/users.yaml:5:13: locale: 'fr_CA' must be a BCP 47 language tag such as en, fr-CA "
        "or zh-Hans-CN",
    ),
}

COMMANDS = {
    "validate": ["validate"],
    "plan": ["plan"],
    "plan-json-out": ["plan", "--format", "json", "--out", "plan.json", "--detailed-exitcode"],
    "apply": ["apply", "--auto-approve"],
    "import": ["import"],
}


@pytest.fixture
def work(
    new_workspace: NewWorkspace, tmp_path: Path, packaged_templates_checked_once: None
) -> Workspace:
    """An in-process workspace in an empty folder (so no `templates/` or `.reconciler/` of the
    checkout is used) whose state folder does not exist yet."""
    return new_workspace(str(tmp_path / "work" / "state" / "state.db"), root=tmp_path / "work")


def assert_refused(result: Result, expected: str) -> None:
    assert result.code == 1, str(result)
    assert "Traceback" not in result.output  # a clean exit, not a crash
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[-1].endswith(SUMMARY)
    assert lines[-1] == f"{len(lines) - 1} {SUMMARY}"
    assert expected in lines[:-1], result.stderr
    for line in lines[:-1]:
        assert PROBLEM_LINE.match(line), line
    assert lines[:-1] == sorted(lines[:-1], key=_sort_key)


def _sort_key(line: str):
    file, line_no, col, _ = line.split(":", 3)
    return file, int(line_no), int(col)


def assert_nothing_written(work: Workspace) -> None:
    assert not Path(work.state).parent.exists()
    assert not work.maildir.exists()
    assert not (work.root / "plan.json").exists()
    assert not (work.root / ".reconciler").exists()


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind", BAD_INPUTS)
def test_bad_input_is_refused_located_and_nothing_is_written(work, kind, command):
    files, expected = BAD_INPUTS[kind]
    write_files(work.config, files)
    result = work.run(*COMMANDS[command])
    assert_refused(result, expected)
    assert_nothing_written(work)


def test_good_input_passes_the_same_checks(work):
    """The matrix above is not vacuous: the base files it breaks are valid."""
    write_files(work.config, case())
    result = work.run("validate")
    assert result.code == 0, result.stderr
    assert result.stdout == "Configuration valid: 1 tenant(s), 1 user(s).\n"


def test_many_problems_are_all_printed_sorted(work):
    write_files(
        work.config,
        {
            **case(
                with_user("license: yes\n"), tenant=TENANT.replace("pin_length: 5", "pin_length: 3")
            ),
            **case(with_user("license: true\n", "bob@globex.com"), name="globex"),
            "globex/users/b.yaml": "users:\n  x: {license: false}\n",
        },
    )
    result = work.run("plan")
    assert_refused(result, "acme/tenant.yaml:2:15: pin_length: 3 is out of range; allowed: 4 to 12")
    assert result.stderr.splitlines()[:-1] == [
        "acme/tenant.yaml:2:15: pin_length: 3 is out of range; allowed: 4 to 12",
        "acme/users.yaml:3:14: license: expected true or false, got 'yes' (only true and "
        "false are booleans; yes/no/on/off are not)",
        "globex/users.yaml:2:3: an enabled user (license: true, provider: Microsoft) needs a "
        "conference_id (7 digits)",
        "globex/users/b.yaml:2:3: user key 'x' is not a valid sign-in address: An email address "
        "must have an @-sign.",
    ]
    assert result.stderr.splitlines()[-1] == f"4 {SUMMARY}"


# --- an existing state database is left exactly as it was ---------------------------------------


@pytest.fixture(scope="module")
def applied_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state folder where the base config was imported (one tenant, serial 1)."""
    base = Workspace.create(tmp_path_factory.mktemp("applied"))
    write_files(base.config, case())
    result = base.cli("import", "--config", str(base.config), "--state", base.state)
    assert result.code == 0, str(result)
    assert Path(base.state).is_file()
    return Path(base.state).parent


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file's bytes, lock files aside (a lock beside the state is not state)."""
    return {
        p.name: p.read_bytes()
        for p in folder.iterdir()
        if p.is_file() and not p.name.endswith(".lock")
    }


@pytest.mark.parametrize("command", ["validate", "plan", "apply", "import"])
@pytest.mark.parametrize(
    "kind",
    [
        "yes-is-not-a-boolean",
        "duplicate-key",
        "syntax-error",
        "missing-tenant-yaml",
        "dial-in-toll-free",
        "conference-id-duplicate",
        "pin-length-too-short",
        "crlf-in-display-name",
        "user-in-two-files",
    ],
)
def test_existing_state_is_unchanged_by_bad_input(work, applied_state, kind, command):
    folder = Path(work.state).parent
    shutil.copytree(applied_state, folder)
    before = snapshot(folder)
    files, expected = BAD_INPUTS[kind]
    write_files(work.config, files)
    result = work.run(*COMMANDS[command], *(["--force"] if command == "import" else []))
    assert_refused(result, expected)
    assert snapshot(folder) == before
    assert not work.maildir.exists()
    assert not (folder / "suppressed").exists()


# --- the installed entry point, as CI runs it ---------------------------------------------------


@pytest.mark.parametrize("command", [["validate"], ["plan"], ["apply", "--auto-approve"]])
def test_python_m_reconciler_refuses_bad_input(work, command):
    write_files(work.config, BAD_INPUTS["duplicate-key"][0])
    write_files(
        work.config,
        {"globex/tenant.yaml": TENANT, "globex/users/x.yaml": with_user("license: on\n")},
    )
    typed = with_options(command, config="tenants", state="state/state.db", mail="maildir:mail")
    proc = work.python_m(*typed, timeout=120)
    assert proc.code == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        BAD_INPUTS["duplicate-key"][1],
        "globex/users/x.yaml:3:14: license: expected true or false, got 'on' (only true and "
        "false are booleans; yes/no/on/off are not)",
        f"2 {SUMMARY}",
    ]
    assert not (work.root / "state").exists()
    assert not (work.root / "mail").exists()
    assert not (work.root / ".reconciler").exists()


def test_shipped_example_validates_through_the_cli(work):
    result = work.cli("validate", "--config", str(EXAMPLE), "--tenant", "contoso")
    assert result.code == 0, result.stderr
    assert result.stdout.startswith("Configuration valid: 1 tenant(s), ")
    assert not (work.root / ".reconciler").exists()  # validate needs no state


# --- more bad input, one command at a time ------------------------------------------------------


@pytest.mark.parametrize("key", ["josé@acme.com", "alice@exämple.com"])
def test_non_ascii_address_is_refused_by_validate_not_crashing_apply(
    new_workspace: NewWorkspace, key: str
) -> None:
    ws = new_workspace()
    make_tenant(ws.config, users=with_user(ENABLED, key))
    result = ws.cli("validate", "--config", str(ws.config))
    assert_clean_error(result, "acme/users.yaml:2:3:", "ASCII")
    result = ws.run("apply", "--auto-approve")
    assert_clean_error(result, "acme/users.yaml:2:3:")
    assert not ws.maildir.exists()


def test_validate_of_a_tenant_without_folder_fails(new_workspace: NewWorkspace) -> None:
    ws = new_workspace()
    make_tenant(ws.config)
    result = ws.cli("validate", "--config", str(ws.config), "--tenant", "nosuch")
    assert_clean_error(result, "nosuch")


def test_an_unknown_key_with_two_letters_swapped_gets_a_hint(new_workspace: NewWorkspace) -> None:
    ws = new_workspace()
    make_tenant(ws.config, users=with_user('lisence: true\nconference_id: "1234567"\n'))
    result = ws.run("validate")
    assert result.code == 1
    assert "unknown key 'lisence' (did you mean 'license'?)" in result.stderr


def test_a_command_offers_exactly_the_common_options_the_readme_lists_for_it() -> None:
    """`init foo --tenant bar` or `fmt --mail …` would be ignored: they are refused instead,
    and the README's option table says which command takes which option."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(--[a-z-]+) [A-Z]+` \| [^|]+ \| [^|]+ \| ([a-z ,-]+) \|", readme, re.M)
    listed = {option: {c.strip() for c in commands.split(",")} for option, commands in rows}
    assert set(listed) == {
        "--config",
        "--state",
        "--mail",
        "--default-from",
        "--templates",
        "--tenant",
    }
    commands = {" ".join(words): words for words in every_command(main)}
    for option, users in listed.items():
        assert {name for name, words in commands.items() if option in offered(words)} == users
    for argv in (["init", "foo", "--from", "x.csv", "--tenant", "bar"], ["fmt", "--mail", "x"]):
        result = invoke(argv, cwd=Path.cwd())
        assert result.code == 2 and "No such option" in result.stderr, str(result)


def every_command(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[list[str]]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from every_command(command, (*prefix, name))
        else:
            yield [*prefix, name]


def test_on_windows_a_command_stops_at_once_in_one_line(
    new_workspace: NewWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POSIX file locks guard the state: rather than half-working and failing mid-way, every
    command says where the reconciler runs, and writes nothing; help still answers."""
    ws = new_workspace()
    copy_example(ws.config, "contoso")
    monkeypatch.setattr(sys, "platform", "win32")
    result = ws.run("apply", "--auto-approve")
    assert (result.code, result.stdout) == (1, ""), str(result)
    assert result.stderr.count("\n") == 1 and "WSL" in result.stderr, str(result)
    assert "Traceback" not in result.stderr
    assert not Path(ws.state).exists() and not ws.maildir.exists()
    assert ws.cli("--help").code == 0
