"""A wrong state location never re-onboards everyone: it is refused, not guessed, and a tenant
the state has never seen may get more than 10 emails only when the operator says so. Read-only
commands never create, chmod or change anything; a database that is not ours is refused."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from tests.helpers.tenants import enabled_users, tenant_doc, write_tenant
from tests.helpers.workspace import NewWorkspace, Workspace, with_options

PASSWORD = "Sup3r-S3cret"


def tree(root: Path) -> dict[str, tuple[int, bytes]]:
    return {
        os.fspath(p.relative_to(root)): (p.lstat().st_mode, p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@pytest.fixture
def ws(new_workspace: NewWorkspace) -> Workspace:
    """A workspace whose configuration holds acme (3 users); commands give every option."""
    ws = new_workspace()
    write_tenant(ws.config, "acme", tenant_doc(), enabled_users(3, domain="acme.com"))
    return ws


@pytest.fixture
def config(ws: Workspace) -> Path:
    return ws.config


@pytest.mark.parametrize(
    "state",
    [
        f"host=db.example dbname=reconciler user=app password={PASSWORD}",
        f"  dbname = reconciler password={PASSWORD}",
        f"postgresql:db.example?password={PASSWORD}",
    ],
)
@pytest.mark.parametrize("command", ["apply", "plan"])
def test_a_libpq_keyword_string_is_refused_with_a_hint_and_never_echoed(
    tmp_path: Path, ws: Workspace, config: Path, state: str, command: str
) -> None:
    before = tree(tmp_path)
    extra = ["--auto-approve"] if command == "apply" else []
    typed = with_options(
        [command, *extra], config=str(config), state=state, mail=f"maildir:{tmp_path / 'mail'}"
    )
    result = ws.cli(*typed)
    assert result.code == 1, str(result)
    assert result.stderr.startswith("error: --state looks like a PostgreSQL connection string")
    assert "postgresql://USER@HOST:PORT/DBNAME" in result.stderr
    assert PASSWORD not in result.output and "Traceback" not in result.output
    assert tree(tmp_path) == before


@pytest.mark.parametrize(
    "state",
    [
        f"mysql://app:{PASSWORD}@db.example/reconciler",
        f"sqlite:///{PASSWORD}/state.db",
    ],
)
def test_an_unknown_scheme_is_refused_without_the_password(
    tmp_path: Path, ws: Workspace, config: Path, state: str
) -> None:
    before = tree(tmp_path)
    result = ws.cli("apply", "--auto-approve", "--config", str(config), "--state", state)
    assert result.code == 1 and "unsupported state URL scheme" in result.stderr, str(result)
    assert PASSWORD not in result.output
    assert tree(tmp_path) == before


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:p@ss/w@rd#x@127.0.0.1:9/db",
        "postgresql://app:p@ss:w?rd@127.0.0.1:9/db",
    ],
)
def test_a_password_with_unencoded_characters_never_appears(
    tmp_path: Path, ws: Workspace, config: Path, url: str
) -> None:
    result = ws.cli("apply", "--auto-approve", "--config", str(config), "--state", url)
    assert result.code == 1 and "Traceback" not in result.output, str(result)
    for fragment in ("p@ss", "ss/w", "w@rd", "w?rd", "rd#x"):
        assert fragment not in result.output, result.output


WHITESPACE = "begins or ends with whitespace (a line break read with a secret or a file?)"


@pytest.mark.parametrize(
    ("state", "refusal"),
    [
        ("state/state.db ", f"'state/state.db ' {WHITESPACE}"),
        ("state/state.db\n", f"'state/state.db\\n' {WHITESPACE}"),
        ("\tstate/state.db", f"'\\tstate/state.db' {WHITESPACE}"),
        ("state/st\u202eate.db", "'state/st\\u202eate.db' holds a control or invisible character"),
        ("File:state/state.db", "'File:state/state.db' is a file: URI, not a path"),
        ("file:///x/state.db", "'file:///x/state.db' is a file: URI, not a path"),
        ("", "'' is empty"),
        (
            f"postgresql://app:{PASSWORD}@127.0.0.1:9/db\n",
            f"'postgresql://app:***@127.0.0.1:9/db\\n' {WHITESPACE}",
        ),
    ],
    ids=["space", "newline", "tab", "bidi", "file", "file-url", "empty", "postgresql-newline"],
)
@pytest.mark.parametrize("command", [["apply", "--auto-approve"], ["plan"]])
def test_a_state_location_that_is_not_exactly_a_path_or_url_is_refused_as_given(
    tmp_path: Path, ws: Workspace, command: list[str], state: str, refusal: str
) -> None:
    before = tree(tmp_path)
    typed = with_options(command, config=str(ws.config), mail=f"maildir:{ws.maildir}")
    runs = [ws.cli(*typed, "--state", state)]
    if state:  # click takes an empty variable for an unset one: the default state
        runs.append(ws.cli(*typed, env={"RECONCILER_STATE": state}))
    for result in runs:
        assert result.code == 1, str(result)
        assert result.stderr.splitlines() == [
            f"error: --state {refusal}: give an SQLite file path or a postgresql:// URL, "
            "exactly; nothing was done"
        ]
        assert PASSWORD not in result.output
    assert tree(tmp_path) == before and sorted(os.listdir(tmp_path / "state")) == []


def test_a_folder_given_as_the_state_file_is_refused_and_left_alone(
    tmp_path: Path, ws: Workspace, config: Path
) -> None:
    folder = tmp_path / "state"
    for command in (["plan"], ["apply", "--auto-approve"]):
        result = ws.cli(*command, "--config", str(config), "--state", str(folder))
        assert result.code == 1, str(result)
        assert result.stderr.splitlines() == [
            f"error: state {folder} is a folder: give the path of the SQLite file itself; "
            "nothing was done"
        ]
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755 and not ws.maildir.exists()


def test_a_state_folder_that_does_not_exist_is_refused(
    tmp_path: Path, ws: Workspace, config: Path
) -> None:
    state = tmp_path / "typo" / "state.db"
    result = ws.cli(
        "apply",
        "--auto-approve",
        "--config",
        str(config),
        "--state",
        str(state),
        "--mail",
        f"maildir:{tmp_path / 'mail'}",
    )
    assert result.code == 1, str(result)
    assert result.stderr.startswith(f"error: state folder {state.parent} does not exist")
    assert not state.parent.exists() and not (tmp_path / "mail").exists()


def test_the_default_state_folder_is_created(tmp_path: Path, ws: Workspace, config: Path) -> None:
    result = ws.cli("apply", "--auto-approve", "--config", str(config))
    assert result.code == 0, str(result)
    assert (tmp_path / ".reconciler" / "state.db").is_file()


def test_a_symlinked_state_file_is_refused(tmp_path: Path, ws: Workspace, config: Path) -> None:
    real = tmp_path / "real.db"
    sqlite3.connect(real).close()
    real.chmod(0o644)
    link = tmp_path / "state.db"
    link.symlink_to(real)
    for command in (["plan"], ["apply", "--auto-approve"]):
        result = ws.cli(*command, "--config", str(config), "--state", str(link))
        assert result.code == 1 and "is a symbolic link" in result.stderr, str(result)
    assert stat.S_IMODE(real.stat().st_mode) == 0o644


# --- first contact ------------------------------------------------------------------------


def new_tenant(new_workspace: NewWorkspace, users: int) -> Workspace:
    ws = new_workspace()
    write_tenant(ws.config, "acme", tenant_doc(), enabled_users(users, domain="acme.com"))
    return ws


def test_an_apply_that_would_email_many_users_of_a_new_state_is_refused(
    tmp_path: Path, new_workspace: NewWorkspace
) -> None:
    ws = new_tenant(new_workspace, 11)
    result = ws.apply(expect=1)
    assert result.stderr.splitlines() == [
        f"error: no applied state for acme (11 emails) in {ws.state}: is --state right? If "
        "these users already have Audio Conferencing, adopt the configuration without emails "
        "with `reconciler import`; to really email them all, pass --allow-new-state; nothing "
        "was written or sent"
    ]
    assert list((tmp_path / "state").iterdir()) == [] and not ws.maildir.exists()


@pytest.mark.parametrize("how", ["flag", "env"])
def test_allow_new_state_emails_them_all(new_workspace: NewWorkspace, how: str) -> None:
    ws = new_tenant(new_workspace, 11)
    if how == "flag":
        ws.apply("--allow-new-state")
    else:
        ws.apply(env={"RECONCILER_ALLOW_NEW_STATE": "1"})
    assert len(ws.mails()) == 11


def test_import_adopts_without_emails_and_the_next_apply_needs_nothing(
    new_workspace: NewWorkspace,
) -> None:
    ws = new_tenant(new_workspace, 11)
    assert ws.run("import").code == 0
    ws.apply()
    assert ws.mails() == []


def test_ten_emails_or_an_existing_state_need_nothing(new_workspace: NewWorkspace) -> None:
    ws = new_tenant(new_workspace, 10)
    ws.apply()
    write_tenant(ws.config, "acme", tenant_doc(), enabled_users(40, domain="acme.com"))
    # The state knows the tenant now: no --allow-new-state, whatever the count (30 of 40 users
    # is the mass-email guard's business).
    ws.apply("--allow-mass-email")
    assert len(ws.mails()) == 40


def test_the_guard_applies_on_postgresql_too(
    new_workspace: NewWorkspace, postgres_url: str
) -> None:
    ws = new_workspace(postgres_url)
    write_tenant(ws.config, "acme", tenant_doc(), enabled_users(12, domain="acme.com"))
    result = ws.apply(expect=1)
    assert "no applied state for acme (12 emails)" in result.stderr
    assert "Sup3r" not in result.output
    assert ws.state_show()["tenants"] == []


# --- read-only commands, foreign databases ---------------------------------------------------


def test_read_only_commands_never_change_the_state_file(
    tmp_path: Path, new_workspace: NewWorkspace
) -> None:
    ws = new_tenant(new_workspace, 3)
    ws.apply()
    state = Path(ws.state)
    state.chmod(0o640)
    before = tree(tmp_path / "state")
    for command in (
        ["plan"],
        ["plan", "--format", "json"],
        ["state", "show"],
        ["state", "queue"],
        ["history"],
        ["preview", "--out", str(tmp_path / "preview")],
        ["validate"],
    ):
        result = ws.run(*command)
        assert result.code == 0, str(result)
    assert tree(tmp_path / "state") == before
    assert stat.S_IMODE(state.stat().st_mode) == 0o640


@pytest.mark.parametrize(
    "command", [["plan"], ["apply", "--auto-approve"], ["state", "show"], ["state", "queue"]]
)
def test_a_foreign_sqlite_database_is_refused_and_left_alone(
    tmp_path: Path, new_workspace: NewWorkspace, command: list[str]
) -> None:
    ws = new_tenant(new_workspace, 3)
    foreign = Path(ws.state)
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    before = foreign.read_bytes()
    result = ws.run(*command)
    assert result.code == 1, str(result)
    assert "is an SQLite database but not a reconciler state" in result.stderr
    assert foreign.read_bytes() == before and not ws.maildir.exists()
