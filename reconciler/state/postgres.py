"""The shared state backend: PostgreSQL through psycopg 3 (``postgresql://`` or ``postgres://``).

For deploy pipelines whose runners are thrown away after each job. The semantics are the SQLite
backend's: lineage and serial, the transactional outbox (state, messages and history in one
transaction), bodies erased once delivered or refused.

- **Tables** live in the connection's current schema (the first of ``search_path``; choose one
  with ``?options=-csearch_path%3Dname``), prefixed ``reconciler_`` so the state can share a
  database. ``reconciler_meta`` holds ``schema_version``: a new database gets the tables, one
  made by an older or newer reconciler is refused with a clear message, never used.
- **Locks** are session-level advisory locks keyed on (schema, tenant), taken on a connection
  of their own: one apply per tenant, unrelated tenants never wait, and a killed client's lock
  ends with its session. ``reconciler_locks`` only says who holds a lock and since when.
- **Errors** (unreachable server, bad credentials, missing database, lost connection) become
  one-line ``UserError``s naming the URL with its password masked.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NoReturn

import psycopg
from psycopg import errors
from psycopg.types.json import Json

from reconciler.errors import UserError
from reconciler.model import Applied, UserRecord
from reconciler.state.base import (
    OUTBOX_FULL,
    OUTBOX_SUMMARY,
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
    outbox_dict,
    redact,
    schema_mismatch,
    tenant_key,
    url_secrets,
)

SCHEMA_VERSION = 3
"""The version of the tables below; an upgrade adds a step to ``_UPGRADES``."""

LOCK_CLASS = 0x52434E4C
"""First key of the reconciler's two-key advisory locks ("RCNL"): keeps them apart from other
applications' locks in the same database. The second key hashes the schema and tenant."""
SCHEMA_LOCK_CLASS = LOCK_CLASS + 1
"""Serialises the creation of the tables by two first runs at once (a transaction lock)."""

CONNECT_TIMEOUT = 10
"""Seconds to wait for the server when the URL sets no ``connect_timeout``."""

_TENANT_KEY = "hashtext(current_schema() || '/' || %(tenant)s)"

_SCHEMA = """
CREATE TABLE reconciler_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE reconciler_tenants (
    name text PRIMARY KEY, lineage text NOT NULL, serial integer NOT NULL,
    config json NOT NULL, files json NOT NULL, updated_at timestamptz NOT NULL);
CREATE TABLE reconciler_users (
    tenant text NOT NULL REFERENCES reconciler_tenants (name) ON DELETE CASCADE,
    upn text NOT NULL, record json NOT NULL, file text, PRIMARY KEY (tenant, upn));
CREATE TABLE reconciler_outbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant text NOT NULL REFERENCES reconciler_tenants (name) ON DELETE CASCADE,
    serial integer NOT NULL, upn text NOT NULL, type text NOT NULL,
    message_id text NOT NULL UNIQUE, sender text NOT NULL, recipients json NOT NULL,
    data bytea, suppressed boolean NOT NULL,
    status text NOT NULL CHECK (status IN ('queued', 'delivered', 'failed')),
    error text, created_at timestamptz NOT NULL, done_at timestamptz,
    CONSTRAINT reconciler_outbox_no_body_once_done CHECK (status = 'queued' OR data IS NULL));
CREATE INDEX reconciler_outbox_queued ON reconciler_outbox (tenant, id) WHERE status = 'queued';
CREATE TABLE reconciler_history (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant text NOT NULL,
    serial integer NOT NULL, kind text NOT NULL, applied_at timestamptz NOT NULL,
    actor text NOT NULL, emails json NOT NULL, suppressed integer NOT NULL);
CREATE INDEX reconciler_history_tenant ON reconciler_history (tenant, id);
CREATE TABLE reconciler_locks (
    tenant text PRIMARY KEY, holder text NOT NULL, since timestamptz NOT NULL,
    backend_pid integer NOT NULL);
"""

_UPGRADES: dict[int, str] = {
    1: "ALTER TABLE reconciler_users ADD COLUMN file text",
    # History outlives a tenant's state (``state forget`` records itself there).
    2: "ALTER TABLE reconciler_history DROP CONSTRAINT IF EXISTS reconciler_history_tenant_fkey",
}
"""SQL bringing the tables from version N to N + 1."""


def _iso(value: datetime | None) -> str | None:
    """A timestamp as the SQLite backend writes it: UTC, ISO 8601, whole seconds."""
    return None if value is None else value.astimezone(UTC).isoformat(timespec="seconds")


_CONVERT = {"created_at": _iso, "done_at": _iso}


class PostgresStore(StateStore):
    def __init__(self, url: str):
        self.url = url
        self.description = redact(url)
        self._lock_conn: psycopg.Connection[Any] | None = None
        self._held: dict[str, int] = {}
        self.db = self._connect()
        try:
            with self._guard():
                self._migrate()
        except BaseException:
            self.db.close()
            raise

    # --- connections and errors -------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        options: dict[str, Any] = {"autocommit": True, "application_name": "reconciler"}
        try:
            params = psycopg.conninfo.conninfo_to_dict(self.url)
        except psycopg.Error as exc:
            raise UserError(f"invalid state URL {self.description}: {self._message(exc)}"
                            ) from None
        if "connect_timeout" not in params:
            options["connect_timeout"] = CONNECT_TIMEOUT
        if "application_name" in params:
            del options["application_name"]
        try:
            conn = psycopg.connect(self.url, **options)
        except psycopg.Error as exc:
            raise UserError(f"cannot connect to state {self.description}: "
                            f"{self._message(exc)}; nothing was done") from None
        # Both connections sit idle while messages are sent: a server's idle_session_timeout
        # (PostgreSQL 14+) would end the lock, or the one that marks messages delivered.
        with contextlib.suppress(psycopg.Error):
            conn.execute("SET idle_session_timeout = 0")
        return conn

    def _message(self, exc: BaseException) -> str:
        """A driver or server message on one line, without any credential."""
        text = str(exc).strip() or type(exc).__name__
        for prefix in ("connection failed: ",):
            text = text.removeprefix(prefix)
        lines = [" ".join(line.replace("FATAL:", "").split()) for line in text.splitlines()]
        lines = [line for line in lines if line]
        lines[1:] = [line[0].lower() + line[1:] for line in lines[1:]]  # libpq's hints
        text = "; ".join(lines)
        for secret in url_secrets(self.url):
            if len(secret) >= 4:  # shorter would mangle words; libpq never echoes it anyway
                text = text.replace(secret, "***")
        return text

    def _fail(self, exc: psycopg.Error) -> NoReturn:
        raise UserError(f"state {self.description}: {self._message(exc)}") from None

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Database errors (connection lost, permission denied...) as one-line UserErrors."""
        try:
            yield
        except psycopg.Error as exc:
            self._fail(exc)

    def _migrate(self) -> None:
        """Create the tables in a new schema, upgrade known older ones, refuse anything else."""
        if self._schema_version() is None:
            with self.db.transaction():
                self.db.execute("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))",
                                (SCHEMA_LOCK_CLASS,))
                if self._schema_version() is None:  # not made meanwhile by another first run
                    if self.db.execute("SELECT current_schema()").fetchone()[0] is None:
                        raise UserError(f"state {self.description}: no schema to create the "
                                        "tables in (check search_path)")
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            self.db.execute(statement)
                    self.db.execute(
                        "INSERT INTO reconciler_meta VALUES ('schema_version', %s),"
                        " ('store_id', %s)", (str(SCHEMA_VERSION), uuid.uuid4().hex))
        found = self._schema_version()
        if found is not None and found.isdigit() and int(found) in _UPGRADES:
            self._upgrade(int(found))
            found = self._schema_version()
        if found != str(SCHEMA_VERSION):
            raise UserError(schema_mismatch(self.description, str(found), SCHEMA_VERSION))
        self.store_id = self.db.execute(
            "SELECT value FROM reconciler_meta WHERE key = 'store_id'").fetchone()[0]

    def _schema_version(self) -> str | None:
        # A catalog query, not to_regclass(): after waiting for the schema lock it must see
        # tables another first run has just committed (name lookups may cache their absence).
        if not self.db.execute(
                "SELECT EXISTS (SELECT FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
                " ON n.oid = c.relnamespace WHERE c.relname = 'reconciler_meta'"
                " AND n.nspname = current_schema())").fetchone()[0]:
            return None
        row = self.db.execute(
            "SELECT value FROM reconciler_meta WHERE key = 'schema_version'").fetchone()
        return row[0] if row else "missing"

    def _upgrade(self, version: int) -> None:
        while version in _UPGRADES:
            with self.db.transaction():
                self.db.execute("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))",
                                (SCHEMA_LOCK_CLASS,))
                if self._schema_version() == str(version):
                    self.db.execute(_UPGRADES[version])
                    self.db.execute("UPDATE reconciler_meta SET value = %s"
                                    " WHERE key = 'schema_version'", (str(version + 1),))
            version += 1

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        """A read-only transaction that sees one consistent state."""
        with self.db.transaction():
            self.db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield

    # --- the interface ----------------------------------------------------------------------

    def tenants(self) -> list[str]:
        with self._guard():
            return [r[0] for r in self.db.execute(
                "SELECT name FROM reconciler_tenants ORDER BY name")]

    def load(self, tenant: str) -> Applied | None:
        with self._guard(), self._snapshot():
            return self._load(tenant)

    def _load(self, tenant: str) -> Applied | None:
        row = self.db.execute(
            "SELECT lineage, serial, config, files FROM reconciler_tenants WHERE name = %s",
            (tenant,)).fetchone()
        if row is None:
            return None
        users = StoredUsers.from_rows(
            self.db.execute("SELECT upn, record::text FROM reconciler_users WHERE tenant = %s",
                            (tenant,)),
            lambda upn: self._record(tenant, upn))
        return Applied(row[0], row[1], row[2], users, row[3])

    def applied_files(self, tenant: str) -> tuple[int, dict[str, str]] | None:
        with self._guard():
            row = self.db.execute("SELECT serial, files FROM reconciler_tenants WHERE name = %s",
                                  (tenant,)).fetchone()
        return None if row is None else (row[0], row[1])

    def file_users(self, tenant: str, files: Collection[str], serial: int
                   ) -> dict[str, dict[str, UserRecord]] | None:
        found: dict[str, dict[str, UserRecord]] = {file: {} for file in files}
        with self._guard(), self._snapshot():
            row = self.db.execute("SELECT serial FROM reconciler_tenants WHERE name = %s",
                                  (tenant,)).fetchone()
            if row is None or row[0] != serial or self.db.execute(
                    "SELECT 1 FROM reconciler_users WHERE tenant = %s AND file IS NULL LIMIT 1",
                    (tenant,)).fetchone():
                return None  # moved on, or some user's file unknown (upgraded or migrated)
            for file in files:  # one file's texts at a time: 100k of them would weigh 30 MB
                found[file] = decode_records(self.db.execute(
                    "SELECT upn, record::text FROM reconciler_users"
                    " WHERE tenant = %s AND file = %s", (tenant, file)).fetchall())
        return found

    def _record(self, tenant: str, upn: str) -> str:
        with self._guard():
            return self.db.execute(
                "SELECT record::text FROM reconciler_users WHERE tenant = %s AND upn = %s",
                (tenant, upn)).fetchone()[0]

    @contextmanager
    def lock(self, tenant: str, timeout: float = 0.0) -> Iterator[None]:
        tenant_key(tenant)
        with self._guard():
            conn = self._locks()
            deadline = time.monotonic() + timeout
            while not conn.execute(f"SELECT pg_try_advisory_lock(%(class)s, {_TENANT_KEY})",
                                   {"class": LOCK_CLASS, "tenant": tenant}).fetchone()[0]:
                if time.monotonic() >= deadline:
                    row = conn.execute(
                        "SELECT holder, since FROM reconciler_locks WHERE tenant = %s",
                        (tenant,)).fetchone()
                    who = f"{row[0]} since {_iso(row[1])}" if row else "another process"
                    raise StateLocked(f"state locked by {who}")
                time.sleep(max(0.0, min(0.2, deadline - time.monotonic())))
            if tenant not in self._held:
                conn.execute(
                    "INSERT INTO reconciler_locks VALUES (%s, %s, date_trunc('second', now()),"
                    " pg_backend_pid()) ON CONFLICT (tenant) DO UPDATE SET"
                    " holder = excluded.holder, since = excluded.since,"
                    " backend_pid = excluded.backend_pid", (tenant, holder()))
            self._held[tenant] = self._held.get(tenant, 0) + 1
        try:
            yield
        finally:
            self._held[tenant] -= 1
            if not self._held[tenant]:
                del self._held[tenant]
            try:
                if tenant not in self._held:
                    conn.execute("DELETE FROM reconciler_locks WHERE tenant = %s"
                                 " AND backend_pid = pg_backend_pid()", (tenant,))
                conn.execute(f"SELECT pg_advisory_unlock(%(class)s, {_TENANT_KEY})",
                             {"class": LOCK_CLASS, "tenant": tenant})
            except psycopg.Error:
                pass  # the connection is gone, and the lock with its session

    def _locks(self) -> psycopg.Connection[Any]:
        """The connection holding this process's tenant locks (one for all of them)."""
        if self._lock_conn is None or self._lock_conn.closed:
            self._lock_conn = self._connect()
        return self._lock_conn

    def check_lock(self, tenant: str) -> None:
        """A session-level advisory lock lives exactly as long as its session: the lock is held
        while its connection answers (it is never unlocked in between)."""
        if tenant not in self._held or self._lock_conn is None:
            raise LockLost(f"{tenant}: this process does not hold the state lock")
        try:
            self._lock_conn.execute("SELECT 1")
        except psycopg.Error as exc:
            raise LockLost(f"{tenant}: lost the connection holding the state lock "
                           f"({self._message(exc)})") from None

    def commit(self, name: str, expected: tuple[str | None, int], change: Commit
               ) -> tuple[str, int]:
        tenant_key(name)
        if name in self._held:
            self.check_lock(name)
        with self._guard():
            try:
                with self.db.transaction():
                    return self._commit(name, expected, change)
            except errors.UniqueViolation as exc:
                if exc.diag.constraint_name != "reconciler_tenants_pkey":
                    raise
                # Two first commits of a new tenant at once (only without the lock).
                raise StaleState(f"state of {name} was created by another process since the "
                                 "plan") from None

    def _commit(self, name: str, expected: tuple[str | None, int], change: Commit
                ) -> tuple[str, int]:
        db = self.db
        row = db.execute("SELECT lineage, serial FROM reconciler_tenants WHERE name = %s"
                         " FOR UPDATE", (name,)).fetchone()
        current = (row[0], row[1]) if row else (None, 0)
        if not change.replace and current != expected:
            raise StaleState(f"state of {name} moved to serial {current[1]} since the plan "
                             f"(serial {expected[1]})")
        lineage = change.lineage if change.replace or row is None else current[0]
        serial = current[1] + 1
        if change.replace:
            db.execute("DELETE FROM reconciler_users WHERE tenant = %s", (name,))
        db.execute(
            "INSERT INTO reconciler_tenants VALUES (%s, %s, %s, %s, %s,"
            " date_trunc('second', now())) ON CONFLICT (name) DO UPDATE SET"
            " lineage = excluded.lineage, serial = excluded.serial, config = excluded.config,"
            " files = excluded.files, updated_at = excluded.updated_at",
            (name, lineage, serial, Json(change.tenant), Json(change.files)))
        with db.cursor() as cur:
            if change.upserts:
                cur.executemany(
                    "INSERT INTO reconciler_users VALUES (%s, %s, %s::json, %s) ON CONFLICT"
                    " (tenant, upn) DO UPDATE SET record = excluded.record, file = excluded.file",
                    [(name, upn, encode_record(record), change.sources.get(upn))
                     for upn, record in change.upserts.items()])
            moved = {upn: file for upn, file in change.sources.items()
                     if upn not in change.upserts}
            if moved:
                cur.execute(
                    "UPDATE reconciler_users u SET file = v.file"
                    " FROM unnest(%s::text[], %s::text[]) AS v(upn, file)"
                    " WHERE u.tenant = %s AND u.upn = v.upn AND u.file IS DISTINCT FROM v.file",
                    (list(moved), list(moved.values()), name))
            if change.deletes:
                cur.execute("DELETE FROM reconciler_users WHERE tenant = %s AND upn = ANY(%s)",
                            (name, list(change.deletes)))
            if change.messages:
                cur.executemany(
                    "INSERT INTO reconciler_outbox (tenant, serial, upn, type, message_id,"
                    " sender, recipients, data, suppressed, status, created_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 'queued',"
                    " date_trunc('second', now()))",
                    [(name, serial, m.user, m.type, m.message_id, m.sender, Json(m.recipients),
                      m.data, m.suppressed) for m in change.messages])
        db.execute(
            "INSERT INTO reconciler_history (tenant, serial, kind, applied_at, actor, emails,"
            " suppressed) VALUES (%s, %s, %s, date_trunc('second', now()), %s, %s, %s)",
            (name, serial, change.kind, holder(), Json(dict(email_counts(change.messages))),
             sum(m.suppressed for m in change.messages)))
        return lineage, serial

    def queued(self, tenant: str) -> list[QueuedMessage]:
        with self._guard():
            rows = self.db.execute(
                "SELECT upn, type, message_id, sender, recipients, data, suppressed, id, tenant,"
                " serial FROM reconciler_outbox WHERE tenant = %s AND status = 'queued'"
                " ORDER BY id", (tenant,)).fetchall()
        return [QueuedMessage(*r) for r in rows]

    def mark_delivered(self, message_id: str) -> None:
        self._finish(message_id, "delivered", None)

    def mark_failed(self, message_id: str, reason: str) -> None:
        self._finish(message_id, "failed", reason)

    def _finish(self, message_id: str, status: str, error: str | None) -> None:
        with self._guard():
            self.db.execute(
                "UPDATE reconciler_outbox SET status = %s, error = %s, data = NULL,"
                " done_at = date_trunc('second', now()) WHERE message_id = %s",
                (status, error, message_id))

    def history(self, tenant: str | None = None) -> list[dict[str, Any]]:
        with self._guard():
            return self._history(tenant)

    def _history(self, tenant: str | None) -> list[dict[str, Any]]:
        query = ("SELECT tenant, serial, kind, applied_at, actor, emails, suppressed"
                 " FROM reconciler_history" + (" WHERE tenant = %s" if tenant else "")
                 + " ORDER BY id")
        return [
            {"tenant": r[0], "serial": r[1], "kind": r[2], "applied_at": _iso(r[3]),
             "actor": r[4], "emails": r[5], "suppressed": r[6]}
            for r in self.db.execute(query, (tenant,) if tenant else ())
        ]

    def messages(self, tenant: str) -> Iterator[dict[str, Any]]:
        with self._guard():
            rows = self.db.execute(
                f"SELECT {', '.join(OUTBOX_SUMMARY)} FROM reconciler_outbox WHERE tenant = %s"
                " ORDER BY id", (tenant,)).fetchall()
        for r in rows:
            yield outbox_dict(OUTBOX_SUMMARY, r, _CONVERT)

    def export(self, tenant: str) -> TenantDump | None:
        with self._guard(), self._snapshot():
            applied = self._load(tenant)
            if applied is None:
                return None
            applied.users = dict(applied.users)  # a dump outlives the store
            updated_at = self.db.execute(
                "SELECT updated_at FROM reconciler_tenants WHERE name = %s",
                (tenant,)).fetchone()[0]
            outbox = [outbox_dict(OUTBOX_FULL, r, _CONVERT) for r in self.db.execute(
                f"SELECT {', '.join(OUTBOX_FULL)} FROM reconciler_outbox WHERE tenant = %s"
                " ORDER BY id", (tenant,))]
            return TenantDump(tenant, applied, _iso(updated_at) or "", outbox,
                              self._history(tenant))

    def forget(self, tenant: str, drop_queued: bool = False) -> Forgotten | None:
        with self._guard(), self.db.transaction(), self.db.cursor() as cur:
            row = cur.execute("SELECT serial FROM reconciler_tenants WHERE name = %s FOR UPDATE",
                              (tenant,)).fetchone()
            if row is None:
                return None
            counts = cur.execute(
                "SELECT (SELECT count(*) FROM reconciler_outbox WHERE tenant = %(t)s AND"
                " status = 'queued'), (SELECT count(*) FROM reconciler_users WHERE"
                " tenant = %(t)s)", {"t": tenant}).fetchone()
            assert counts is not None
            queued, users = counts
            if queued and not drop_queued:
                raise MailQueued(queued)
            cur.execute("DELETE FROM reconciler_tenants WHERE name = %s", (tenant,))  # cascades
            cur.execute(
                "INSERT INTO reconciler_history (tenant, serial, kind, applied_at, actor, emails,"
                " suppressed) VALUES (%s, %s, 'forget', date_trunc('second', now()), %s,"
                " '{}', 0)", (tenant, row[0], holder()))
        return Forgotten(row[0], users, queued)

    def restore(self, dump: TenantDump) -> None:
        name, applied = tenant_key(dump.name), dump.applied
        with self._guard(), self.db.transaction(), self.db.cursor() as cur:
            cur.execute("DELETE FROM reconciler_tenants WHERE name = %s", (name,))  # cascades
            cur.execute("DELETE FROM reconciler_history WHERE tenant = %s", (name,))
            cur.execute(
                "INSERT INTO reconciler_tenants VALUES (%s, %s, %s, %s, %s, %s)",
                (name, applied.lineage, applied.serial, Json(applied.tenant),
                 Json(applied.files), dump.updated_at))
            if applied.users:
                cur.executemany("INSERT INTO reconciler_users (tenant, upn, record)"
                                " VALUES (%s, %s, %s::json)",
                                [(name, upn, encode_record(r))
                                 for upn, r in applied.users.items()])
            if dump.outbox:
                cur.executemany(
                    "INSERT INTO reconciler_outbox (tenant, serial, upn, type, message_id,"
                    " sender, recipients, data, suppressed, status, error, created_at, done_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [(name, m["serial"], m["user"], m["type"], m["message_id"], m["sender"],
                      Json(m["recipients"]), m["data"], m["suppressed"], m["status"],
                      m["error"], m["created_at"], m["done_at"]) for m in dump.outbox])
            if dump.history:
                cur.executemany(
                    "INSERT INTO reconciler_history (tenant, serial, kind, applied_at, actor,"
                    " emails, suppressed) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    [(name, h["serial"], h["kind"], h["applied_at"], h["actor"],
                      Json(h["emails"]), h["suppressed"]) for h in dump.history])

    def close(self) -> None:
        for conn in (self._lock_conn, self.db):
            if conn is not None:
                conn.close()
