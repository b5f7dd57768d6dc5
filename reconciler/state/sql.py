"""Every rule of the SQL state, written once; a backend supplies only its dialect.

The rules: a commit is refused unless the state is still at the planned lineage and serial, and
writes the tenant, its users, its outbox messages and a history row in one transaction; a
message's body (its PIN) is erased when it is delivered or refused; ``forget`` and ``restore``
replace a tenant's rows in one transaction; waiting for a lock gives up after its timeout.

A backend (``sqlite.py``, ``postgres.py``) brings what differs between databases: connecting and
its error messages, its tables' names and schema with their migrations, how a transaction and a
consistent read are opened, its locking primitive, and how JSON, booleans and timestamps travel
(:class:`Dialect`). Statements here name tables as ``{tenants}`` and parameters as ``?``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from abc import abstractmethod
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar

from reconciler.model import Applied, UserRecord, is_enabled
from reconciler.state.base import (
    OUTBOX_FULL,
    OUTBOX_SUMMARY,
    Commit,
    Forgotten,
    MailQueued,
    NewMessage,
    QueuedMessage,
    StaleState,
    StateLocked,
    StateStore,
    StoredUsers,
    TenantDump,
    UsersExcept,
    Wave,
    decode_records,
    encode_record,
    holder,
    now,
    outbox_dict,
    tenant_key,
)
from reconciler.streams import batched

QUEUED_PAGE = 200
"""Queued messages read at a time (about 3 MB of bodies): delivery streams the outbox."""
MESSAGE_BATCH = 200
VISIBLE = "serial <= (SELECT t.serial FROM {tenants} t WHERE t.name = {outbox}.tenant)"
"""The outbox rows a committed state makes visible: an apply writes its messages at the serial
its state will reach before writing that state (``SQLStore.commit``)."""
IN_BATCH = 500
"""Values in one ``IN (…)`` list: well under every database's limit on parameters."""
"""Outbox messages composed and inserted at a time inside a commit's transaction, so an apply
that emails 300,000 users holds a few MB of messages, never all of them."""

Migrations = dict[int, str]
"""Schema version N → the SQL script that brings the tables from N to N + 1."""


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Dialect:
    """What one database writes differently."""

    tables: dict[str, str]
    """Table names: ``meta``, ``tenants``, ``users``, ``outbox``, ``history``."""
    parameter: str = "?"
    record: str = "?"
    """The parameter of a user record given as JSON text (PostgreSQL casts it to ``json``)."""
    distinct: str = "IS NOT"
    """Null-safe "differs from"."""
    for_update: str = ""
    """Appended to the read of the serial a commit checks (SQLite locks the file instead)."""
    json_in: Callable[[Any], Any] = json.dumps
    json_out: Callable[[Any], Any] = json.loads
    time_out: Callable[[Any], Any] = _same
    """A stored timestamp as ISO 8601 text, UTC, whole seconds."""


class SQLStore(StateStore):
    """A :class:`StateStore` over a DB-API connection ``db`` in autocommit mode."""

    dialect: Dialect
    db: Any
    _held: dict[str, Any]
    """Tenants whose lock this process holds."""
    _schema_has_keys: bool = True
    """Whether users carry their conference ID and enabled flag as indexed columns (schema 4);
    a read-only command on an older file plans without them."""
    _history_has_lineage: bool = True
    """Whether history rows name the lineage they belong to (schema 5); read-only on an older
    state, its rows show none."""

    _sql_cache: ClassVar[dict[str, str]]
    """Statements already put in this backend's dialect."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._sql_cache = {}

    # --- what a backend provides --------------------------------------------------------------

    @abstractmethod
    def _write(self, tenant: str | None = None) -> AbstractContextManager[None]:
        """One read-write transaction; storage and driver errors become one-line UserErrors
        and roll it back."""

    @abstractmethod
    def _snapshot(self) -> AbstractContextManager[None]:
        """A transaction that reads one consistent state."""

    @abstractmethod
    def _guard(self) -> AbstractContextManager[None]:
        """Driver errors of statements outside a transaction as one-line UserErrors."""

    @abstractmethod
    def _many(self, sql: str, rows: Iterable[tuple[Any, ...]]) -> None:
        """Run ``sql`` once per row."""

    def _sealed(
        self, message_id: str, sender: str, recipients: Sequence[str], body: bytes
    ) -> bytes:
        """A queued body as the database is given it (as it is, unless the backend seals it,
        bound to its row's Message-ID, sender and recipients)."""
        return body

    def _opened(
        self, message_id: str, sender: str, recipients: Sequence[str], body: bytes
    ) -> bytes:
        """A queued body as the database gave it back, in clear."""
        return body

    # --- statements ---------------------------------------------------------------------------

    def _sql(self, text: str) -> str:
        """A statement in this dialect: table names filled in, ``?`` as its parameter mark."""
        cached = self._sql_cache.get(text)
        if cached is None:
            dialect = self.dialect
            cached = text.format(
                **dialect.tables,
                record=dialect.record,
                distinct=dialect.distinct,
                for_update=dialect.for_update,
            )
            cached = cached.replace("?", dialect.parameter)
            self._sql_cache[text] = cached
        return cached

    def _run(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> Any:
        return self.db.execute(self._sql(sql), params)

    def _one(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self._run(sql, params).fetchone()

    def _each(self, sql: str, rows: Iterable[tuple[Any, ...]]) -> None:
        self._many(self._sql(sql), rows)

    # --- locks --------------------------------------------------------------------------------

    @staticmethod
    def _wait(
        take: Callable[[], bool], holder_of: Callable[[], str], timeout: float, poll: float = 0.1
    ) -> None:
        """Try ``take`` until it succeeds or ``timeout`` seconds have passed; then say who
        holds the lock."""
        deadline = time.monotonic() + timeout
        while not take():
            if time.monotonic() >= deadline:
                raise StateLocked(f"state locked by {holder_of() or 'another process'}")
            time.sleep(max(0.0, min(poll, deadline - time.monotonic())))

    # --- reading ------------------------------------------------------------------------------

    def tenants(self) -> list[str]:
        with self._guard():
            return [r[0] for r in self._run("SELECT name FROM {tenants} ORDER BY name")]

    def load(self, tenant: str, *, users: bool = True) -> Applied | None:
        with self._snapshot():
            return self._load(tenant, users)

    def _load(self, tenant: str, users: bool = True) -> Applied | None:
        row = self._one(
            "SELECT lineage, serial, config, files FROM {tenants} WHERE name = ?", (tenant,)
        )
        if row is None:
            return None
        json_out = self.dialect.json_out
        applied = Applied(row[0], row[1], json_out(row[2]), {}, json_out(row[3]))
        if users:
            rows = self._run(
                f"SELECT upn, {self._record_text} FROM {{users}} WHERE tenant = ?", (tenant,)
            )
            applied.users = StoredUsers.from_rows(rows, lambda upn: self._record(tenant, upn))
        return applied

    def users_except(self, tenant: str, serial: int, files: Collection[str]) -> UsersExcept | None:
        if not self._schema_has_keys:
            return None
        with self._snapshot():
            if not self._files_known(tenant, serial):
                return None
            recorded = self._one("SELECT files FROM {tenants} WHERE name = ?", (tenant,))[0]
            read = [file for file in self.dialect.json_out(recorded) if file not in files]
            # By file alone: a file's path begins with its tenant's folder.
            rows = (
                (upn, text)
                for owner, upn, text in self._in(
                    f"SELECT tenant, upn, {self._record_text} FROM {{users}} WHERE file IN (?…)",
                    (),
                    read,
                )
                if owner == tenant
            )
            users = StoredUsers.from_rows(rows, lambda upn: self._record(tenant, upn))
            held = enabled = 0
            for count, enabled_ in self._in(
                "SELECT count(*), coalesce(sum(CASE WHEN enabled = ? THEN 1 ELSE 0 END), 0) "
                "FROM {users} WHERE file IN (?…)",
                (True,),
                sorted(files),
            ):
                held += count
                enabled += enabled_
        return UsersExcept(users, held, enabled)

    def _in(self, sql: str, params: tuple[Any, ...], values: Collection[Any]) -> Iterator[Any]:
        """The rows of ``sql`` whose ``IN (?…)`` list holds ``values``, asked a bounded number
        at a time (the databases limit a statement's parameters)."""
        for part in batched(values, IN_BATCH):
            marks = f"IN ({', '.join('?' * len(part))})"
            yield from self._run(sql.replace("IN (?…)", marks), (*params, *part))

    @property
    def _record_text(self) -> str:
        """A user record as the JSON text it was stored as."""
        return "record" if self.dialect.record == "?" else "record::text"

    def _record(self, tenant: str, upn: str) -> str:
        with self._guard():
            return str(
                self._one(
                    f"SELECT {self._record_text} FROM {{users}} WHERE tenant = ? AND upn = ?",
                    (tenant, upn),
                )[0]
            )

    def applied_files(self, tenant: str) -> tuple[int, dict[str, str]] | None:
        with self._guard():
            row = self._one("SELECT serial, files FROM {tenants} WHERE name = ?", (tenant,))
        return None if row is None else (row[0], self.dialect.json_out(row[1]))

    def file_users(
        self, tenant: str, files: Collection[str], serial: int
    ) -> dict[str, dict[str, UserRecord]] | None:
        found: dict[str, dict[str, UserRecord]] = {file: {} for file in files}
        with self._snapshot():  # the serial and the users agree
            if not self._files_known(tenant, serial):
                return None
            for file in files:  # one file's texts at a time: 100k of them would weigh 30 MB
                found[file] = decode_records(
                    self._run(
                        f"SELECT upn, {self._record_text} FROM {{users}}"
                        " WHERE tenant = ? AND file = ?",
                        (tenant, file),
                    ).fetchall()
                )
        return found

    def clashes(
        self,
        tenant: str,
        serial: int,
        files: Collection[str],
        upns: Collection[str],
        conference_ids: Collection[str],
    ) -> bool | None:
        if not self._schema_has_keys:
            return None
        with self._snapshot():
            if not self._files_known(tenant, serial):
                return None
            skipped = set(files)
            found = itertools.chain(
                self._in(
                    "SELECT tenant, file FROM {users} WHERE tenant = ? AND upn IN (?…)",
                    (tenant,),
                    upns,
                ),
                self._in(
                    "SELECT tenant, file FROM {users} WHERE conference_id IN (?…)",
                    (),
                    conference_ids,
                ),
            )
            return any(owner == tenant and file in skipped for owner, file in found)

    def files_known(self, tenant: str, serial: int) -> bool:
        with self._snapshot():
            return self._files_known(tenant, serial)

    def _files_known(self, tenant: str, serial: int) -> bool:
        row = self._one("SELECT serial FROM {tenants} WHERE name = ?", (tenant,))
        return not (
            row is None
            or row[0] != serial
            or self._one(
                "SELECT 1 FROM {users} WHERE tenant = ? AND file IS NULL LIMIT 1", (tenant,)
            )
        )  # else moved on, or some user's file unknown (upgraded or migrated)

    def queued(self, tenant: str, *, suppressed: bool | None = None) -> Iterator[QueuedMessage]:
        after = 0
        where, extra = self._suppressed(suppressed)
        json_out = self.dialect.json_out
        while True:  # one page at a time: a first apply's outbox may hold 300,000 messages
            with self._guard():
                rows = self._run(
                    "SELECT upn, type, message_id, sender, recipients, data, suppressed, id,"
                    " tenant, serial FROM {outbox} WHERE tenant = ? AND status = 'queued'"
                    f" AND {VISIBLE} AND id > ?{where} ORDER BY id LIMIT {QUEUED_PAGE}",
                    (tenant, after, *extra),
                ).fetchall()
            for r in rows:
                yield QueuedMessage(
                    user=r[0],
                    type=r[1],
                    message_id=r[2],
                    sender=r[3],
                    recipients=json_out(r[4]),
                    data=self._opened(r[2], r[3], json_out(r[4]), bytes(r[5])),
                    suppressed=bool(r[6]),
                    id=r[7],
                    tenant=r[8],
                    serial=r[9],
                )
            if len(rows) < QUEUED_PAGE:
                return
            after = rows[-1][7]

    def queued_count(self, tenant: str, *, suppressed: bool | None = None) -> int:
        where, extra = self._suppressed(suppressed)
        with self._guard():
            return int(
                self._one(
                    "SELECT count(*) FROM {outbox} WHERE tenant = ? AND status = 'queued'"
                    f" AND {VISIBLE}{where}",
                    (tenant, *extra),
                )[0]
            )

    def waves(self, tenant: str) -> list[Wave]:
        with self._guard():
            rows = self._run(
                "SELECT serial, suppressed, status, count(*), min(created_at), max(done_at)"
                f" FROM {{outbox}} WHERE tenant = ? AND {VISIBLE}"
                " GROUP BY serial, suppressed, status ORDER BY serial",
                (tenant,),
            ).fetchall()
        time_out = self.dialect.time_out
        waves: dict[int, Wave] = {}
        for serial, suppressed, status, count, written, done in rows:
            wave = waves.setdefault(serial, Wave(serial, time_out(written)))
            wave.written_at = min(wave.written_at, time_out(written))
            if suppressed and status != "failed":
                wave.suppressed += count
            elif status == "delivered":
                wave.delivered += count
                wave.last_delivered = time_out(done)
            elif status == "failed":
                wave.failed += count
            else:
                wave.queued += count
        return list(waves.values())

    @staticmethod
    def _suppressed(suppressed: bool | None) -> tuple[str, tuple[bool, ...]]:
        """The condition (and its parameter) selecting suppressed messages, others, or all."""
        return ("", ()) if suppressed is None else (" AND suppressed = ?", (suppressed,))

    def history(self, tenant: str | None = None) -> list[dict[str, Any]]:
        with self._guard():
            return self._history(tenant)

    def _history(self, tenant: str | None) -> list[dict[str, Any]]:
        lineage = "lineage" if self._history_has_lineage else "NULL"
        query = (
            f"SELECT tenant, {lineage}, serial, kind, applied_at, actor, emails, suppressed"
            " FROM {history}" + (" WHERE tenant = ?" if tenant else "") + " ORDER BY id"
        )
        d = self.dialect
        return [
            {
                "tenant": r[0],
                "lineage": r[1],
                "serial": r[2],
                "kind": r[3],
                "applied_at": d.time_out(r[4]),
                "actor": r[5],
                "emails": d.json_out(r[6]),
                "suppressed": r[7],
            }
            for r in self._run(query, (tenant,) if tenant else ())
        ]

    @property
    def _convert(self) -> dict[str, Callable[[Any], Any]]:
        d = self.dialect
        return {
            "recipients": d.json_out,
            "suppressed": bool,
            "created_at": d.time_out,
            "done_at": d.time_out,
            "data": lambda v: None if v is None else bytes(v),
        }

    def messages(self, tenant: str) -> Iterator[dict[str, Any]]:
        with self._guard():
            rows = self._run(
                f"SELECT {', '.join(OUTBOX_SUMMARY)} FROM {{outbox}}"
                f" WHERE tenant = ? AND {VISIBLE} ORDER BY id",
                (tenant,),
            ).fetchall()
        for row in rows:
            yield outbox_dict(OUTBOX_SUMMARY, row, self._convert)

    def export(self, tenant: str) -> TenantDump | None:
        with self._snapshot():
            applied = self._load(tenant)
            if applied is None:
                return None
            applied.users = dict(applied.users)  # a dump outlives the store
            updated_at = self._one("SELECT updated_at FROM {tenants} WHERE name = ?", (tenant,))[0]
            outbox = [
                outbox_dict(OUTBOX_FULL, r, self._convert)
                for r in self._run(
                    f"SELECT {', '.join(OUTBOX_FULL)} FROM {{outbox}}"
                    f" WHERE tenant = ? AND {VISIBLE} ORDER BY id",
                    (tenant,),
                )
            ]
            for m in outbox:
                if m["data"] is not None:
                    m["data"] = self._opened(
                        m["message_id"], m["sender"], m["recipients"], m["data"]
                    )
            return TenantDump(
                tenant, applied, self.dialect.time_out(updated_at), outbox, self._history(tenant)
            )

    # --- writing ------------------------------------------------------------------------------

    def commit(
        self, name: str, expected: tuple[str | None, int], change: Commit
    ) -> tuple[str, int]:
        """Write the messages first, a batch per short transaction, at the serial this commit
        will reach: invisible (:data:`VISIBLE`) until the one short transaction that writes the
        state makes them so. Composing a first apply of 300,000 users does not hold the
        database's write lock: another tenant's apply runs meanwhile. Whatever stops it before
        that transaction, its messages are removed (by the next apply of the tenant if killed)."""
        tenant_key(name)
        if name in self._held:
            self.check_lock(name)
        with self._guard():
            row = self._one("SELECT lineage, serial FROM {tenants} WHERE name = ?", (name,))
        before = (row[0], row[1]) if row else (None, 0)
        if not change.replace and before != expected:
            raise StaleState(
                f"state of {name} moved to serial {before[1]} since the plan (serial {expected[1]})"
            )
        lineage: str = change.lineage if change.replace or row is None else row[0]
        serial: int = before[1] + 1
        stamp = now()
        self._discard_unseen(name)  # a killed apply's messages
        try:
            counts, suppressed = self._write_messages(name, serial, change.messages, stamp)
            self._commit_state(name, before, lineage, serial, change, stamp, counts, suppressed)
        except BaseException:
            with contextlib.suppress(Exception):
                self._discard_unseen(name)
            raise
        return lineage, serial

    def _write_messages(
        self, name: str, serial: int, messages: Iterable[NewMessage], stamp: str
    ) -> tuple[Counter[str], int]:
        """Insert ``messages`` (composed as consumed) a batch per transaction, checking the lock
        before each; their counts by type, and how many are suppressed."""
        json_in = self.dialect.json_in
        counts: Counter[str] = Counter()
        suppressed = 0
        for batch in batched(messages, MESSAGE_BATCH):
            if name in self._held:
                self.check_lock(name)
            with self._write(name):
                self._each(
                    "INSERT INTO {outbox} (tenant, serial, upn, type, message_id, sender,"
                    " recipients, data, suppressed, status, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?)",
                    [
                        (
                            name,
                            serial,
                            m.user,
                            m.type,
                            m.message_id,
                            m.sender,
                            json_in(m.recipients),
                            self._sealed(m.message_id, m.sender, m.recipients, m.data),
                            m.suppressed,
                            stamp,
                        )
                        for m in batch
                    ],
                )
            counts.update(m.type for m in batch)
            suppressed += sum(m.suppressed for m in batch)
        return counts, suppressed

    def _discard_unseen(self, name: str) -> None:
        """Delete the tenant's messages no committed state makes visible: those of an apply
        killed or failed before its state transaction (PINs included; zeroed in SQLite)."""
        with self._write(name):
            self._run(
                "DELETE FROM {outbox} WHERE tenant = ? AND serial > coalesce("
                "(SELECT serial FROM {tenants} WHERE name = ?), 0)",
                (name, name),
            )

    def _commit_state(
        self,
        name: str,
        before: tuple[str | None, int],
        lineage: str,
        serial: int,
        change: Commit,
        stamp: str,
        counts: Counter[str],
        suppressed: int,
    ) -> None:
        """The short transaction: the tenant at ``serial`` (which makes its messages
        visible), its users and a history row, refused if the state moved since ``before``."""
        json_in = self.dialect.json_in
        if name in self._held:
            self.check_lock(name)
        with self._write(name):
            row = self._one(
                "SELECT lineage, serial FROM {tenants} WHERE name = ?{for_update}", (name,)
            )
            if ((row[0], row[1]) if row else (None, 0)) != before:
                raise StaleState(f"state of {name} moved since this apply read it")
            if change.replace:
                self._run("DELETE FROM {users} WHERE tenant = ?", (name,))
            self._run(
                "INSERT INTO {tenants} VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE"
                " SET lineage = excluded.lineage, serial = excluded.serial,"
                " config = excluded.config, files = excluded.files,"
                " updated_at = excluded.updated_at",
                (name, lineage, serial, json_in(change.tenant), json_in(change.files), stamp),
            )
            self._each(
                "INSERT INTO {users} (tenant, upn, record, file, enabled)"
                " VALUES (?, ?, {record}, ?, ?) ON CONFLICT (tenant, upn) DO UPDATE"
                " SET record = excluded.record, file = excluded.file, enabled = excluded.enabled",
                (
                    (name, upn, encode_record(record), change.sources.get(upn), is_enabled(record))
                    for upn, record in change.upserts.items()
                ),
            )
            if not change.replace:  # otherwise every user left is one just upserted
                self._each(
                    "UPDATE {users} SET file = ?"
                    " WHERE tenant = ? AND upn = ? AND file {distinct} ?",
                    (
                        (file, name, upn, file)
                        for upn, file in change.sources.items()
                        if upn not in change.upserts
                    ),
                )
            self._each(
                "DELETE FROM {users} WHERE tenant = ? AND upn = ?",
                ((name, upn) for upn in change.deletes),
            )
            self._add_history(
                (name, lineage, serial, change.kind, stamp, holder(), counts, suppressed)
            )

    def _add_history(self, *rows: tuple[str, str | None, int, str, str, str, Any, int]) -> None:
        """History rows: tenant, lineage (the state it belongs to, so runs stay apart after
        ``state forget`` starts the serials again), serial, kind, time, actor, emails by type,
        suppressed."""
        json_in = self.dialect.json_in
        self._each(
            "INSERT INTO {history} (tenant, lineage, serial, kind, applied_at, actor, emails,"
            " suppressed) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            ((*row[:6], json_in(dict(row[6])), row[7]) for row in rows),
        )

    def mark_migrated(self, tenant: str, to: str) -> None:
        with self._write():
            self._run(
                "INSERT INTO {meta} (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (_migrated_key(tenant), f"{to} on {now()}"),
            )

    def migrated_to(self, tenant: str) -> str | None:
        with self._guard():
            row = self._one("SELECT value FROM {meta} WHERE key = ?", (_migrated_key(tenant),))
        return None if row is None else str(row[0])

    def mark_delivered(self, *message_ids: str) -> None:
        self._finish(message_ids, "delivered", None)

    def mark_failed(self, message_id: str, reason: str) -> None:
        self._finish((message_id,), "failed", reason)

    def _finish(self, message_ids: tuple[str, ...], status: str, error: str | None) -> None:
        stamp = now()
        with self._write():
            self._each(
                "UPDATE {outbox} SET status = ?, error = ?, data = NULL, done_at = ?"
                " WHERE message_id = ?",
                [(status, error, stamp, mid) for mid in message_ids],
            )

    def forget(self, tenant: str, drop_queued: bool = False) -> Forgotten | None:
        with self._write():
            row = self._one(
                "SELECT serial, lineage FROM {tenants} WHERE name = ?{for_update}", (tenant,)
            )
            if row is None:
                return None
            queued = self._one(
                "SELECT count(*) FROM {outbox} WHERE tenant = ? AND status = 'queued'"
                f" AND {VISIBLE}",
                (tenant,),
            )[0]
            if queued and not drop_queued:
                raise MailQueued(queued)
            users = self._run("DELETE FROM {users} WHERE tenant = ?", (tenant,)).rowcount
            self._run("DELETE FROM {outbox} WHERE tenant = ?", (tenant,))
            self._run("DELETE FROM {tenants} WHERE name = ?", (tenant,))
            self._add_history((tenant, row[1], row[0], "forget", now(), holder(), {}, 0))
        return Forgotten(row[0], users, queued)

    def restore(self, dump: TenantDump) -> None:
        name, applied = tenant_key(dump.name), dump.applied
        json_in = self.dialect.json_in
        with self._write():
            for table in ("users", "outbox"):
                self._run(f"DELETE FROM {{{table}}} WHERE tenant = ?", (name,))
            self._run("DELETE FROM {tenants} WHERE name = ?", (name,))
            self._run("DELETE FROM {meta} WHERE key = ?", (_migrated_key(name),))
            self._run(
                "INSERT INTO {tenants} VALUES (?, ?, ?, ?, ?, ?)",
                (
                    name,
                    applied.lineage,
                    applied.serial,
                    json_in(applied.tenant),
                    json_in(applied.files),
                    dump.updated_at,
                ),
            )
            self._each(
                "INSERT INTO {users} (tenant, upn, record, enabled) VALUES (?, ?, {record}, ?)",
                ((name, upn, encode_record(r), is_enabled(r)) for upn, r in applied.users.items()),
            )
            self._each(
                "INSERT INTO {outbox} (tenant, serial, upn, type, message_id, sender, recipients,"
                " data, suppressed, status, error, created_at, done_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (
                        name,
                        m["serial"],
                        m["user"],
                        m["type"],
                        m["message_id"],
                        m["sender"],
                        json_in(m["recipients"]),
                        None
                        if m["data"] is None
                        else self._sealed(m["message_id"], m["sender"], m["recipients"], m["data"]),
                        m["suppressed"],
                        m["status"],
                        m["error"],
                        m["created_at"],
                        m["done_at"],
                    )
                    for m in dump.outbox
                ),
            )
            self._add_history(
                *(
                    (
                        name,
                        h.get("lineage"),
                        h["serial"],
                        h["kind"],
                        h["applied_at"],
                        h["actor"],
                        h["emails"],
                        h["suppressed"],
                    )
                    for h in dump.history
                )
            )


def _migrated_key(tenant: str) -> str:
    return f"migrated:{tenant_key(tenant)}"
