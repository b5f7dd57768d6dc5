"""The outbox of the SQL state (:class:`SQLOutbox`): a commit's messages written a batch at a
time, invisible until its state is; the queued messages read a page at a time; marking them
delivered or failed erases their body (the PIN)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from reconciler.state.base import (
    OUTBOX_SUMMARY,
    NewMessage,
    QueuedMessage,
    Wave,
    now,
    outbox_dict,
)
from reconciler.state.sql_base import VISIBLE, SQLBase
from reconciler.streams import batched

QUEUED_PAGE = 200
"""Queued messages read at a time (about 3 MB of bodies): delivery streams the outbox."""
MESSAGE_BATCH = 200
"""Outbox messages composed and inserted at a time inside a commit's transaction, so an apply
that emails 300,000 users holds a few MB of messages, never all of them."""


class SQLOutbox(SQLBase):
    """:class:`~reconciler.state.base.Outbox` in SQL, and the messages a commit writes before
    its state."""

    # --- reading ------------------------------------------------------------------------------

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

    def messages(self, tenant: str) -> Iterator[dict[str, Any]]:
        with self._guard():
            rows = self._run(
                f"SELECT {', '.join(OUTBOX_SUMMARY)} FROM {{outbox}}"
                f" WHERE tenant = ? AND {VISIBLE} ORDER BY id",
                (tenant,),
            ).fetchall()
        for row in rows:
            yield outbox_dict(OUTBOX_SUMMARY, row, self._convert)

    # --- writing ------------------------------------------------------------------------------

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
