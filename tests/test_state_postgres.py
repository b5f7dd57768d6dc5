"""PostgreSQL specifics, against a real server: concurrent applies through the real CLI, advisory
locks, schema versions, and connection failures reported on one line without credentials."""

from __future__ import annotations

import json
import mailbox
import os
import threading
import uuid

import psycopg
import pytest

from reconciler.errors import UserError
from reconciler.state import Commit, LockLost, open_store, redact
from reconciler.state.postgres import SCHEMA_VERSION
from tests.fixtures.ports import free_port
from tests.fixtures.state import PostgresServer
from tests.helpers.cli import Env, Result
from tests.helpers.processes import Running, Terminal
from tests.helpers.schema import downgrade_to_version
from tests.helpers.tenants import copy_example
from tests.helpers.workspace import NewWorkspace, Workspace, with_options

PROMPT = "Only 'yes' is accepted"
EMAILS_PER_APPLY = 4  # the example tenant's first apply: four "enabled" emails


@pytest.fixture
def ws(new_workspace: NewWorkspace) -> Workspace:
    """The example tenant twice (alpha, beta); each command names its state."""
    ws = new_workspace()
    copy_example(ws.config, "alpha", "beta")
    return ws


def run(
    ws: Workspace, command: list[str], state: str | None, *tenants: str, env: Env | None = None
) -> Result:
    """``reconciler COMMAND`` on ``state`` (None: none given, the environment's) and on
    ``tenants`` (default all)."""
    args = with_options(command, config=str(ws.config), mail=ws.mail, state=state)
    args += [a for tenant in tenants for a in ("--tenant", tenant)]
    return ws.cli(*args, env=env, timeout=120)


@pytest.fixture
def process_ws(ws: Workspace) -> Workspace:
    """The same workspace, each command a process of its own (lock contention, kill -9)."""
    return ws.in_mode("process")


def start_apply(ws: Workspace, state: str, *tenants: str) -> Running:
    """``apply --auto-approve`` in a process of its own, returning at once."""
    return ws.spawn(
        "apply",
        "--auto-approve",
        "--config",
        str(ws.config),
        "--mail",
        ws.mail,
        "--state",
        state,
        *(a for tenant in tenants for a in ("--tenant", tenant)),
        options=False,
    )


class Interactive:
    """``apply`` (without ``--auto-approve``) in a process on a terminal: it holds its
    tenant's lock while it waits at the confirmation prompt."""

    def __init__(self, ws: Workspace, state: str, tenant: str):
        self.terminal = Terminal()
        path = self.terminal.path
        self.running = ws.spawn(
            "apply",
            "--config",
            str(ws.config),
            "--mail",
            ws.mail,
            "--state",
            state,
            "--tenant",
            tenant,
            options=False,
            stdin=path,
            stdout=path,
            stderr=path,
        )
        self.terminal.expect(PROMPT)

    @property
    def pid(self) -> int:
        return self.running.pid

    def answer(self, line: str) -> int:
        self.terminal.type(line + "\r")
        while self.running.alive():
            Terminal.read_any([self.terminal], 0.05)
        code = self.running.wait(60).code
        self.terminal.drain()
        return code

    @property
    def text(self) -> str:
        return self.terminal.text

    def close(self) -> None:
        if self.running.alive():
            self.running.kill()
            self.running.wait(10)
        self.terminal.close()


def delivered(ws: Workspace) -> list[str]:
    """Message-IDs in the test's Maildir."""
    if not ws.maildir.exists():
        return []
    return sorted(m["Message-ID"] for m in mailbox.Maildir(ws.maildir, create=False))


def serial(url: str, tenant: str) -> int | None:
    store = open_store(url)
    try:
        applied = store.load(tenant)
        return applied.serial if applied else None
    finally:
        store.close()


# --- two applies at once ----------------------------------------------------------------------


def test_applies_for_different_tenants_run_at_the_same_time(
    process_ws: Workspace, postgres_url: str
) -> None:
    ws = process_ws
    first = Interactive(ws, postgres_url, "alpha")  # holds alpha's lock...
    try:
        second = run(ws, ["apply", "--auto-approve"], postgres_url, "beta")
        assert second.code == 0, second.stderr  # ...and beta does not wait for it
        assert "Applied: beta (serial 1)" in second.stdout
        assert len(delivered(ws)) == EMAILS_PER_APPLY
        assert first.running.alive()
        assert first.answer("yes") == 0, first.text
    finally:
        first.close()
    assert "Applied: alpha (serial 1)" in first.text
    assert len(delivered(ws)) == 2 * EMAILS_PER_APPLY
    assert (serial(postgres_url, "alpha"), serial(postgres_url, "beta")) == (1, 1)


def test_simultaneous_auto_approved_applies_for_different_tenants(
    process_ws: Workspace, postgres_url: str
) -> None:
    ws = process_ws
    processes = [start_apply(ws, postgres_url, name) for name in ("alpha", "beta")]
    results = [p.wait(120) for p in processes]
    assert [r.code for r in results] == [0, 0], [str(r) for r in results]
    assert len(delivered(ws)) == 2 * EMAILS_PER_APPLY
    assert (serial(postgres_url, "alpha"), serial(postgres_url, "beta")) == (1, 1)


def test_applies_for_the_same_tenant_exclude_each_other(
    process_ws: Workspace, postgres_url: str
) -> None:
    ws = process_ws
    first = Interactive(ws, postgres_url, "alpha")
    try:
        second = run(ws, ["apply", "--auto-approve"], postgres_url, "alpha")
        assert second.code == 1
        (line,) = second.stderr.splitlines()
        assert line.startswith("error: alpha: state locked by ")
        assert f"(pid {first.pid}) since 20" in line
        assert delivered(ws) == []
        assert first.answer("yes") == 0, first.text
    finally:
        first.close()
    assert len(delivered(ws)) == EMAILS_PER_APPLY
    again = run(ws, ["apply", "--auto-approve"], postgres_url, "alpha")
    assert again.code == 0 and "nothing to change" in again.stdout
    assert len(delivered(ws)) == EMAILS_PER_APPLY


def test_a_killed_apply_does_not_block_the_next(process_ws: Workspace, postgres_url: str) -> None:
    ws = process_ws
    first = Interactive(ws, postgres_url, "alpha")
    try:
        first.running.kill()
        first.running.wait(10)
    finally:
        first.close()
    # The server ends the dead session (and its lock) as soon as it sees the socket close.
    after = run(ws, ["apply", "--auto-approve", "--lock-timeout", "10"], postgres_url, "alpha")
    assert after.code == 0, after.stderr
    assert len(delivered(ws)) == EMAILS_PER_APPLY


def test_the_lock_records_its_holder_and_leaves_no_trace(postgres_url: str) -> None:
    store = open_store(postgres_url)
    try:
        with psycopg.connect(postgres_url) as conn:
            with store.lock("alpha"):
                (row,) = conn.execute("SELECT tenant, holder FROM reconciler_locks").fetchall()
                assert row[0] == "alpha" and f"(pid {os.getpid()})" in row[1]
                held = conn.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                    " AND granted AND database = (SELECT oid FROM pg_database"
                    " WHERE datname = current_database())"
                ).fetchone()[0]
                assert held == 1
            assert conn.execute("SELECT count(*) FROM reconciler_locks").fetchone()[0] == 0
    finally:
        store.close()


def test_a_lost_lock_connection_refuses_the_write(postgres_url: str) -> None:
    store = open_store(postgres_url)
    try:
        with store.lock("alpha"):
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                conn.execute("SELECT pg_terminate_backend(backend_pid) FROM reconciler_locks")
            change = Commit({}, {}, [], {}, [], "l1")
            with pytest.raises(LockLost, match="lost the connection holding the state lock"):
                store.commit("alpha", (None, 0), change)
        assert store.load("alpha") is None
    finally:
        store.close()


def test_first_runs_at_once_create_the_tables_once(postgres_url: str) -> None:
    errors: list[BaseException] = []
    ids: list[str] = []

    def open_one() -> None:
        try:
            store = open_store(postgres_url)
            ids.append(store.store_id)
            store.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(ids)) == 1


# --- schema ----------------------------------------------------------------------------------


def test_a_fresh_database_gets_versioned_tables(
    postgres_server: PostgresServer, ws: Workspace
) -> None:
    url = postgres_server.url(postgres_server.new_database())
    done = run(ws, ["apply", "--auto-approve"], url)
    assert done.code == 0, done.stderr
    with psycopg.connect(url) as conn:
        tables = {
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        version = conn.execute(
            "SELECT value FROM reconciler_meta WHERE key = 'schema_version'"
        ).fetchone()[0]
    assert tables == {
        "reconciler_meta",
        "reconciler_tenants",
        "reconciler_users",
        "reconciler_outbox",
        "reconciler_history",
        "reconciler_locks",
    }
    assert version == str(SCHEMA_VERSION)
    with psycopg.connect(url) as conn:  # delivered: no body, so no PIN, is left
        assert (
            conn.execute(
                "SELECT count(*) FROM reconciler_outbox WHERE data IS NOT NULL"
            ).fetchone()[0]
            == 0
        )


def test_a_newer_schema_is_refused_on_one_line(ws: Workspace, postgres_url: str) -> None:
    open_store(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE reconciler_meta SET value = '9' WHERE key = 'schema_version'")
    done = run(ws, ["apply", "--auto-approve"], postgres_url)
    assert done.code == 1
    assert done.stderr.splitlines() == [
        f"error: state {postgres_url} has schema version 9, this reconciler understands "
        f"version {SCHEMA_VERSION}; it was written by a newer reconciler: upgrade this one to "
        "use it (the state was left untouched)"
    ]
    assert delivered(ws) == []


# --- connection failures -----------------------------------------------------------------------

SECRET = "Pa55-w0rd-never-printed"


def assert_one_line_failure(done: Result, *expected: str) -> str:
    assert done.code == 1
    assert SECRET not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    for text in expected:
        assert text in lines[0]
    return lines[0]


def test_an_unreachable_server_is_one_line(ws: Workspace) -> None:
    url = f"postgresql://reconciler:{SECRET}@127.0.0.1:{free_port()}/state"
    done = run(ws, ["apply", "--auto-approve"], url)
    line = assert_one_line_failure(
        done, "cannot connect to state postgresql://reconciler:***@", "Connection refused"
    )
    assert line.endswith("nothing was done")
    assert delivered(ws) == []


@pytest.fixture(scope="module")
def password_role(postgres_server: PostgresServer) -> tuple[str, str]:
    """A role that logs in with a password, owning a database of its own."""
    role = f"{postgres_server.database}_pw_{uuid.uuid4().hex[:6]}"
    with postgres_server.admin() as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{SECRET}'")
    return role, postgres_server.new_database(owner=role)


def test_bad_credentials_are_one_line(
    ws: Workspace, postgres_server: PostgresServer, password_role: tuple[str, str]
) -> None:
    role, database = password_role
    wrong = postgres_server.url(database, user=role, password=SECRET[::-1])
    done = run(ws, ["apply", "--auto-approve"], wrong)
    line = assert_one_line_failure(done, "password authentication failed", f"{role}:***@")
    assert SECRET[::-1] not in line
    # from the environment too, and with the password as a parameter
    env = {"RECONCILER_STATE": postgres_server.url(database, user=role) + f"?password={SECRET}x"}
    done = run(ws, ["apply", "--auto-approve"], None, env=env)
    line = assert_one_line_failure(done, "password authentication failed", "password=***")
    assert f"{SECRET}x" not in line
    assert delivered(ws) == []


def test_the_right_password_works_and_is_never_printed(
    ws: Workspace, postgres_server: PostgresServer, password_role: tuple[str, str]
) -> None:
    role, database = password_role
    url = postgres_server.url(database, user=role, password=SECRET)
    done = run(ws, ["apply", "--auto-approve"], url, "alpha")
    assert done.code == 0, done.stderr
    assert len(delivered(ws)) == EMAILS_PER_APPLY
    assert SECRET not in done.stdout + done.stderr
    shown = run(ws, ["history"], url)
    assert shown.code == 0 and SECRET not in shown.stdout + shown.stderr


def test_a_missing_database_is_one_line(ws: Workspace, postgres_server: PostgresServer) -> None:
    url = postgres_server.url("no_such_database", password=SECRET)
    done = run(ws, ["apply", "--auto-approve"], url)
    assert_one_line_failure(done, 'database "no_such_database" does not exist')
    assert delivered(ws) == []


def test_other_schemes_are_refused() -> None:
    with pytest.raises(UserError, match="unsupported state URL scheme mysql://"):
        open_store(f"mysql://root:{SECRET}@localhost/state")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:p%40ss@db.example:5432/state", "postgresql://u:***@db.example:5432/state"),
        ("postgres://u@db/state?sslmode=require", "postgres://u@db/state?sslmode=require"),
        (
            "postgresql://db/state?user=u&password=pw&sslmode=verify-full",
            "postgresql://db/state?user=u&password=***&sslmode=verify-full",
        ),
        ("postgresql://u:pw@h1:5432,h2:5433/state", "postgresql://u:***@h1:5432,h2:5433/state"),
    ],
)
def test_urls_are_printed_without_passwords(url: str, shown: str) -> None:
    assert redact(url) == shown


def reader_url(postgres_server: PostgresServer, database: str) -> str:
    """The URL of a new role that may only read ``database``'s tables (a PR pipeline's)."""
    reader = f"{postgres_server.database}_ro_{uuid.uuid4().hex[:6]}"
    with postgres_server.admin(database) as conn:
        conn.execute(f"CREATE ROLE {reader} LOGIN PASSWORD '{SECRET}'")
        conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader}")
    return postgres_server.url(database, user=reader, password=SECRET)


def test_a_read_only_role_can_plan_but_not_apply(
    ws: Workspace, postgres_server: PostgresServer
) -> None:
    """Pull-request pipelines may plan with a role that can only read the state."""
    database = postgres_server.new_database()
    owner_url = postgres_server.url(database)
    assert run(ws, ["apply", "--auto-approve"], owner_url, "alpha").code == 0
    url = reader_url(postgres_server, database)
    planned = run(ws, ["plan", "--detailed-exitcode"], url)
    assert planned.code == 2, planned.stderr  # beta is new, alpha is applied
    assert "beta" in planned.stdout and SECRET not in planned.stdout + planned.stderr
    refused = run(ws, ["apply", "--auto-approve"], url, "beta")
    assert_one_line_failure(refused, "permission denied")
    assert len(delivered(ws)) == EMAILS_PER_APPLY  # alpha's, nothing for beta


@pytest.mark.parametrize("old", [3, 4, 5])
def test_a_read_only_role_plans_on_an_older_state_until_an_owner_upgrades_it(
    ws: Workspace, postgres_server: PostgresServer, old: int
) -> None:
    """After upgrading the reconciler, a pull request's plan (a role that may only read) must
    not fail on the schema upgrade only an apply may make: it plans without the new columns,
    and reads the history without lineages."""
    database = postgres_server.new_database()
    owner_url = postgres_server.url(database)
    assert run(ws, ["apply", "--auto-approve"], owner_url, "alpha").code == 0
    downgrade_to_version(owner_url, old)
    url = reader_url(postgres_server, database)
    planned = run(ws, ["plan", "--detailed-exitcode"], url)
    assert planned.code == 2, planned.stderr
    assert "beta" in planned.stdout
    history = run(ws, ["history", "--format", "json"], url)
    (row,) = json.loads(history.stdout)
    assert (row["lineage"] is None) == (old < 5), history.stderr  # 5 recorded lineages

    def version() -> str:
        with psycopg.connect(owner_url) as conn:
            row = conn.execute(
                "SELECT value FROM reconciler_meta WHERE key = 'schema_version'"
            ).fetchone()
        assert row is not None
        return str(row[0])

    assert version() == str(old)
    assert run(ws, ["plan"], owner_url).code == 0
    assert version() == str(SCHEMA_VERSION)
