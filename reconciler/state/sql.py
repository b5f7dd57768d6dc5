"""Every rule of the SQL state, written once; a backend supplies only its dialect.

The rules: a commit is refused unless the state is still at the planned lineage and serial, and
writes the tenant, its users, its outbox messages and a history row in one transaction; a
message's body (its PIN) is erased when it is delivered or refused; ``forget`` and ``restore``
replace a tenant's rows in one transaction; waiting for a lock gives up after its timeout.

:class:`SQLStore` is the applied state (tenants, load, commit, history, forget); the other parts
of :class:`~reconciler.state.base.StateStore` are a module each, which it composes:
``sql_outbox.py``, ``sql_file_index.py`` and ``sql_archive.py``, all over ``sql_base.py`` (the
dialect, the statements, the hooks a backend provides). A backend (``sqlite.py``,
``postgres.py``) subclasses it.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Any

from reconciler.model import Applied, is_enabled
from reconciler.state.base import (
    Commit,
    Forgotten,
    MailQueued,
    StaleState,
    encode_record,
    holder,
    now,
    tenant_key,
)
from reconciler.state.sql_archive import SQLArchive
from reconciler.state.sql_base import VISIBLE
from reconciler.state.sql_file_index import SQLFileIndex
from reconciler.state.sql_outbox import SQLOutbox


class SQLStore(SQLOutbox, SQLFileIndex, SQLArchive):
    """A :class:`StateStore` over a DB-API connection ``db`` in autocommit mode."""

    # --- reading ------------------------------------------------------------------------------

    def tenants(self) -> list[str]:
        with self._guard():
            return [r[0] for r in self._run("SELECT name FROM {tenants} ORDER BY name")]

    def load(self, tenant: str, *, users: bool = True) -> Applied | None:
        with self._snapshot():
            return self._load(tenant, users)

    def history(self, tenant: str | None = None) -> list[dict[str, Any]]:
        with self._guard():
            return self._history(tenant)

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
