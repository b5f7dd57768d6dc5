"""The archive of the SQL state (:class:`SQLArchive`): a tenant exported from one consistent
read and restored in one transaction, and the marks ``state migrate`` leaves."""

from __future__ import annotations

from reconciler.model import is_enabled
from reconciler.state.base import (
    OUTBOX_FULL,
    TenantDump,
    encode_record,
    now,
    outbox_dict,
    tenant_key,
)
from reconciler.state.sql_base import VISIBLE, SQLBase


class SQLArchive(SQLBase):
    """:class:`~reconciler.state.base.Archive` in SQL."""

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
