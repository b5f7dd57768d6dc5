"""The embedded state backend: one SQLite file (mode 0600) plus per-tenant lock files beside it.

Locks are ``flock`` locks, which the kernel releases when the holding process dies, so a killed
apply never blocks the next run; the lock file only says who holds it and since when. A lock file
is opened, never followed (``O_NOFOLLOW``: a symbolic link there is refused, not truncated), a
hard link (a second name for some other file) is refused before anything is written, and the
lock counts as held only while the file at that path is still the one locked: deleted or
replaced, a second apply could lock the new file, so this one stops sending (:class:`LockLost`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sqlite3
import stat
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from reconciler.errors import UserError
from reconciler.model import Version
from reconciler.state.base import (
    LockLost,
    holder,
    now,
    schema_mismatch,
    tenant_key,
)
from reconciler.state.sql import SQLStore
from reconciler.state.sql_base import Dialect, Migrations

SCHEMA_VERSION = 5
"""The version of the tables below; an upgrade adds a step to ``MIGRATIONS``."""

_OUTBOX = """(
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    serial INTEGER NOT NULL, upn TEXT NOT NULL,
    type TEXT NOT NULL, message_id TEXT NOT NULL UNIQUE, sender TEXT NOT NULL,
    recipients TEXT NOT NULL, data BLOB, suppressed INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'delivered', 'failed')),
    error TEXT, created_at TEXT NOT NULL, done_at TEXT,
    CHECK (status = 'queued' OR data IS NULL))"""
_USERS_3 = """(
    tenant TEXT NOT NULL REFERENCES tenants (name) ON DELETE CASCADE, upn TEXT NOT NULL,
    record TEXT NOT NULL, file TEXT, PRIMARY KEY (tenant, upn)) WITHOUT ROWID"""
_CONFERENCE_ID = (
    "conference_id TEXT GENERATED ALWAYS AS (json_extract(record, '$.conference_id')) VIRTUAL"
)
_ENABLED = "enabled INTEGER NOT NULL DEFAULT 0"
"""Schema 4: what a plan asks, by index, of the users it does not read. The conference ID is
derived from the record; the enabled flag is written with it (SQLite counts a generated column
by reading every row, a written one from the index alone)."""
_USERS = _USERS_3.replace("file TEXT,", f"file TEXT, {_CONFERENCE_ID}, {_ENABLED},")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tenants (
    name TEXT PRIMARY KEY, lineage TEXT NOT NULL, serial INTEGER NOT NULL,
    config TEXT NOT NULL, files TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users {_USERS};
CREATE TABLE IF NOT EXISTS outbox {_OUTBOX};
CREATE INDEX IF NOT EXISTS outbox_queued ON outbox (tenant, status);
CREATE INDEX IF NOT EXISTS users_file ON users (file, enabled);
CREATE INDEX IF NOT EXISTS users_conference_id ON users (conference_id);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, serial INTEGER NOT NULL, kind TEXT NOT NULL,
    applied_at TEXT NOT NULL, actor TEXT NOT NULL, emails TEXT NOT NULL,
    suppressed INTEGER NOT NULL, lineage TEXT);
"""

MIGRATIONS: Migrations = {
    1: "ALTER TABLE users ADD COLUMN file TEXT",
    # PostgreSQL's constraints: known statuses, no body (PIN) once done, rows of known tenants.
    2: f"""
CREATE TABLE users_3 {_USERS_3};
INSERT INTO users_3 SELECT tenant, upn, record, file FROM users;
DROP TABLE users;
ALTER TABLE users_3 RENAME TO users;
CREATE TABLE outbox_3 {_OUTBOX};
INSERT INTO outbox_3 SELECT id, tenant, serial, upn, type, message_id, sender, recipients,
    CASE WHEN status = 'queued' THEN data END, suppressed, status, error, created_at, done_at
    FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_3 RENAME TO outbox;
CREATE INDEX outbox_queued ON outbox (tenant, status);
""",
    # A plan that reuses unchanged files asks the state, by index, for clashes and counts.
    3: f"""
ALTER TABLE users ADD COLUMN {_CONFERENCE_ID};
ALTER TABLE users ADD COLUMN {_ENABLED};
UPDATE users SET enabled = json_extract(record, '$.license') IS 1
    AND json_extract(record, '$.provider') IS 'Microsoft';
""",
    # History names the state (lineage) each row belongs to: runs stay apart after a forget.
    # An apply writes its messages before the state that makes them visible (a short commit):
    # the outbox no longer requires its tenant to exist.
    4: f"""
ALTER TABLE history ADD COLUMN lineage TEXT;
CREATE TABLE outbox_5 {_OUTBOX};
INSERT INTO outbox_5 SELECT * FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_5 RENAME TO outbox;
""",
}

DIALECT = Dialect(tables={t: t for t in ("meta", "tenants", "users", "outbox", "history")})


BUSY_TIMEOUT = 30.0
"""Seconds a statement waits for another process's write transaction (an apply writes in short
transactions, so seconds at most)."""


def _held_by(lock: Path) -> str:
    """What a tenant's lock file says of its holder (empty when free), read without following
    a link."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    try:
        return os.read(fd, 4096).decode("utf-8", "replace").strip()
    finally:
        os.close(fd)


def _reason(exc: BaseException) -> str:
    """The real cause, on one line: a full disk, a read-only file system, a symbolic link."""
    if isinstance(exc, OSError) and exc.errno == errno.ELOOP:
        return "it is a symbolic link; remove it (files beside the state are never followed)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return " ".join(str(exc).split()) or type(exc).__name__


class SQLiteStore(SQLStore):
    """``read_only`` (plan, preview, state show): the file is opened read-only, never created,
    chmod-ed, migrated or written."""

    dialect = DIALECT

    def __init__(self, path: Path, read_only: bool = False, busy_timeout: float = BUSY_TIMEOUT):
        self.path = path
        self.busy_timeout = busy_timeout
        self.description = str(path)
        self.read_only = read_only
        self._held: dict[str, int] = {}
        """Tenant → the descriptor of its locked lock file."""
        self._schema_knows_files = True
        try:
            if read_only:
                self.db = _connect(path, "ro")
            else:
                if not path.exists():
                    os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, 0o600))
                os.chmod(path, 0o600)
                self.db = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout)
        except (OSError, sqlite3.Error) as exc:
            raise UserError(f"cannot open state {path}: {_reason(exc)}") from None
        try:
            if read_only:
                try:
                    self._check_version()
                except sqlite3.OperationalError as exc:
                    if exc.sqlite_errorname != "SQLITE_READONLY_ROLLBACK":
                        raise
                    self.db.close()
                    self.db = _recovered(path)
                    self._check_version()
            else:
                self.db.execute("PRAGMA journal_mode=DELETE")
                self.db.execute("PRAGMA synchronous=FULL")
                # Erased message bodies (PINs) must not survive in free pages of the file.
                self.db.execute("PRAGMA secure_delete=ON")
                self._migrate()
                self.db.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as exc:
            self.db.close()
            raise UserError(f"cannot use state {path}: {_reason(exc)}") from None
        except BaseException:
            self.db.close()
            raise

    def _version(self) -> str | None:
        """The file's schema version; refuses a database that is not a reconciler state."""
        has_meta = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone()
        row = (
            has_meta
            and self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        )
        if row:
            return str(row[0])
        if self.db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone():
            raise UserError(
                f"{self.description} is an SQLite database but not a reconciler "
                "state (no schema version): refusing to use it; check --state"
            )
        return None

    def _check_version(self) -> None:
        """Read-only: an older schema is read as it is (its upgrade waits for a command that
        writes); a schema 1 file does not know its users' files, so none are reused, before
        schema 4 a changed file makes the plan read every file, and before schema 5 history
        rows name no lineage."""
        version = self._version()
        if version is None:  # an empty file: nothing applied yet
            self.db.executescript(
                _SCHEMA.replace("CREATE TABLE", "CREATE TEMP TABLE")
                .replace("CREATE INDEX IF NOT EXISTS outbox_queued ON outbox", "SELECT 1")
                .replace("REFERENCES tenants (name) ON DELETE CASCADE", "")
            )
        elif version.isdigit() and int(version) in MIGRATIONS:
            self._schema_knows_files = int(version) > 1
            self._schema_has_keys = int(version) > 3
            self._history_has_lineage = False
        elif version != str(SCHEMA_VERSION):
            raise UserError(schema_mismatch(self.description, version, SCHEMA_VERSION))
        self.store_id = (
            ""
            if version is None
            else self.db.execute("SELECT value FROM meta WHERE key='store_id'").fetchone()[0]
        )

    def _migrate(self) -> None:
        """Create the tables in a new file, upgrade an older one in the same transaction,
        refuse one made by a newer or unknown version."""
        with self._transaction():
            version = self._version()
            if version is not None and version.isdigit():
                step = int(version)
                while step in MIGRATIONS:
                    for statement in MIGRATIONS[step].split(";"):
                        if statement.strip():
                            self.db.execute(statement)
                    step += 1
                version = str(step)
                self.db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (version,))
            if version is not None and version != str(SCHEMA_VERSION):
                raise UserError(schema_mismatch(self.description, version, SCHEMA_VERSION))
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self.db.execute(statement)
            if version is None:
                self.db.execute(
                    "INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
            self.db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('store_id', ?)", (uuid.uuid4().hex,)
            )
            self.store_id = self.db.execute(
                "SELECT value FROM meta WHERE key='store_id'"
            ).fetchone()[0]

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
            raise UserError(self._failure(exc)) from None

    def _failure(self, exc: sqlite3.Error) -> str:
        """One line for a driver error; a database still busy past the wait says so, and which
        applies hold a tenant of this state (their lock files name them)."""
        if getattr(exc, "sqlite_errorname", "") not in ("SQLITE_BUSY", "SQLITE_LOCKED"):
            return f"state {self.description}: {_reason(exc)}"
        holders = sorted(
            f"{lock.name.removeprefix(self.path.resolve().name + '.').removesuffix('.lock')} "
            f"by {text}"
            for lock in self.path.resolve().parent.glob(f"{self.path.resolve().name}.*.lock")
            if (text := _held_by(lock))
        )
        held = f"applies running: {'; '.join(holders)}" if holders else "no apply holds a tenant"
        return (
            f"state {self.description} is busy: another process kept its write lock for over "
            f"{self.busy_timeout:g} s ({held}); nothing was written, try again"
        )

    def _write(self, tenant: str | None = None) -> contextlib.AbstractContextManager[None]:
        return self._transaction("IMMEDIATE")

    def _snapshot(self) -> contextlib.AbstractContextManager[None]:
        return self._transaction("DEFERRED")

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise UserError(self._failure(exc)) from None

    def _many(self, sql: str, rows: Iterable[tuple[Any, ...]]) -> None:
        self.db.executemany(sql, rows)

    @contextmanager
    def lock(self, tenant: str, timeout: float = 0.0) -> Iterator[None]:
        lock_path = self._lock_path(tenant)
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise UserError(f"cannot open lock file {lock_path}: {_reason(exc)}") from None
        try:
            _check_lock_file(fd, lock_path)
            self._wait(
                lambda: _try_flock(fd),
                lambda: os.pread(fd, 4096, 0).decode("utf-8", "replace").strip(),
                timeout,
            )
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{holder()} since {now()}\n".encode(), 0)
            except OSError as exc:
                raise UserError(f"cannot write lock file {lock_path}: {_reason(exc)}") from None
            self._held[tenant] = fd
            try:
                yield
            finally:
                del self._held[tenant]
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _lock_path(self, tenant: str) -> Path:
        real = self.path.resolve()  # one lock file however the database is named
        return real.with_name(f"{real.name}.{tenant_key(tenant)}.lock")

    def check_lock(self, tenant: str) -> None:
        fd = self._held.get(tenant)
        if fd is None:
            raise LockLost(f"{tenant}: this process does not hold the state lock")
        try:
            current = os.stat(self._lock_path(tenant), follow_symlinks=False)
        except OSError:
            current = None
        held = os.fstat(fd)
        if current is None or (current.st_dev, current.st_ino) != (held.st_dev, held.st_ino):
            raise LockLost(
                f"{tenant}: the lock file {self._lock_path(tenant)} was removed or "
                "replaced while this apply held it"
            )

    def _files_known(self, tenant: str, version: Version) -> bool:
        return self._schema_knows_files and super()._files_known(tenant, version)

    def close(self) -> None:
        self.db.close()


def _check_lock_file(fd: int, lock_path: Path) -> None:
    """Refuse a lock file, before it is locked, read or written, that another name shares (a
    hard link: its "truncate, write the holder" would change the file behind the other name)
    or that is not a regular file. Checked on the open descriptor: what is checked is what
    would be written."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        why = "it is not a regular file"
    elif info.st_nlink > 1:
        why = f"it has {info.st_nlink} names (a hard link: writing it would change another file)"
    else:
        return
    raise UserError(f"cannot use lock file {lock_path}: {why}; remove it (it holds no state)")


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _connect(path: Path, mode: str) -> sqlite3.Connection:
    """A connection to an existing file only (``mode``: ``ro`` or ``rw``)."""
    uri = f"file:{urllib.parse.quote(str(path.absolute()))}?mode={mode}"
    return sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30.0)


def _recovered(path: Path) -> sqlite3.Connection:
    """A read-only connection to a state whose last write was interrupted (an apply killed
    inside its commit left a hot rollback journal): SQLite must roll that transaction back
    before anyone reads, which a read-only connection may not do. Opening the file for writing
    once does it and changes nothing else: the state is the last committed one."""
    try:
        db = _connect(path, "rw")
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise UserError(
            f"cannot read state {path}: a write to it was interrupted (a killed apply?) and "
            f"undoing it needs write access ({_reason(exc)}); run `reconciler apply` or "
            "`state show` where the file is writable"
        ) from None
    return _connect(path, "ro")
