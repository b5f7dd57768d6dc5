"""What every part of the SQL state shares (:class:`SQLBase`): the dialect, the statements,
the transaction hooks a backend provides, and the reads and writes more than one part makes (a
tenant's applied state and history, the outbox rows a committed state makes visible).

A backend (``sqlite.py``, ``postgres.py``) brings what differs between databases: connecting and
its error messages, its tables' names and schema with their migrations, how a transaction and a
consistent read are opened, its locking primitive, and how JSON, booleans and timestamps travel
(:class:`Dialect`). Statements name tables as ``{tenants}`` and parameters as ``?``.
"""

from __future__ import annotations

import json
import time
from abc import abstractmethod
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar

from reconciler.model import Applied
from reconciler.state.base import StateLocked, StateStore, StoredUsers

VISIBLE = "serial <= (SELECT t.serial FROM {tenants} t WHERE t.name = {outbox}.tenant)"
"""The outbox rows a committed state makes visible: an apply writes its messages at the serial
its state will reach before writing that state (``SQLStore.commit``)."""

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


class SQLBase(StateStore):
    """What every part of :class:`~reconciler.state.sql.SQLStore` shares: what a backend
    provides, the statements in its dialect, the reads and writes more than one part makes."""

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

    # --- writing ------------------------------------------------------------------------------

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
