"""PostgreSQL specifics, against a real server: concurrent applies through the real CLI, advisory
locks, schema versions, and connection failures reported on one line without credentials."""

from __future__ import annotations

import mailbox
import os
import pty
import select
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from reconciler.errors import UserError
from reconciler.state import Commit, LockLost, open_store, redact
from tests.fixtures.state import (
    PostgresServer,
    example_config,
    free_port,
    reconciler_args,
    reconciler_env,
)

PROMPT = "Only 'yes' is accepted"
EMAILS_PER_APPLY = 4  # the example tenant's first apply: four "enabled" emails


class Interactive:
    """A CLI subprocess on a pseudo-terminal: ``apply`` without ``--auto-approve`` holds its
    tenants' locks while it waits at the confirmation prompt."""

    def __init__(self, args: list[str], cwd: Path):
        master, slave = pty.openpty()
        self.process = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, cwd=cwd,
                                        env=reconciler_env(), close_fds=True)
        os.close(slave)
        self.master = master
        self.output = b""

    def expect(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text.encode() not in self.output:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self.master], [], [], max(0.0, remaining))
            chunk = self._read() if ready else b""
            if not chunk:
                raise AssertionError(f"no {text!r} from the CLI; it said: {self.text}")
            self.output += chunk

    def answer(self, line: str) -> int:
        os.write(self.master, line.encode() + b"\r")
        while chunk := self._read():
            self.output += chunk
        return self.process.wait(60)

    def _read(self) -> bytes:
        try:
            return os.read(self.master, 65536)
        except OSError:  # EIO: the child closed the terminal
            return b""

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    example_config(tmp_path, "alpha", "beta")
    return tmp_path


def run(workdir: Path, command: list[str], state: str | None, *tenants: str,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    args = reconciler_args(command, config=workdir / "tenants", state=state,
                           mail=workdir / "mail", tenants=tenants)
    return subprocess.run(args, capture_output=True, text=True, cwd=workdir, timeout=120,
                          env=env or reconciler_env())


def interactive_apply(workdir: Path, state: str, tenant: str) -> Interactive:
    args = reconciler_args(["apply"], config=workdir / "tenants", state=state,
                           mail=workdir / "mail", tenants=(tenant,))
    session = Interactive(args, workdir)
    session.expect(PROMPT)
    return session


def delivered(workdir: Path) -> list[str]:
    """Message-IDs in the test's Maildir."""
    if not (workdir / "mail").exists():
        return []
    return sorted(m["Message-ID"] for m in mailbox.Maildir(workdir / "mail", create=False))


def serial(url: str, tenant: str) -> int | None:
    store = open_store(url)
    try:
        applied = store.load(tenant)
        return applied.serial if applied else None
    finally:
        store.close()


# --- two applies at once ----------------------------------------------------------------------

def test_applies_for_different_tenants_run_at_the_same_time(workdir: Path,
                                                           postgres_url: str) -> None:
    first = interactive_apply(workdir, postgres_url, "alpha")  # holds alpha's lock...
    try:
        second = run(workdir, ["apply", "--auto-approve"], postgres_url, "beta")
        assert second.returncode == 0, second.stderr  # ...and beta does not wait for it
        assert "Applied: beta (serial 1)" in second.stdout
        assert len(delivered(workdir)) == EMAILS_PER_APPLY
        assert first.process.poll() is None
        assert first.answer("yes") == 0, first.text
    finally:
        first.close()
    assert "Applied: alpha (serial 1)" in first.text
    assert len(delivered(workdir)) == 2 * EMAILS_PER_APPLY
    assert (serial(postgres_url, "alpha"), serial(postgres_url, "beta")) == (1, 1)


def test_simultaneous_auto_approved_applies_for_different_tenants(workdir: Path,
                                                                 postgres_url: str) -> None:
    processes = [
        subprocess.Popen(reconciler_args(["apply", "--auto-approve"], config=workdir / "tenants",
                                         state=postgres_url, mail=workdir / "mail",
                                         tenants=(name,)),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         cwd=workdir, env=reconciler_env())
        for name in ("alpha", "beta")
    ]
    results = [(p.wait(120), *p.communicate()) for p in processes]
    assert [r[0] for r in results] == [0, 0], results
    assert len(delivered(workdir)) == 2 * EMAILS_PER_APPLY
    assert (serial(postgres_url, "alpha"), serial(postgres_url, "beta")) == (1, 1)


def test_applies_for_the_same_tenant_exclude_each_other(workdir: Path,
                                                        postgres_url: str) -> None:
    first = interactive_apply(workdir, postgres_url, "alpha")
    try:
        second = run(workdir, ["apply", "--auto-approve"], postgres_url, "alpha")
        assert second.returncode == 1
        (line,) = second.stderr.splitlines()
        assert line.startswith("error: alpha: state locked by ")
        assert f"(pid {first.process.pid}) since 20" in line
        assert delivered(workdir) == []
        assert first.answer("yes") == 0, first.text
    finally:
        first.close()
    assert len(delivered(workdir)) == EMAILS_PER_APPLY
    again = run(workdir, ["apply", "--auto-approve"], postgres_url, "alpha")
    assert again.returncode == 0 and "nothing to change" in again.stdout
    assert len(delivered(workdir)) == EMAILS_PER_APPLY


def test_a_killed_apply_does_not_block_the_next(workdir: Path, postgres_url: str) -> None:
    first = interactive_apply(workdir, postgres_url, "alpha")
    try:
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait(10)
    finally:
        first.close()
    # The server ends the dead session (and its lock) as soon as it sees the socket close.
    after = run(workdir, ["apply", "--auto-approve", "--lock-timeout", "10"], postgres_url,
                "alpha")
    assert after.returncode == 0, after.stderr
    assert len(delivered(workdir)) == EMAILS_PER_APPLY


def test_the_lock_records_its_holder_and_leaves_no_trace(postgres_url: str) -> None:
    store = open_store(postgres_url)
    try:
        with psycopg.connect(postgres_url) as conn:
            with store.lock("alpha"):
                (row,) = conn.execute("SELECT tenant, holder FROM reconciler_locks").fetchall()
                assert row[0] == "alpha" and f"(pid {os.getpid()})" in row[1]
                held = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                                    " AND granted AND database = (SELECT oid FROM pg_database"
                                    " WHERE datname = current_database())").fetchone()[0]
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

def test_a_fresh_database_gets_versioned_tables(postgres_server: PostgresServer,
                                                workdir: Path) -> None:
    url = postgres_server.url(postgres_server.new_database())
    done = run(workdir, ["apply", "--auto-approve"], url)
    assert done.returncode == 0, done.stderr
    with psycopg.connect(url) as conn:
        tables = {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        version = conn.execute(
            "SELECT value FROM reconciler_meta WHERE key = 'schema_version'").fetchone()[0]
    assert tables == {"reconciler_meta", "reconciler_tenants", "reconciler_users",
                      "reconciler_outbox", "reconciler_history", "reconciler_locks"}
    assert version == "3"
    with psycopg.connect(url) as conn:  # delivered: no body, so no PIN, is left
        assert conn.execute("SELECT count(*) FROM reconciler_outbox WHERE data IS NOT NULL"
                            ).fetchone()[0] == 0


def test_a_newer_schema_is_refused_on_one_line(workdir: Path, postgres_url: str) -> None:
    open_store(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE reconciler_meta SET value = '7' WHERE key = 'schema_version'")
    done = run(workdir, ["apply", "--auto-approve"], postgres_url)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"error: state {postgres_url} has schema version 7, this reconciler understands "
        "version 3; it was written by a newer reconciler: upgrade this one to use it (the "
        "state was left untouched)"]
    assert delivered(workdir) == []


# --- connection failures -----------------------------------------------------------------------

SECRET = "Pa55-w0rd-never-printed"


def assert_one_line_failure(done: subprocess.CompletedProcess[str], *expected: str) -> str:
    assert done.returncode == 1
    assert SECRET not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    for text in expected:
        assert text in lines[0]
    return lines[0]


def test_an_unreachable_server_is_one_line(workdir: Path) -> None:
    url = f"postgresql://reconciler:{SECRET}@127.0.0.1:{free_port()}/state"
    done = run(workdir, ["apply", "--auto-approve"], url)
    line = assert_one_line_failure(done, "cannot connect to state postgresql://reconciler:***@",
                                   "Connection refused")
    assert line.endswith("nothing was done")
    assert delivered(workdir) == []


@pytest.fixture(scope="module")
def password_role(postgres_server: PostgresServer) -> tuple[str, str]:
    """A role that logs in with a password, owning a database of its own."""
    role = f"{postgres_server.database}_pw_{uuid.uuid4().hex[:6]}"
    with postgres_server.admin() as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{SECRET}'")
    return role, postgres_server.new_database(owner=role)


def test_bad_credentials_are_one_line(workdir: Path, postgres_server: PostgresServer,
                                      password_role: tuple[str, str]) -> None:
    role, database = password_role
    wrong = postgres_server.url(database, user=role, password=SECRET[::-1])
    done = run(workdir, ["apply", "--auto-approve"], wrong)
    line = assert_one_line_failure(done, "password authentication failed", f"{role}:***@")
    assert SECRET[::-1] not in line
    # from the environment too, and with the password as a parameter
    env = reconciler_env(RECONCILER_STATE=postgres_server.url(database, user=role) +
                         f"?password={SECRET}x")
    done = run(workdir, ["apply", "--auto-approve"], None, env=env)
    line = assert_one_line_failure(done, "password authentication failed", "password=***")
    assert f"{SECRET}x" not in line
    assert delivered(workdir) == []


def test_the_right_password_works_and_is_never_printed(workdir: Path,
                                                       postgres_server: PostgresServer,
                                                       password_role: tuple[str, str]) -> None:
    role, database = password_role
    url = postgres_server.url(database, user=role, password=SECRET)
    done = run(workdir, ["apply", "--auto-approve"], url, "alpha")
    assert done.returncode == 0, done.stderr
    assert len(delivered(workdir)) == EMAILS_PER_APPLY
    assert SECRET not in done.stdout + done.stderr
    shown = run(workdir, ["history"], url)
    assert shown.returncode == 0 and SECRET not in shown.stdout + shown.stderr


def test_a_missing_database_is_one_line(workdir: Path, postgres_server: PostgresServer) -> None:
    url = postgres_server.url("no_such_database", password=SECRET)
    done = run(workdir, ["apply", "--auto-approve"], url)
    assert_one_line_failure(done, 'database "no_such_database" does not exist')
    assert delivered(workdir) == []


def test_other_schemes_are_refused() -> None:
    with pytest.raises(UserError, match="unsupported state URL scheme mysql://"):
        open_store(f"mysql://root:{SECRET}@localhost/state")


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://u:p%40ss@db.example:5432/state", "postgresql://u:***@db.example:5432/state"),
    ("postgres://u@db/state?sslmode=require", "postgres://u@db/state?sslmode=require"),
    ("postgresql://db/state?user=u&password=pw&sslmode=verify-full",
     "postgresql://db/state?user=u&password=***&sslmode=verify-full"),
    ("postgresql://u:pw@h1:5432,h2:5433/state", "postgresql://u:***@h1:5432,h2:5433/state"),
])
def test_urls_are_printed_without_passwords(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_a_read_only_role_can_plan_but_not_apply(workdir: Path, postgres_server: PostgresServer
                                                 ) -> None:
    """Pull-request pipelines may plan with a role that can only read the state."""
    database = postgres_server.new_database()
    owner_url = postgres_server.url(database)
    assert run(workdir, ["apply", "--auto-approve"], owner_url, "alpha").returncode == 0
    reader = f"{postgres_server.database}_ro_{uuid.uuid4().hex[:6]}"
    with postgres_server.admin(database) as conn:
        conn.execute(f"CREATE ROLE {reader} LOGIN PASSWORD '{SECRET}'")
        conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader}")
    url = postgres_server.url(database, user=reader, password=SECRET)
    planned = run(workdir, ["plan", "--detailed-exitcode"], url)
    assert planned.returncode == 2, planned.stderr  # beta is new, alpha is applied
    assert "beta" in planned.stdout and SECRET not in planned.stdout + planned.stderr
    refused = run(workdir, ["apply", "--auto-approve"], url, "beta")
    assert_one_line_failure(refused, "permission denied")
    assert len(delivered(workdir)) == EMAILS_PER_APPLY  # alpha's, nothing for beta
