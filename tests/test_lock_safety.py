"""The tenant lock is a precondition of every message sent: an apply that loses it stops at
once, and a second apply that takes the lock over sends each message at most once more (only
the one that was in flight when the lock went)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from tests.fixtures.smtp import SMTPTestServer
from tests.fixtures.state import PostgresServer
from tests.helpers.mail import copies_by_message_id
from tests.helpers.patience import patience
from tests.helpers.tenants import enabled_users, tenant_doc, write_tenant
from tests.helpers.workspace import NewWorkspace, with_acme

USERS = 30
FROM = ["--default-from", "noreply@acme.com", "--allow-new-state", "--retry-backoff", "0.01"]


@pytest.fixture
def slow_smtp(new_smtp_server: Callable[..., SMTPTestServer]) -> SMTPTestServer:
    return new_smtp_server(delay=0.06)


def test_a_terminated_lock_connection_stops_delivery_and_nothing_is_sent_twice(
    new_workspace: NewWorkspace, postgres_url: str, slow_smtp: SMTPTestServer
) -> None:
    ws = with_acme(new_workspace(postgres_url, mail=slow_smtp.url, mode="process"), USERS)
    first = ws.spawn("apply", "--auto-approve", *FROM)
    slow_smtp.wait_for(5)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(backend_pid) FROM reconciler_locks")
    second = ws.run("apply", "--auto-approve", *FROM, "--lock-timeout", "30", timeout=60)
    lost = first.wait(60)

    assert lost.code == 1, str(lost)
    assert "lock lost" in lost.stderr and "Traceback" not in lost.output, str(lost)
    assert second.code == 0, str(second)
    ids = copies_by_message_id(slow_smtp.mails)
    assert len(ids) == USERS  # everyone got their email
    assert sum(n - 1 for n in ids.values()) <= 1, ids.most_common(3)  # at most the one in flight
    assert ws.run("apply", "--auto-approve", *FROM).code == 0
    assert len(slow_smtp.mails) == sum(ids.values())  # nothing left queued


def test_a_server_idle_session_timeout_never_ends_the_lock_or_the_delivery(
    new_workspace: NewWorkspace,
    postgres_server: PostgresServer,
    new_smtp_server: Callable[..., SMTPTestServer],
) -> None:
    database = postgres_server.new_database()
    with postgres_server.admin() as conn:
        conn.execute(f"ALTER DATABASE {database} SET idle_session_timeout = '300ms'")
    smtp = new_smtp_server(delay=0.5)  # each message leaves both connections idle 0.5 s
    ws = new_workspace(postgres_server.url(database), mail=smtp.url)
    write_tenant(ws.config, "acme", tenant_doc(), enabled_users(6, domain="acme.com"))
    result = ws.run("apply", "--auto-approve", *FROM, timeout=60)
    assert result.code == 0, str(result)
    ids = copies_by_message_id(smtp.mails)
    assert len(ids) == 6 and set(ids.values()) == {1}


def test_a_replaced_sqlite_lock_file_stops_delivery(
    tmp_path: Path, new_workspace: NewWorkspace, slow_smtp: SMTPTestServer
) -> None:
    state = tmp_path / "state" / "state.db"
    ws = with_acme(new_workspace(mail=slow_smtp.url, mode="process"), USERS)
    first = ws.spawn("apply", "--auto-approve", *FROM)
    slow_smtp.wait_for(3)
    lock = state.with_name("state.db.acme.lock")
    os.unlink(lock)  # an operator "cleaning up a stale lock"
    second = ws.run("apply", "--auto-approve", *FROM, "--lock-timeout", "30", timeout=60)
    lost = first.wait(60)

    assert lost.code == 1 and "lock lost" in lost.stderr, str(lost)
    assert "removed or replaced" in lost.stderr
    assert second.code == 0, str(second)
    ids = copies_by_message_id(slow_smtp.mails)
    assert len(ids) == USERS and sum(n - 1 for n in ids.values()) <= 1, ids.most_common(3)


LOCK_REFUSALS: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "symlink": (
        lambda victim, lock: lock.symlink_to(victim),
        "cannot open lock file {lock}: it is a symbolic link; remove it (files beside the "
        "state are never followed)",
    ),
    "hard-link": (
        lambda victim, lock: os.link(victim, lock),
        "cannot use lock file {lock}: it has 2 names (a hard link: writing it would change "
        "another file); remove it (it holds no state)",
    ),
    "fifo": (
        lambda victim, lock: os.mkfifo(lock),
        "cannot use lock file {lock}: it is not a regular file; remove it (it holds no state)",
    ),
}


@pytest.mark.parametrize("kind", LOCK_REFUSALS)
def test_a_lock_file_that_is_not_its_own_regular_file_is_refused_never_written(
    tmp_path: Path, new_workspace: NewWorkspace, kind: str
) -> None:
    make, refusal = LOCK_REFUSALS[kind]
    state = tmp_path / "state" / "state.db"
    ws = new_workspace()
    write_tenant(ws.config, "acme", tenant_doc(), enabled_users(2, domain="acme.com"))
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    os.utime(victim, ns=(1_000_000_000, 1_000_000_000))
    lock = state.with_name("state.db.acme.lock")
    make(victim, lock)
    started = time.monotonic()
    result = ws.apply(expect=1)
    assert time.monotonic() - started < patience(20)
    assert "Traceback" not in result.output
    assert result.stderr.splitlines() == [f"error: {refusal.format(lock=lock)}"]
    assert victim.read_text() == "precious\n" and victim.stat().st_mtime_ns == 1_000_000_000
    assert not ws.maildir.exists()
