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
- **Queued bodies** are sealed with ``RECONCILER_OUTBOX_KEY`` before they reach the server
  (``sealing.py``): its WAL, archives and backups never hold a PIN in clear.
- **Errors** (unreachable server, bad credentials, missing database, lost connection) become
  one-line ``UserError``s naming the URL with its password masked.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NoReturn

import psycopg
from psycopg import errors
from psycopg.types.json import Json

from reconciler.errors import UserError
from reconciler.state.base import (
    LockLost,
    StaleState,
    holder,
    redact,
    schema_mismatch,
    tenant_key,
    url_secrets,
)
from reconciler.state.sealing import ENV as KEY_ENV
from reconciler.state.sealing import OutboxKeys, binding, open_body
from reconciler.state.sql import SQLStore
from reconciler.state.sql_base import VISIBLE, Dialect, Migrations

SCHEMA_VERSION = 6
"""The version of the tables below; an upgrade adds a step to ``MIGRATIONS``."""

READABLE_AS_IS = frozenset({3, 4, 5})
"""Older schemas a role that may only read (a pull request's plan) uses without upgrading them:
they lack only what makes a plan of one changed file fast (3), the history's lineage (4) and
the mark that bodies are sealed (5), which a plan never reads."""

_SEALED = "INSERT INTO reconciler_meta VALUES ('outbox_bodies', 'sealed') ON CONFLICT DO NOTHING"
"""Schema 6: queued bodies are sealed (``sealing.py``). The version itself is the point: a
reconciler older than sealing refuses the tables instead of sending the sealed bytes as mail."""

LOCK_CLASS = 0x52434E4C
"""First key of the reconciler's two-key advisory locks ("RCNL"): keeps them apart from other
applications' locks in the same database. The second key hashes the schema and tenant."""
SCHEMA_LOCK_CLASS = LOCK_CLASS + 1
"""Serialises the creation of the tables by two first runs at once (a transaction lock)."""

CONNECT_TIMEOUT = 10
"""Seconds to wait for the server when the URL sets no ``connect_timeout``."""

_TENANT_KEY = "hashtext(current_schema() || '/' || %(tenant)s)"

_KEYS = """ADD COLUMN conference_id text GENERATED ALWAYS AS (record->>'conference_id') STORED,
    ADD COLUMN enabled boolean NOT NULL DEFAULT false"""
"""Schema 4: what a plan asks, by index, of the users it does not read (the enabled flag is
written with the record, as in SQLite)."""
_INDEXES = """
CREATE INDEX reconciler_users_file ON reconciler_users (file, enabled);
CREATE INDEX reconciler_users_conference_id ON reconciler_users (conference_id)"""

_SCHEMA = f"""
CREATE TABLE reconciler_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE reconciler_tenants (
    name text PRIMARY KEY, lineage text NOT NULL, serial integer NOT NULL,
    config json NOT NULL, files json NOT NULL, updated_at timestamptz NOT NULL);
CREATE TABLE reconciler_users (
    tenant text NOT NULL REFERENCES reconciler_tenants (name) ON DELETE CASCADE,
    upn text NOT NULL, record json NOT NULL, file text, PRIMARY KEY (tenant, upn));
ALTER TABLE reconciler_users {_KEYS};{_INDEXES};
CREATE TABLE reconciler_outbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant text NOT NULL,
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
    actor text NOT NULL, emails json NOT NULL, suppressed integer NOT NULL, lineage text);
CREATE INDEX reconciler_history_tenant ON reconciler_history (tenant, id);
CREATE TABLE reconciler_locks (
    tenant text PRIMARY KEY, holder text NOT NULL, since timestamptz NOT NULL,
    backend_pid integer NOT NULL);
"""

MIGRATIONS: Migrations = {
    1: "ALTER TABLE reconciler_users ADD COLUMN file text",
    # History outlives a tenant's state (``state forget`` records itself there).
    2: "ALTER TABLE reconciler_history DROP CONSTRAINT IF EXISTS reconciler_history_tenant_fkey",
    # A plan that reuses unchanged files asks the state, by index, for clashes and counts.
    3: f"""ALTER TABLE reconciler_users {_KEYS};
UPDATE reconciler_users SET enabled = coalesce(
    record->>'license' = 'true' AND record->>'provider' = 'Microsoft', false);
{_INDEXES}""",
    # History names the state (lineage) each row belongs to: runs stay apart after a forget.
    # An apply writes its messages before the state that makes them visible (a short commit):
    # the outbox no longer requires its tenant to exist.
    4: """ALTER TABLE reconciler_history ADD COLUMN lineage text;
ALTER TABLE reconciler_outbox DROP CONSTRAINT IF EXISTS reconciler_outbox_tenant_fkey""",
    5: _SEALED,
}
"""SQL bringing the tables from version N to N + 1."""


def _iso(value: datetime | None) -> str | None:
    """A timestamp as the SQLite backend writes it: UTC, ISO 8601, whole seconds."""
    return None if value is None else value.astimezone(UTC).isoformat(timespec="seconds")


def _text(value: Any) -> str:
    return _iso(value) or ""


DIALECT = Dialect(
    tables={t: f"reconciler_{t}" for t in ("meta", "tenants", "users", "outbox", "history")},
    parameter="%s",
    record="?::json",
    distinct="IS DISTINCT FROM",
    for_update=" FOR UPDATE",
    json_in=Json,
    json_out=lambda value: value,
    time_out=_iso,
)


class PostgresStore(SQLStore):
    dialect = DIALECT

    def __init__(self, url: str, keys: OutboxKeys | None = None):
        self.url = url
        self.keys = keys
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
            raise UserError(f"invalid state URL {self.description}: {self._message(exc)}") from None
        if "connect_timeout" not in params:
            options["connect_timeout"] = CONNECT_TIMEOUT
        if "application_name" in params:
            del options["application_name"]
        try:
            conn = psycopg.connect(self.url, **options)
        except psycopg.Error as exc:
            raise UserError(
                f"cannot connect to state {self.description}: "
                f"{self._message(exc)}; nothing was done"
            ) from None
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
                self.db.execute(
                    "SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))",
                    (SCHEMA_LOCK_CLASS,),
                )
                if self._schema_version() is None:  # not made meanwhile by another first run
                    if self.db.execute("SELECT current_schema()").fetchone()[0] is None:
                        raise UserError(
                            f"state {self.description}: no schema to create the "
                            "tables in (check search_path)"
                        )
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            self.db.execute(statement)
                    self.db.execute(
                        "INSERT INTO reconciler_meta VALUES ('schema_version', %s),"
                        " ('store_id', %s)",
                        (str(SCHEMA_VERSION), uuid.uuid4().hex),
                    )
                    self.db.execute(_SEALED)
        found = self._schema_version()
        if found is not None and found.isdigit() and int(found) in MIGRATIONS:
            try:
                self._upgrade(int(found))
            except errors.InsufficientPrivilege:
                if int(found) not in READABLE_AS_IS:
                    raise
                # A role that may only read plans without what it cannot add.
                self._schema_has_keys = int(found) > 3
                self._history_has_lineage = int(found) > 4
                found = str(SCHEMA_VERSION)
            else:
                found = self._schema_version()
        if found != str(SCHEMA_VERSION):
            raise UserError(schema_mismatch(self.description, str(found), SCHEMA_VERSION))
        self.store_id = self.db.execute(
            "SELECT value FROM reconciler_meta WHERE key = 'store_id'"
        ).fetchone()[0]

    def _schema_version(self) -> str | None:
        # A catalog query, not to_regclass(): after waiting for the schema lock it must see
        # tables another first run has just committed (name lookups may cache their absence).
        if not self.db.execute(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
            " ON n.oid = c.relnamespace WHERE c.relname = 'reconciler_meta'"
            " AND n.nspname = current_schema())"
        ).fetchone()[0]:
            return None
        row = self.db.execute(
            "SELECT value FROM reconciler_meta WHERE key = 'schema_version'"
        ).fetchone()
        return row[0] if row else "missing"

    def _upgrade(self, version: int) -> None:
        while version in MIGRATIONS:
            with self.db.transaction():
                self.db.execute(
                    "SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))",
                    (SCHEMA_LOCK_CLASS,),
                )
                if self._schema_version() == str(version):
                    self.db.execute(MIGRATIONS[version])
                    self.db.execute(
                        "UPDATE reconciler_meta SET value = %s WHERE key = 'schema_version'",
                        (str(version + 1),),
                    )
            version += 1

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        """A read-only transaction that sees one consistent state."""
        with self._guard(), self.db.transaction():
            self.db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield

    # --- the dialect's part -------------------------------------------------------------------

    @contextmanager
    def _write(self, tenant: str | None = None) -> Iterator[None]:
        with self._guard():
            try:
                with self.db.transaction():
                    yield
            except errors.UniqueViolation as exc:
                if exc.diag.constraint_name != "reconciler_tenants_pkey":
                    raise
                # Two first commits of a new tenant at once (only without the lock).
                raise StaleState(
                    f"state of {tenant} was created by another process since the plan"
                ) from None

    def _many(self, sql: str, rows: Iterable[tuple[Any, ...]]) -> None:
        with self.db.cursor() as cur:
            cur.executemany(sql, rows)

    def ready_to_queue(self) -> None:
        if self.keys is None:
            raise UserError(
                f"state {self.description}: PostgreSQL keeps what it is given in its "
                f"write-ahead log and backups, so queued emails (PINs) are sealed with a key kept "
                f"outside it: set {KEY_ENV} (`reconciler state new-key` makes one); "
                "nothing was done"
            )

    def ready_to_deliver(self, tenant: str) -> None:
        """Open the oldest queued body: the keys given must open what the queue holds (a lost
        key is then named before anything is planned, committed or sent)."""
        with self._guard():
            row = self._one(
                "SELECT message_id, sender, recipients, data FROM {outbox} WHERE tenant = ?"
                f" AND status = 'queued' AND {VISIBLE} ORDER BY id LIMIT 1",
                (tenant,),
            )
        if row is not None:
            self._opened(row[0], row[1], row[2], bytes(row[3]))

    def _sealed(
        self, message_id: str, sender: str, recipients: Sequence[str], body: bytes
    ) -> bytes:
        self.ready_to_queue()
        assert self.keys is not None
        return self.keys.seal(binding(message_id, sender, recipients), body)

    def _opened(
        self, message_id: str, sender: str, recipients: Sequence[str], body: bytes
    ) -> bytes:
        return open_body(self.keys, message_id, binding(message_id, sender, recipients), body)

    @contextmanager
    def lock(self, tenant: str, timeout: float = 0.0) -> Iterator[None]:
        tenant_key(tenant)
        with self._guard():
            conn = self._locks()

            def holder_of() -> str:
                row = conn.execute(
                    "SELECT holder, since FROM reconciler_locks WHERE tenant = %s", (tenant,)
                ).fetchone()
                return f"{row[0]} since {_iso(row[1])}" if row else ""

            def take() -> bool:
                row = conn.execute(
                    f"SELECT pg_try_advisory_lock(%(class)s, {_TENANT_KEY})",
                    {"class": LOCK_CLASS, "tenant": tenant},
                ).fetchone()
                return bool(row and row[0])

            self._wait(take, holder_of, timeout, 0.2)
            if tenant not in self._held:
                conn.execute(
                    "INSERT INTO reconciler_locks VALUES (%s, %s, date_trunc('second', now()),"
                    " pg_backend_pid()) ON CONFLICT (tenant) DO UPDATE SET"
                    " holder = excluded.holder, since = excluded.since,"
                    " backend_pid = excluded.backend_pid",
                    (tenant, holder()),
                )
            self._held[tenant] = self._held.get(tenant, 0) + 1
        try:
            yield
        finally:
            self._held[tenant] -= 1
            if not self._held[tenant]:
                del self._held[tenant]
            try:
                if tenant not in self._held:
                    conn.execute(
                        "DELETE FROM reconciler_locks WHERE tenant = %s"
                        " AND backend_pid = pg_backend_pid()",
                        (tenant,),
                    )
                conn.execute(
                    f"SELECT pg_advisory_unlock(%(class)s, {_TENANT_KEY})",
                    {"class": LOCK_CLASS, "tenant": tenant},
                )
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
            raise LockLost(
                f"{tenant}: lost the connection holding the state lock ({self._message(exc)})"
            ) from None

    def close(self) -> None:
        for conn in (self._lock_conn, self.db):
            if conn is not None:
                conn.close()
