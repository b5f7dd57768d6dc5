"""The file index of the SQL state (:class:`SQLFileIndex`): which file defined each user, for the
reuse of unchanged files; its users are answered only while the tenant is at the state asked
about (lineage and serial) and every user's file is known."""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterator
from typing import Any

from reconciler.model import UserRecord, Version
from reconciler.state.base import StoredUsers, UsersExcept, decode_records
from reconciler.state.sql_base import SQLBase
from reconciler.streams import batched

IN_BATCH = 500
"""Values in one ``IN (…)`` list: well under every database's limit on parameters."""


class SQLFileIndex(SQLBase):
    """:class:`~reconciler.state.base.FileIndex` in SQL."""

    def users_except(
        self, tenant: str, version: Version, files: Collection[str]
    ) -> UsersExcept | None:
        if not self._schema_has_keys:
            return None
        with self._snapshot():
            if not self._files_known(tenant, version):
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

    def applied_files(self, tenant: str) -> tuple[Version, dict[str, str]] | None:
        with self._guard():
            row = self._one(
                "SELECT lineage, serial, files FROM {tenants} WHERE name = ?", (tenant,)
            )
        return None if row is None else ((row[0], row[1]), self.dialect.json_out(row[2]))

    def file_users(
        self, tenant: str, files: Collection[str], version: Version
    ) -> dict[str, dict[str, UserRecord]] | None:
        found: dict[str, dict[str, UserRecord]] = {file: {} for file in files}
        with self._snapshot():  # the state asked about and the users agree
            if not self._files_known(tenant, version):
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
        version: Version,
        files: Collection[str],
        upns: Collection[str],
        conference_ids: Collection[str],
    ) -> bool | None:
        if not self._schema_has_keys:
            return None
        with self._snapshot():
            if not self._files_known(tenant, version):
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

    def files_known(self, tenant: str, version: Version) -> bool:
        with self._snapshot():
            return self._files_known(tenant, version)

    def _files_known(self, tenant: str, version: Version) -> bool:
        row = self._one("SELECT lineage, serial FROM {tenants} WHERE name = ?", (tenant,))
        return not (
            row is None
            or (row[0], row[1]) != version
            or self._one(
                "SELECT 1 FROM {users} WHERE tenant = ? AND file IS NULL LIMIT 1", (tenant,)
            )
        )  # else moved on, or some user's file unknown (upgraded or migrated)
