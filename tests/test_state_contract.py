"""The state contract, after Terraform's statemgr conformance tests: every backend (SQLite and a
real PostgreSQL) passes every test here, each part of `StateStore` (applied state, locks, outbox,
file index, archive) through the same calls."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.errors import UserError
from reconciler.messages import NewMessage
from reconciler.sending import suppressed_dir
from reconciler.state import (
    Commit,
    LockLost,
    MailQueued,
    StaleState,
    StateLocked,
    StateStore,
    open_store,
    sql_outbox,
)
from reconciler.state.sealing import OutboxKeys, binding, is_sealed, open_body
from reconciler.state.sqlite import SQLiteStore
from tests.helpers.cli import TEST_ENV
from tests.helpers.patience import patience
from tests.helpers.schema import downgrade_to_version, set_schema_version

ROOT = Path(__file__).resolve().parent.parent
TENANT = {"settings": {"pin_length": 6}, "bridge": {"numbers": [], "default_number": None}}
ALICE = {"upn": "alice@contoso.com", "license": True, "conference_id": "1234567"}
BOB = {"upn": "bob@contoso.com", "license": False, "conference_id": None}


@pytest.fixture
def store(state_location: str):
    opened = open_store(state_location)
    yield opened
    opened.close()


def message(
    n: int, user: str = "alice@contoso.com", type_: str = "enabled", suppressed: bool = False
) -> NewMessage:
    return NewMessage(
        user,
        type_,
        f"<m{n}.{type_}@contoso.reconciler>",
        "noreply@contoso.com",
        [user],
        f"Subject: {n}\r\n\r\nYour PIN is 90{n:04d}\r\n".encode(),
        suppressed,
    )


def commit(
    store: StateStore,
    name: str = "contoso",
    *,
    expected=(None, 0),
    users=None,
    deletes=(),
    messages=(),
    replace=False,
    kind="apply",
    lineage="lineage-1",
    tenant=None,
) -> tuple[str, int]:
    change = Commit(
        tenant=tenant or TENANT,
        upserts=users if users is not None else {},
        deletes=list(deletes),
        files={"tenant.yaml": "sha256:abc"},
        messages=messages,
        lineage=lineage,
        kind=kind,
        replace=replace,
    )
    return store.commit(name, expected, change)


def raw_bodies(location: str) -> dict[str, bytes | None]:
    """Every outbox body straight from the database, bypassing the store."""
    if "://" in location:
        import psycopg

        with psycopg.connect(location) as conn:
            rows = conn.execute("SELECT message_id, data FROM reconciler_outbox").fetchall()
    else:
        with sqlite3.connect(location) as conn:
            rows = conn.execute("SELECT message_id, data FROM outbox").fetchall()
    return {mid: (bytes(data) if data is not None else None) for mid, data in rows}


# --- applied state: lineage, serial, users -----------------------------------------------------


def test_empty_store(store: StateStore) -> None:
    assert store.tenants() == []
    assert store.load("contoso") is None
    assert list(store.queued("contoso")) == []
    assert store.history() == []
    assert list(store.messages("contoso")) == []
    assert store.export("contoso") is None


def test_first_commit_starts_the_lineage_at_serial_1(store: StateStore) -> None:
    assert commit(store, users={"alice@contoso.com": ALICE}) == ("lineage-1", 1)
    applied = store.load("contoso")
    assert applied is not None
    assert (applied.lineage, applied.serial) == ("lineage-1", 1)
    assert applied.tenant == TENANT
    assert applied.users == {"alice@contoso.com": ALICE}
    assert applied.files == {"tenant.yaml": "sha256:abc"}
    assert store.tenants() == ["contoso"]


def test_serial_grows_by_one_and_lineage_stays(store: StateStore) -> None:
    commit(store, users={"alice@contoso.com": ALICE})
    changed = {**ALICE, "conference_id": "7654321"}
    assert commit(
        store,
        expected=("lineage-1", 1),
        users={"alice@contoso.com": changed, "bob@contoso.com": BOB},
        lineage="ignored",
    ) == ("lineage-1", 2)
    assert commit(store, expected=("lineage-1", 2), deletes=["bob@contoso.com"]) == ("lineage-1", 3)
    applied = store.load("contoso")
    assert applied is not None
    assert applied.serial == 3
    assert applied.users == {"alice@contoso.com": changed}


def test_state_survives_reopening(state_location: str) -> None:
    first = open_store(state_location)
    commit(first, users={"alice@contoso.com": ALICE}, messages=[message(1)])
    first.close()
    again = open_store(state_location)
    try:
        applied = again.load("contoso")
        assert applied is not None and applied.users == {"alice@contoso.com": ALICE}
        assert [m.message_id for m in again.queued("contoso")] == [message(1).message_id]
        assert again.store_id == first.store_id
    finally:
        again.close()


def test_stale_commit_is_refused_and_writes_nothing(store: StateStore) -> None:
    commit(store, users={"alice@contoso.com": ALICE})
    for expected in [(None, 0), ("lineage-1", 0), ("lineage-1", 2), ("other", 1)]:
        with pytest.raises(StaleState, match="serial"):
            commit(store, expected=expected, users={"bob@contoso.com": BOB}, messages=[message(9)])
    applied = store.load("contoso")
    assert applied is not None and applied.serial == 1
    assert "bob@contoso.com" not in applied.users
    assert list(store.queued("contoso")) == []
    assert len(store.history("contoso")) == 1


def test_replace_starts_a_new_lineage_and_drops_old_users(store: StateStore) -> None:
    commit(store, users={"alice@contoso.com": ALICE, "bob@contoso.com": BOB})
    assert commit(
        store,
        expected=("whatever", 99),
        users={"bob@contoso.com": BOB},
        replace=True,
        kind="import",
        lineage="lineage-2",
    ) == ("lineage-2", 2)
    applied = store.load("contoso")
    assert applied is not None
    assert applied.lineage == "lineage-2"
    assert applied.users == {"bob@contoso.com": BOB}
    assert [h["kind"] for h in store.history("contoso")] == ["apply", "import"]


def test_tenants_are_independent(store: StateStore) -> None:
    commit(store, "fabrikam", users={"bob@contoso.com": BOB}, lineage="f")
    commit(store, "contoso", users={"alice@contoso.com": ALICE})
    assert store.tenants() == ["contoso", "fabrikam"]
    fabrikam = store.load("fabrikam")
    assert fabrikam is not None and fabrikam.users == {"bob@contoso.com": BOB}
    assert fabrikam.lineage == "f"


def test_json_values_round_trip_exactly(store: StateStore) -> None:
    tenant = {"z": 1, "a": [1, 2.5, None, True], "é": {"nested": "Chloé"}}
    user = {"upn": "chloe@contoso.com", "display_name": "Chloé Dubois", "x": {"b": 1, "a": 2}}
    commit(store, tenant=tenant, users={"chloe@contoso.com": user})
    applied = store.load("contoso")
    assert applied is not None
    assert applied.tenant == tenant and list(applied.tenant) == ["z", "a", "é"]
    assert list(applied.users["chloe@contoso.com"]["x"]) == ["b", "a"]


# --- the transactional outbox ------------------------------------------------------------------


def test_messages_are_queued_with_the_state_oldest_first(store: StateStore) -> None:
    commit(
        store,
        users={"alice@contoso.com": ALICE},
        messages=[message(2), message(1, "bob@contoso.com", "conference-info", suppressed=True)],
    )
    commit(store, expected=("lineage-1", 1), messages=[message(3, type_="pin-reset")])
    queued = list(store.queued("contoso"))
    assert [m.message_id for m in queued] == [
        message(2).message_id,
        message(1, type_="conference-info").message_id,
        message(3, type_="pin-reset").message_id,
    ]
    first = queued[0]
    assert (first.tenant, first.serial, first.user, first.type) == (
        "contoso",
        1,
        "alice@contoso.com",
        "enabled",
    )
    assert first.sender == "noreply@contoso.com"
    assert first.recipients == ["alice@contoso.com"]
    assert first.data == message(2).data and isinstance(first.data, bytes)
    assert first.suppressed is False and queued[1].suppressed is True
    assert queued[2].serial == 2
    assert list(store.queued("fabrikam")) == []


def test_a_failed_commit_writes_neither_state_nor_messages(store: StateStore) -> None:
    duplicate = [message(1), message(1)]  # the same Message-ID twice: the insert fails
    with pytest.raises((UserError, sqlite3.Error)):
        commit(store, users={"alice@contoso.com": ALICE}, messages=duplicate)
    assert store.load("contoso") is None
    assert list(store.queued("contoso")) == []
    assert store.history() == []
    # and the store is still usable
    assert commit(store, messages=[message(1)]) == ("lineage-1", 1)


def test_messages_are_composed_as_the_commit_inserts_them_a_batch_at_a_time(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first apply of 300,000 users must not hold 300,000 messages: the commit consumes them
    lazily, and a batch is released before the next is composed."""
    monkeypatch.setattr(sql_outbox, "MESSAGE_BATCH", 3)
    alive: set[int] = set()
    most = 0

    def composed():
        nonlocal most
        for n in range(1, 11):
            m = message(n)
            alive.add(n)
            weakref.finalize(m, alive.discard, n)
            most = max(most, len(alive))
            yield m

    commit(store, messages=composed())
    assert most <= 2 * 3  # the batch just inserted and the one being composed, no more
    assert [m.message_id for m in store.queued("contoso")] == [
        message(n).message_id for n in range(1, 11)
    ]
    assert store.history()[0]["emails"] == {"enabled": 10}


def test_a_failure_while_composing_a_later_batch_rolls_the_whole_commit_back(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sql_outbox, "MESSAGE_BATCH", 2)

    def composed():
        yield from (message(n) for n in range(1, 6))
        raise UserError("contoso: zoe@contoso.com: a display name is broken; nothing was sent")

    with pytest.raises(UserError, match=r"zoe@contoso\.com"):
        commit(store, users={"alice@contoso.com": ALICE}, messages=composed())
    assert store.load("contoso") is None
    assert list(store.queued("contoso")) == [] and store.queued_count("contoso") == 0
    assert store.history() == []


def test_queued_messages_stream_a_page_at_a_time_in_order_while_delivery_marks_them(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sql_outbox, "QUEUED_PAGE", 2)
    commit(
        store,
        messages=[message(n, suppressed=n % 3 == 0) for n in range(1, 8)],
    )
    assert store.queued_count("contoso") == 7
    assert store.queued_count("contoso", suppressed=True) == 2
    assert store.queued_count("contoso", suppressed=False) == 5
    seen = []
    for m in store.queued("contoso", suppressed=False):
        seen.append(m.message_id)
        if len(seen) % 2:  # delivered while the stream goes on; the rest stay queued
            store.mark_delivered(m.message_id)
    assert seen == [message(n).message_id for n in (1, 2, 4, 5, 7)]
    assert [m.message_id for m in store.queued("contoso")] == [
        message(n, suppressed=n % 3 == 0).message_id for n in (2, 3, 5, 6)
    ]
    assert [m.message_id for m in store.queued("contoso", suppressed=True)] == [
        message(n).message_id for n in (3, 6)
    ]


TEST_KEYS = OutboxKeys.from_env(TEST_ENV)


def test_mark_delivered_erases_the_body(store: StateStore, state_location: str) -> None:
    commit(store, messages=[message(1), message(2)])
    store.mark_delivered(message(1).message_id)
    assert [m.message_id for m in store.queued("contoso")] == [message(2).message_id]
    bodies = raw_bodies(state_location)
    assert bodies[message(1).message_id] is None
    kept, queued = bodies[message(2).message_id], message(2)
    assert kept is not None and is_sealed(kept) == ("://" in state_location)  # PostgreSQL's
    bound = binding(queued.message_id, queued.sender, queued.recipients)
    assert open_body(TEST_KEYS, queued.message_id, bound, kept) == queued.data
    rows = {m["message_id"]: m for m in store.messages("contoso")}
    assert rows[message(1).message_id]["status"] == "delivered"
    assert rows[message(1).message_id]["done_at"]
    assert rows[message(2).message_id]["status"] == "queued"
    assert rows[message(2).message_id]["done_at"] is None


def test_mark_failed_erases_the_body_and_keeps_the_reason(
    store: StateStore, state_location: str
) -> None:
    commit(store, messages=[message(1)])
    store.mark_failed(message(1).message_id, "550 5.1.1 no such mailbox")
    assert list(store.queued("contoso")) == []
    assert raw_bodies(state_location) == {message(1).message_id: None}
    (row,) = store.messages("contoso")
    assert row["status"] == "failed"
    assert row["error"] == "550 5.1.1 no such mailbox"


def test_messages_show_metadata_never_bodies(store: StateStore) -> None:
    commit(store, messages=[message(1, suppressed=True)])
    (row,) = store.messages("contoso")
    assert set(row) == {
        "serial",
        "user",
        "type",
        "message_id",
        "status",
        "suppressed",
        "error",
        "created_at",
        "done_at",
    }
    assert row["serial"] == 1 and row["user"] == "alice@contoso.com"
    assert row["type"] == "enabled" and row["suppressed"] is True
    assert row["status"] == "queued" and row["error"] is None
    assert row["created_at"].endswith("+00:00")


# --- history -----------------------------------------------------------------------------------


def test_history_records_every_commit(store: StateStore) -> None:
    commit(
        store,
        messages=[
            message(1),
            message(2, "bob@contoso.com"),
            message(3, type_="conference-info", suppressed=True),
        ],
    )
    commit(store, "fabrikam", lineage="f", kind="import")
    commit(store, expected=("lineage-1", 1))
    history = store.history()
    assert [(h["tenant"], h["serial"], h["kind"]) for h in history] == [
        ("contoso", 1, "apply"),
        ("fabrikam", 1, "import"),
        ("contoso", 2, "apply"),
    ]
    first = history[0]
    assert first["emails"] == {"enabled": 2, "conference-info": 1}
    assert first["suppressed"] == 1
    assert f"(pid {os.getpid()})" in first["actor"]
    assert first["applied_at"].endswith("+00:00")
    assert history[2]["emails"] == {}
    assert [h["serial"] for h in store.history("contoso")] == [1, 2]


# --- locks -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../x", "/abs/path", "a/b", "", "Contoso", "a\x1b[31m"])
def test_a_tenant_name_that_is_not_a_name_never_reaches_the_state(
    store: StateStore, state_location: str, tmp_path: Path, name: str
) -> None:
    """Behind every check where names enter: rows, lock files and suppressed-mail folders are
    only ever made for tenant names."""
    commit(store, messages=[message(1)])
    dump = store.export("contoso")
    assert dump is not None
    files = sorted(tmp_path.rglob("*"))
    renamed = dataclasses.replace(dump, name=name)
    refusals = [
        lambda: commit(store, name),
        lambda: store.lock(name).__enter__(),
        lambda: store.restore(renamed),
        lambda: suppressed_dir(state_location, name),
    ]
    for refused in refusals:
        with pytest.raises(UserError, match="must be 1-63 lowercase letters"):
            refused()
    assert store.tenants() == ["contoso"]
    assert store.export("contoso") == dump
    assert sorted(tmp_path.rglob("*")) == files


@pytest.fixture
def two_stores(state_location: str) -> Iterator[tuple[StateStore, StateStore]]:
    """The same state opened twice, as two processes would: each its own connection and locks."""
    first, second = open_store(state_location), open_store(state_location)
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def test_a_second_holder_gets_locked_by_since(two_stores: tuple[StateStore, StateStore]) -> None:
    first, second = two_stores
    with first.lock("contoso"):
        with pytest.raises(StateLocked) as caught, second.lock("contoso"):
            pass
        text = str(caught.value)
        assert text.startswith("state locked by ")
        assert f"(pid {os.getpid()}) since 20" in text
    with second.lock("contoso"):  # released
        pass


def test_locks_are_per_tenant(two_stores: tuple[StateStore, StateStore]) -> None:
    first, second = two_stores
    with first.lock("contoso"), second.lock("fabrikam"):
        commit(first, "contoso")
        commit(second, "fabrikam")


def test_lock_timeout_waits_then_gives_up_or_gets_it(
    two_stores: tuple[StateStore, StateStore],
) -> None:
    first, second = two_stores
    with first.lock("contoso"):
        started = time.monotonic()
        with pytest.raises(StateLocked, match="locked by"), second.lock("contoso", timeout=0.6):
            pass
        assert time.monotonic() - started >= 0.5
    release = threading.Event()

    def hold() -> None:
        with first.lock("contoso"):
            release.set()
            time.sleep(0.5)

    holder = threading.Thread(target=hold)
    holder.start()
    release.wait(patience(5))
    with second.lock("contoso", timeout=patience(10)):
        pass
    holder.join()


HOLD_LOCK = """
import sys, time
from reconciler.state import open_store
store = open_store(sys.argv[1])
with store.lock(sys.argv[2]):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_a_killed_holders_lock_does_not_block(state_location: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, state_location, "contoso"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    store = open_store(state_location)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "locked"
        pattern = rf"locked by .*\(pid {child.pid}\) since "
        with pytest.raises(StateLocked, match=pattern), store.lock("contoso"):
            pass
        os.kill(child.pid, signal.SIGKILL)
        child.wait(patience(10))
        with store.lock("contoso", timeout=patience(10)):  # the server may take a moment to notice
            commit(store)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        store.close()


def test_a_symlinked_state_path_shares_the_lock_of_the_real_file(tmp_path: Path) -> None:
    real = tmp_path / "state.db"
    store = SQLiteStore(real)
    (tmp_path / "alias.db").symlink_to(real)
    alias = SQLiteStore(tmp_path / "alias.db")
    with store.lock("acme"), pytest.raises(Exception, match="locked by"):
        alias.lock("acme").__enter__()
    store.close()
    alias.close()


# --- schema versions -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["9", "0"])
def test_another_schema_version_is_refused_clearly(state_location: str, version: str) -> None:
    open_store(state_location).close()
    set_schema_version(state_location, version)
    with pytest.raises(UserError) as caught:
        open_store(state_location)
    text = str(caught.value)
    understood = 6 if "://" in state_location else 5  # PostgreSQL's 6: its bodies are sealed
    assert f"schema version {version}, this reconciler understands version {understood}" in text
    assert ("newer reconciler" if version == "9" else "older reconciler") in text
    assert "\n" not in text


def test_a_version_1_store_is_upgraded_in_place_and_keeps_its_state(state_location: str) -> None:
    store = open_store(state_location)
    commit(store, users={"alice@contoso.com": {"upn": "alice@contoso.com", "license": True}})
    before = store.load("contoso")
    assert before is not None
    expected = (before.lineage, before.serial, dict(before.users))
    store.close()
    downgrade_to_version(state_location, 1)
    store = open_store(state_location)
    after = store.load("contoso")
    assert after is not None
    assert (after.lineage, after.serial, dict(after.users)) == expected
    # Its users' files are unknown: nothing may be reused (it would lose those users).
    assert store.file_users("contoso", ["contoso/users.yaml"], after.version) is None
    store.close()


def test_both_backends_refuse_a_body_kept_after_delivery_or_an_unknown_status(
    state_location: str, store: StateStore
) -> None:
    """The database itself, not only our code, keeps a PIN from outliving its delivery."""
    commit(store, messages=[message(1)])
    table = "reconciler_outbox" if "://" in state_location else "outbox"
    for update in ("status = 'delivered'", "status = 'sent', data = NULL"):
        with pytest.raises(Exception) as caught:
            store.db.execute(f"UPDATE {table} SET {update}")
        assert "constraint" in str(caught.value).lower()
    assert raw_bodies(state_location)[message(1).message_id] is not None  # still queued


VERSION_2_SQLITE = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE tenants (
    name TEXT PRIMARY KEY, lineage TEXT NOT NULL, serial INTEGER NOT NULL,
    config TEXT NOT NULL, files TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE users (
    tenant TEXT NOT NULL, upn TEXT NOT NULL, record TEXT NOT NULL, file TEXT,
    PRIMARY KEY (tenant, upn)) WITHOUT ROWID;
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, serial INTEGER NOT NULL, upn TEXT NOT NULL,
    type TEXT NOT NULL, message_id TEXT NOT NULL UNIQUE, sender TEXT NOT NULL,
    recipients TEXT NOT NULL, data BLOB, suppressed INTEGER NOT NULL,
    status TEXT NOT NULL, error TEXT, created_at TEXT NOT NULL, done_at TEXT);
CREATE INDEX outbox_queued ON outbox (tenant, status);
CREATE TABLE history (
    id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, serial INTEGER NOT NULL, kind TEXT NOT NULL,
    applied_at TEXT NOT NULL, actor TEXT NOT NULL, emails TEXT NOT NULL,
    suppressed INTEGER NOT NULL);
INSERT INTO meta VALUES ('schema_version', '2'), ('store_id', 'abc');
INSERT INTO tenants VALUES ('contoso', 'l', 4, '{}', '{}', '2026-01-01T00:00:00+00:00');
INSERT INTO users VALUES ('contoso', 'a@contoso.com', '{"upn": "a@contoso.com"}', 'c/u.yaml');
INSERT INTO outbox VALUES (1, 'contoso', 4, 'a@contoso.com', 'enabled', '<m1>', 'f@c.com',
    '["a@contoso.com"]', X'50494e', 0, 'queued', NULL, '2026-01-01T00:00:00+00:00', NULL);
INSERT INTO outbox VALUES (2, 'contoso', 3, 'a@contoso.com', 'pin-reset', '<m0>', 'f@c.com',
    '["a@contoso.com"]', NULL, 0, 'delivered', NULL, '2026-01-01T00:00:00+00:00',
    '2026-01-01T00:00:01+00:00');
INSERT INTO history VALUES (1, 'contoso', 4, 'apply', '2026-01-01T00:00:00+00:00', 'me',
    '{"enabled": 1}', 0);
"""


def test_a_version_2_sqlite_state_gets_the_constraints_and_keeps_everything(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(VERSION_2_SQLITE)
    store = open_store(str(path))
    try:
        dump = store.export("contoso")
        assert dump is not None and dump.applied.serial == 4 and dump.updated_at
        assert [(m["message_id"], m["status"], m["data"]) for m in dump.outbox] == [
            ("<m1>", "queued", b"PIN"),
            ("<m0>", "delivered", None),
        ]
        assert [h["emails"] for h in dump.history] == [{"enabled": 1}]
        assert store.file_users("contoso", ["c/u.yaml"], dump.applied.version) == {
            "c/u.yaml": {"a@contoso.com": {"upn": "a@contoso.com"}}
        }
        assert (
            store.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
            == "5"
        )
        with pytest.raises(sqlite3.IntegrityError):
            store.db.execute("UPDATE outbox SET status = 'delivered' WHERE message_id = '<m1>'")
    finally:
        store.close()


def test_users_are_recorded_with_the_file_that_defines_them(state_location: str) -> None:
    store = open_store(state_location)
    alice = {"upn": "alice@contoso.com", "license": True}
    bob = {"upn": "bob@contoso.com", "license": False}
    change = Commit(
        tenant=TENANT,
        upserts={"alice@contoso.com": alice, "bob@contoso.com": bob},
        deletes=[],
        files={},
        messages=[],
        lineage="l",
        sources={"alice@contoso.com": "c/a.yaml", "bob@contoso.com": "c/b.yaml"},
    )
    store.commit("contoso", (None, 0), change)
    assert store.file_users("contoso", ["c/a.yaml", "c/b.yaml"], ("l", 1)) == {
        "c/a.yaml": {"alice@contoso.com": alice},
        "c/b.yaml": {"bob@contoso.com": bob},
    }
    moved = Commit(
        tenant=TENANT,
        upserts={},
        deletes=[],
        files={},
        messages=[],
        lineage="l",
        sources={"bob@contoso.com": "c/a.yaml"},
    )  # bob moved, unchanged
    store.commit("contoso", ("l", 1), moved)
    assert store.file_users("contoso", ["c/a.yaml"], ("l", 2)) == {
        "c/a.yaml": {"alice@contoso.com": alice, "bob@contoso.com": bob}
    }
    assert store.file_users("contoso", ["c/a.yaml"], ("l", 1)) is None  # the state moved on
    store.close()


def commit_in_files(store: StateStore) -> None:
    """Four users over three files, two of them enabled (licensed, on Microsoft's bridge)."""
    users = {
        "a@contoso.com": {"license": True, "provider": "Microsoft", "conference_id": "1001"},
        "b@contoso.com": {"license": True, "provider": "ThirdParty", "conference_id": "1002"},
        "c@contoso.com": {"license": True, "provider": "Microsoft", "conference_id": None},
        "d@contoso.com": {"license": False, "provider": "Microsoft", "conference_id": "1004"},
    }
    store.commit(
        "contoso",
        (None, 0),
        Commit(
            tenant=TENANT,
            upserts={upn: {"upn": upn, **record} for upn, record in users.items()},  # type: ignore[misc]
            deletes=[],
            files={"c/x.yaml": "1", "c/y.yaml": "2", "c/z.yaml": "3"},
            messages=[],
            lineage="l",
            sources={
                "a@contoso.com": "c/x.yaml",
                "b@contoso.com": "c/x.yaml",
                "c@contoso.com": "c/y.yaml",
                "d@contoso.com": "c/z.yaml",
            },
        ),
    )


def assert_asked_by_index(store: StateStore) -> None:
    clashes = store.clashes
    at, moved_on, other_lineage = ("l", 1), ("l", 2), ("m", 1)
    assert clashes("contoso", at, ["c/x.yaml"], ["b@contoso.com"], []) is True
    assert clashes("contoso", at, ["c/x.yaml"], [], ["1002"]) is True
    assert clashes("contoso", at, ["c/y.yaml", "c/z.yaml"], ["b@contoso.com"], ["1002"]) is False
    assert clashes("contoso", at, ["c/z.yaml"], ["x@contoso.com"], ["1004"]) is True
    for elsewhere in (moved_on, other_lineage):
        assert clashes("contoso", elsewhere, ["c/x.yaml"], ["b@contoso.com"], []) is None
        assert store.users_except("contoso", elsewhere, ["c/x.yaml"]) is None
    rest = store.users_except("contoso", at, ["c/x.yaml", "c/y.yaml"])
    assert rest is not None
    assert (set(rest.users), rest.held, rest.enabled) == ({"d@contoso.com"}, 3, 2)


def test_a_state_answers_clashes_and_counts_by_index_without_reading_records(
    store: StateStore,
) -> None:
    commit_in_files(store)
    assert_asked_by_index(store)
    many = [f"u{n}@contoso.com" for n in range(1200)] + ["c@contoso.com"]  # several IN lists
    assert store.clashes("contoso", ("l", 1), ["c/y.yaml"], many, []) is True


def test_a_version_3_state_is_upgraded_with_its_keys_derived_from_the_records(
    state_location: str,
) -> None:
    store = open_store(state_location)
    commit_in_files(store)
    store.close()
    downgrade_to_version(state_location, 3)
    store = open_store(state_location)
    try:
        assert_asked_by_index(store)
    finally:
        store.close()


def test_a_version_4_state_keeps_its_history_and_names_lineages_from_then_on(
    state_location: str,
) -> None:
    store = open_store(state_location)
    commit(store)
    store.close()
    downgrade_to_version(state_location, 4)
    if "://" not in state_location:  # read-only: read as it is, the old rows name no lineage
        reader = open_store(state_location, create=False, read_only=True)
        try:
            assert [(h["lineage"], h["serial"]) for h in reader.history()] == [(None, 1)]
        finally:
            reader.close()
    store = open_store(state_location)
    try:
        lineage, serial = commit(store, expected=("lineage-1", 1))
        assert [(h["lineage"], h["serial"]) for h in store.history()] == [
            (None, 1),
            (lineage, serial),
        ]
    finally:
        store.close()


def test_a_version_3_sqlite_state_read_only_is_planned_without_its_keys(tmp_path: Path) -> None:
    location = str(tmp_path / "state.db")
    store = open_store(location)
    commit_in_files(store)
    store.close()
    downgrade_to_version(location, 3)
    store = open_store(location, create=False, read_only=True)
    try:
        assert store.clashes("contoso", ("l", 1), ["c/x.yaml"], ["b@contoso.com"], []) is None
        assert store.users_except("contoso", ("l", 1), ["c/x.yaml"]) is None
        applied = store.load("contoso")
        assert applied is not None and len(applied.users) == 4
    finally:
        store.close()
    with sqlite3.connect(location) as conn:  # untouched: read-only means read-only
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (
            "3",
        )


def test_a_database_busy_past_its_wait_is_one_line_naming_the_applies_running(
    sqlite_location: str,
) -> None:
    from reconciler.state.sqlite import SQLiteStore

    holder = open_store(sqlite_location)
    blocker = sqlite3.connect(sqlite_location, isolation_level=None)
    store = SQLiteStore(Path(sqlite_location), busy_timeout=0.2)
    try:
        with holder.lock("contoso"):
            blocker.execute("BEGIN IMMEDIATE")  # another process writing, for too long
            with pytest.raises(UserError) as caught:
                commit(store, "fabrikam")
            blocker.execute("ROLLBACK")
        message = str(caught.value)
        assert "\n" not in message
        assert f"state {sqlite_location} is busy: another process kept its write lock" in message
        assert re.search(r"applies running: contoso by .+ \(pid \d+\) since ", message), message
        assert commit(store, "fabrikam") == ("lineage-1", 1)  # free again: it goes through
    finally:
        store.close()
        blocker.close()
        holder.close()


# --- every part of the contract, each method called directly --------------------------------------


def test_a_lock_is_checked_as_held_only_while_it_is(store: StateStore) -> None:
    with store.lock("contoso"):
        store.check_lock("contoso")
    with pytest.raises(LockLost):
        store.check_lock("contoso")


def test_a_store_opened_as_a_deployment_opens_it_can_queue_and_deliver(
    store: StateStore,
) -> None:
    assert store.ready_to_queue() is None  # PostgreSQL: the outbox key is given
    assert store.ready_to_deliver("contoso") is None  # nothing queued
    commit(store, messages=[message(1)])
    assert store.ready_to_deliver("contoso") is None  # its oldest body opens


def test_waves_say_what_became_of_each_applys_messages(store: StateStore) -> None:
    assert store.waves("contoso") == []
    commit(store, messages=[message(1), message(2), message(3, suppressed=True)])
    store.mark_delivered(message(1).message_id)
    (wave,) = store.waves("contoso")
    assert (wave.serial, wave.queued, wave.delivered, wave.failed, wave.suppressed) == (
        1,
        1,
        1,
        0,
        1,
    )
    assert wave.last_delivered is not None and wave.written_at


def test_forgetting_refuses_while_mail_is_queued_and_keeps_the_history(
    store: StateStore,
) -> None:
    commit(store, users={"alice@contoso.com": ALICE}, messages=[message(1)])
    with pytest.raises(MailQueued):
        store.forget("contoso")
    forgotten = store.forget("contoso", drop_queued=True)
    assert forgotten is not None and store.tenants() == [] and store.load("contoso") is None
    assert [row["kind"] for row in store.history("contoso")] == ["apply", "forget"]
    assert store.forget("contoso") is None


def test_the_file_index_knows_the_last_applys_files(store: StateStore) -> None:
    assert store.applied_files("contoso") is None
    change = Commit(
        tenant=TENANT,
        upserts={"alice@contoso.com": ALICE},
        deletes=[],
        files={"contoso/users.yaml": "sha256:1"},
        messages=[],
        lineage="lineage-1",
        sources={"alice@contoso.com": "contoso/users.yaml"},
    )
    store.commit("contoso", (None, 0), change)
    version = ("lineage-1", 1)
    assert store.applied_files("contoso") == (version, {"contoso/users.yaml": "sha256:1"})
    assert store.files_known("contoso", version)
    assert not store.files_known("contoso", ("lineage-1", 2))
    assert not store.files_known("contoso", ("lineage-2", 1))  # forgotten, then applied again


def test_a_migrated_tenant_says_where_it_went(store: StateStore) -> None:
    commit(store)
    assert store.migrated_to("contoso") is None
    store.mark_migrated("contoso", "postgresql://db/reconciler")
    assert "postgresql://db/reconciler" in (store.migrated_to("contoso") or "")


def test_the_contract_suite_calls_every_method_of_the_state_store() -> None:
    source = Path(__file__).read_text(encoding="utf-8")
    methods = {
        name
        for name, member in vars(StateStore).items()
        if callable(member) and not name.startswith("_")
    }
    for part in StateStore.__mro__[1:]:
        methods |= {n for n, m in vars(part).items() if callable(m) and not n.startswith("_")}
    methods -= {"register"}
    assert {m for m in methods if f"store.{m}(" not in source} == set()
