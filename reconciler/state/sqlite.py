"""The embedded state backend: one SQLite file (mode 0600) plus per-tenant lock files beside it.

Locks are ``flock`` locks, which the kernel releases when the holding process dies, so a killed
apply never blocks the next run; the lock file only says who holds it and since when. A lock file
is opened, never followed (``O_NOFOLLOW``: a symbolic link there is refused, not truncated), and
the lock counts as held only while the file at that path is still the one locked: deleted or
replaced, a second apply could lock the new file, so this one stops sending (:class:`LockLost`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import sqlite3
import time
import urllib.parse
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from reconciler.errors import UserError
from reconciler.model import Applied, UserRecord
from reconciler.state.base import (
    OUTBOX_FULL,
    OUTBOX_SUMMARY,
    SCHEMA_VERSION,
    Commit,
    Forgotten,
    LockLost,
    MailQueued,
    QueuedMessage,
    StaleState,
    StateLocked,
    StateStore,
    StoredUsers,
    TenantDump,
    decode_records,
    email_counts,
    encode_record,
    holder,
    now,
    outbox_dict,
    schema_mismatch,
    tenant_key,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tenants (
    name TEXT PRIMARY KEY, lineage TEXT NOT NULL, serial INTEGER NOT NULL,
    config TEXT NOT NULL, files TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    tenant TEXT NOT NULL, upn TEXT NOT NULL, record TEXT NOT NULL, file TEXT,
    PRIMARY KEY (tenant, upn)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, serial INTEGER NOT NULL, upn TEXT NOT NULL,
    type TEXT NOT NULL, message_id TEXT NOT NULL UNIQUE, sender TEXT NOT NULL,
    recipients TEXT NOT NULL, data BLOB, suppressed INTEGER NOT NULL,
    status TEXT NOT NULL, error TEXT, created_at TEXT NOT NULL, done_at TEXT);
CREATE INDEX IF NOT EXISTS outbox_queued ON outbox (tenant, status);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, serial INTEGER NOT NULL, kind TEXT NOT NULL,
    applied_at TEXT NOT NULL, actor TEXT NOT NULL, emails TEXT NOT NULL,
    suppressed INTEGER NOT NULL);
"""


def _reason(exc: BaseException) -> str:
    """The real cause, on one line: a full disk, a read-only file system, a symbolic link."""
    if isinstance(exc, OSError) and exc.errno == errno.ELOOP:
        return "it is a symbolic link; remove it (files beside the state are never followed)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return " ".join(str(exc).split()) or type(exc).__name__


_CONVERT = {"recipients": json.loads, "suppressed": bool}
"""SQLite keeps JSON as text and booleans as integers."""

_UPGRADES = {"1": "ALTER TABLE users ADD COLUMN file TEXT"}
"""From an older schema version to the current one."""


class SQLiteStore(StateStore):
    """``read_only`` (plan, preview, state show): the file is opened read-only, never created,
    chmod-ed, migrated or written."""

    def __init__(self, path: Path, read_only: bool = False):
        self.path = path
        self.description = str(path)
        self.read_only = read_only
        self._locks: dict[str, int] = {}
        self._files_known = True
        try:
            if read_only:
                uri = f"file:{urllib.parse.quote(str(path.absolute()))}?mode=ro"
                self.db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30.0)
            else:
                if not path.exists():
                    os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, 0o600))
                os.chmod(path, 0o600)
                self.db = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        except (OSError, sqlite3.Error) as exc:
            raise UserError(f"cannot open state {path}: {_reason(exc)}") from None
        try:
            if read_only:
                self._check_version()
            else:
                self.db.execute("PRAGMA journal_mode=DELETE")
                self.db.execute("PRAGMA synchronous=FULL")
                # Erased message bodies (PINs) must not survive in free pages of the file.
                self.db.execute("PRAGMA secure_delete=ON")
                self._migrate()
        except sqlite3.DatabaseError as exc:
            self.db.close()
            raise UserError(f"cannot use state {path}: {_reason(exc)}") from None
        except BaseException:
            self.db.close()
            raise

    def _version(self) -> str | None:
        """The file's schema version; refuses a database that is not a reconciler state."""
        has_meta = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        row = has_meta and self.db.execute(
            "SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row:
            return str(row[0])
        if self.db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone():
            raise UserError(f"{self.description} is an SQLite database but not a reconciler "
                            "state (no schema version): refusing to use it; check --state")
        return None

    def _check_version(self) -> None:
        version = self._version()
        if version is None:  # an empty file: nothing applied yet
            self.db.executescript(_SCHEMA.replace("CREATE TABLE", "CREATE TEMP TABLE").replace(
                "CREATE INDEX IF NOT EXISTS outbox_queued ON outbox", "SELECT 1"))
        elif version in _UPGRADES:
            self._files_known = False  # the upgrade that records them waits for an apply
        elif version != str(SCHEMA_VERSION):
            raise UserError(schema_mismatch(self.description, version, SCHEMA_VERSION))
        self.store_id = "" if version is None else self.db.execute(
            "SELECT value FROM meta WHERE key='store_id'").fetchone()[0]

    def _migrate(self) -> None:
        """Create the tables in a new file; refuse a file made by an older or newer version."""
        with self._transaction():
            version = self._version()
            row = (version,) if version is not None else None
            if row and row[0] in _UPGRADES:
                self.db.execute(_UPGRADES[row[0]])
                self.db.execute("UPDATE meta SET value=? WHERE key='schema_version'",
                                (str(SCHEMA_VERSION),))
                row = (str(SCHEMA_VERSION),)
            if row and row[0] != str(SCHEMA_VERSION):
                raise UserError(schema_mismatch(self.description, row[0], SCHEMA_VERSION))
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self.db.execute(statement)
            if not row:
                self.db.execute("INSERT INTO meta VALUES ('schema_version', ?)",
                                (str(SCHEMA_VERSION),))
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('store_id', ?)",
                            (uuid.uuid4().hex,))
            self.store_id = self.db.execute(
                "SELECT value FROM meta WHERE key='store_id'").fetchone()[0]

    @contextmanager
    def _transaction(self, mode: str = "IMMEDIATE") -> Iterator[None]:
        """One transaction; a storage fault (disk full, read-only, I/O error) is a one-line
        UserError with its real cause, and the transaction is rolled back: state and outbox
        stay as they were."""
        try:
            self.db.execute(f"BEGIN {mode}")
            try:
                yield
            except BaseException:
                if self.db.in_transaction:  # SQLite may have rolled back already (disk full)
                    self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self.db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self.db.execute("ROLLBACK")
            raise UserError(f"state {self.description}: {_reason(exc)}") from None

    def tenants(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT name FROM tenants ORDER BY name")]

    def load(self, tenant: str) -> Applied | None:
        row = self.db.execute(
            "SELECT lineage, serial, config, files FROM tenants WHERE name=?", (tenant,)
        ).fetchone()
        if row is None:
            return None
        users = StoredUsers.from_rows(
            self.db.execute("SELECT upn, record FROM users WHERE tenant=?", (tenant,)),
            lambda upn: self.db.execute("SELECT record FROM users WHERE tenant=? AND upn=?",
                                        (tenant, upn)).fetchone()[0])
        return Applied(row[0], row[1], json.loads(row[2]), users, json.loads(row[3]))

    @contextmanager
    def lock(self, tenant: str, timeout: float = 0.0) -> Iterator[None]:
        lock_path = self._lock_path(tenant)
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise UserError(f"cannot open lock file {lock_path}: {_reason(exc)}") from None
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        who = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
                        raise StateLocked(f"state locked by {who or 'another process'}") from None
                    time.sleep(0.1)
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{holder()} since {now()}\n".encode(), 0)
            except OSError as exc:
                raise UserError(f"cannot write lock file {lock_path}: {_reason(exc)}") from None
            self._locks[tenant] = fd
            try:
                yield
            finally:
                del self._locks[tenant]
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _lock_path(self, tenant: str) -> Path:
        real = self.path.resolve()  # one lock file however the database is named
        return real.with_name(f"{real.name}.{tenant_key(tenant)}.lock")

    def check_lock(self, tenant: str) -> None:
        fd = self._locks.get(tenant)
        if fd is None:
            raise LockLost(f"{tenant}: this process does not hold the state lock")
        try:
            current = os.stat(self._lock_path(tenant), follow_symlinks=False)
        except OSError:
            current = None
        held = os.fstat(fd)
        if current is None or (current.st_dev, current.st_ino) != (held.st_dev, held.st_ino):
            raise LockLost(f"{tenant}: the lock file {self._lock_path(tenant)} was removed or "
                           "replaced while this apply held it")

    def commit(self, name: str, expected: tuple[str | None, int], change: Commit
               ) -> tuple[str, int]:
        tenant_key(name)
        if name in self._locks:
            self.check_lock(name)
        with self._transaction():
            row = self.db.execute("SELECT lineage, serial FROM tenants WHERE name=?",
                                  (name,)).fetchone()
            current = (row[0], row[1]) if row else (None, 0)
            if not change.replace and current != expected:
                raise StaleState(f"state of {name} moved to serial {current[1]} since the plan "
                                 f"(serial {expected[1]})")
            lineage = change.lineage if change.replace or row is None else current[0]
            serial = current[1] + 1
            if change.replace:
                self.db.execute("DELETE FROM users WHERE tenant=?", (name,))
            self.db.execute(
                "INSERT INTO tenants VALUES (?,?,?,?,?,?) ON CONFLICT(name) DO UPDATE SET "
                "lineage=excluded.lineage, serial=excluded.serial, config=excluded.config, "
                "files=excluded.files, updated_at=excluded.updated_at",
                (name, lineage, serial, json.dumps(change.tenant), json.dumps(change.files), now()),
            )
            self.db.executemany(
                "INSERT OR REPLACE INTO users VALUES (?,?,?,?)",
                ((name, upn, encode_record(record), change.sources.get(upn))
                 for upn, record in change.upserts.items()),
            )
            self.db.executemany(
                "UPDATE users SET file=? WHERE tenant=? AND upn=? AND file IS NOT ?",
                ((file, name, upn, file) for upn, file in change.sources.items()
                 if upn not in change.upserts))
            self.db.executemany("DELETE FROM users WHERE tenant=? AND upn=?",
                                ((name, upn) for upn in change.deletes))
            stamp = now()
            self.db.executemany(
                "INSERT INTO outbox (tenant, serial, upn, type, message_id, sender, recipients,"
                " data, suppressed, status, created_at) VALUES (?,?,?,?,?,?,?,?,?,'queued',?)",
                ((name, serial, m.user, m.type, m.message_id, m.sender,
                  json.dumps(m.recipients), m.data, int(m.suppressed), stamp)
                 for m in change.messages),
            )
            self.db.execute(
                "INSERT INTO history (tenant, serial, kind, applied_at, actor, emails, suppressed)"
                " VALUES (?,?,?,?,?,?,?)",
                (name, serial, change.kind, stamp, holder(),
                 json.dumps(email_counts(change.messages)),
                 sum(m.suppressed for m in change.messages)),
            )
        return lineage, serial

    def applied_files(self, tenant: str) -> tuple[int, dict[str, str]] | None:
        row = self.db.execute("SELECT serial, files FROM tenants WHERE name=?",
                              (tenant,)).fetchone()
        return None if row is None else (row[0], json.loads(row[1]))

    def file_users(self, tenant: str, files: Collection[str], serial: int
                   ) -> dict[str, dict[str, UserRecord]] | None:
        if not self._files_known:
            return None
        found: dict[str, dict[str, UserRecord]] = {file: {} for file in files}
        with self._transaction("DEFERRED"):  # a read snapshot: the serial and users agree
            row = self.db.execute("SELECT serial FROM tenants WHERE name=?", (tenant,)).fetchone()
            if row is None or row[0] != serial or self.db.execute(
                    "SELECT 1 FROM users WHERE tenant=? AND file IS NULL LIMIT 1",
                    (tenant,)).fetchone():
                return None  # moved on, or some user's file unknown (upgraded or migrated)
            for file in files:  # one file's texts at a time: 100k of them would weigh 30 MB
                found[file] = decode_records(self.db.execute(
                    "SELECT upn, record FROM users WHERE tenant=? AND file=?",
                    (tenant, file)).fetchall())
        return found

    def queued(self, tenant: str) -> list[QueuedMessage]:
        rows = self.db.execute(
            "SELECT upn, type, message_id, sender, recipients, data, suppressed, id, tenant,"
            " serial FROM outbox WHERE tenant=? AND status='queued' ORDER BY id", (tenant,))
        return [QueuedMessage(*r[:4], json.loads(r[4]), r[5], bool(r[6]), *r[7:]) for r in rows]

    def mark_delivered(self, message_id: str) -> None:
        self._finish(message_id, "delivered", None)

    def mark_failed(self, message_id: str, reason: str) -> None:
        self._finish(message_id, "failed", reason)

    def _finish(self, message_id: str, status: str, error: str | None) -> None:
        with self._transaction():
            self.db.execute(
                "UPDATE outbox SET status=?, error=?, data=NULL, done_at=? WHERE message_id=?",
                (status, error, now(), message_id))

    def history(self, tenant: str | None = None) -> list[dict[str, Any]]:
        query = ("SELECT tenant, serial, kind, applied_at, actor, emails, suppressed FROM history"
                 + (" WHERE tenant=?" if tenant else "") + " ORDER BY id")
        return [
            {"tenant": r[0], "serial": r[1], "kind": r[2], "applied_at": r[3], "actor": r[4],
             "emails": json.loads(r[5]), "suppressed": r[6]}
            for r in self.db.execute(query, (tenant,) if tenant else ())
        ]

    def messages(self, tenant: str) -> Iterator[dict[str, Any]]:
        for r in self.db.execute(f"SELECT {', '.join(OUTBOX_SUMMARY)} FROM outbox"
                                 " WHERE tenant=? ORDER BY id", (tenant,)):
            yield outbox_dict(OUTBOX_SUMMARY, r, _CONVERT)

    def export(self, tenant: str) -> TenantDump | None:
        with self._transaction():  # one snapshot
            applied = self.load(tenant)
            if applied is None:
                return None
            applied.users = dict(applied.users)  # a dump outlives the store
            updated_at = self.db.execute("SELECT updated_at FROM tenants WHERE name=?",
                                         (tenant,)).fetchone()[0]
            outbox = [outbox_dict(OUTBOX_FULL, r, _CONVERT) for r in self.db.execute(
                f"SELECT {', '.join(OUTBOX_FULL)} FROM outbox WHERE tenant=? ORDER BY id",
                (tenant,))]
            return TenantDump(tenant, applied, updated_at, outbox, self.history(tenant))

    def forget(self, tenant: str, drop_queued: bool = False) -> Forgotten | None:
        with self._transaction():
            row = self.db.execute("SELECT serial FROM tenants WHERE name=?", (tenant,)).fetchone()
            if row is None:
                return None
            queued = self.db.execute("SELECT count(*) FROM outbox WHERE tenant=? AND "
                                     "status='queued'", (tenant,)).fetchone()[0]
            if queued and not drop_queued:
                raise MailQueued(queued)
            users = self.db.execute("DELETE FROM users WHERE tenant=?", (tenant,)).rowcount
            self.db.execute("DELETE FROM outbox WHERE tenant=?", (tenant,))
            self.db.execute("DELETE FROM tenants WHERE name=?", (tenant,))
            self.db.execute(
                "INSERT INTO history (tenant, serial, kind, applied_at, actor, emails, suppressed)"
                " VALUES (?,?,'forget',?,?,'{}',0)", (tenant, row[0], now(), holder()))
        return Forgotten(row[0], users, queued)

    def restore(self, dump: TenantDump) -> None:
        name, applied = tenant_key(dump.name), dump.applied
        with self._transaction():
            for table, column in (("users", "tenant"), ("outbox", "tenant"),
                                  ("history", "tenant"), ("tenants", "name")):
                self.db.execute(f"DELETE FROM {table} WHERE {column}=?", (name,))
            self.db.execute(
                "INSERT INTO tenants VALUES (?,?,?,?,?,?)",
                (name, applied.lineage, applied.serial, json.dumps(applied.tenant),
                 json.dumps(applied.files), dump.updated_at))
            self.db.executemany(
                "INSERT INTO users (tenant, upn, record) VALUES (?,?,?)",
                ((name, upn, encode_record(record)) for upn, record in applied.users.items()))
            self.db.executemany(
                "INSERT INTO outbox (tenant, serial, upn, type, message_id, sender, recipients,"
                " data, suppressed, status, error, created_at, done_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                ((name, m["serial"], m["user"], m["type"], m["message_id"], m["sender"],
                  json.dumps(m["recipients"]), m["data"], int(m["suppressed"]), m["status"],
                  m["error"], m["created_at"], m["done_at"]) for m in dump.outbox))
            self.db.executemany(
                "INSERT INTO history (tenant, serial, kind, applied_at, actor, emails, suppressed)"
                " VALUES (?,?,?,?,?,?,?)",
                ((name, h["serial"], h["kind"], h["applied_at"], h["actor"],
                  json.dumps(h["emails"]), h["suppressed"]) for h in dump.history))

    def close(self) -> None:
        self.db.close()
