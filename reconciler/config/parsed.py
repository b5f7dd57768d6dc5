"""The users parsed from a tenant's files, kept on disk rather than in memory.

A 300,000-user tenant's effective records take about 250 MB as Python dicts, more than a CI
runner should need to plan or apply it. They go into a private temporary SQLite database
instead (deleted when it is closed, cached a few MB at a time), one file's users at a time, and
are read back one record at a time: memory stays flat however large the tenant is, and the
duplicate checks are two indexed queries.
"""

from __future__ import annotations

import json
import sqlite3
import weakref
from collections.abc import ItemsView, Iterable, Iterator, Mapping
from typing import Any

from reconciler.errors import UserError
from reconciler.model import UserRecord
from reconciler.views import KeyedView

_SCHEMA = """
CREATE TABLE users (
    seq INTEGER PRIMARY KEY,
    upn TEXT NOT NULL,
    file TEXT NOT NULL,
    key TEXT NOT NULL,
    conference_id TEXT,
    record TEXT NOT NULL
);
"""
_INDEXES = """
CREATE INDEX users_upn ON users (upn);
CREATE INDEX users_conference_id ON users (conference_id) WHERE conference_id IS NOT NULL;
"""
Place = tuple[str, str]
"""Where a user is written: (file, key as written)."""


class ParsedUsers(Mapping[str, UserRecord]):
    """Lower-cased UPN → effective record, in the order the users were read. A UPN written
    twice is kept twice, for :meth:`repeated` to report: the loader then refuses the tenant,
    so a mapping it hands on has each UPN once."""

    def __init__(self) -> None:
        # "": private, temporary, on disk once it outgrows its cache. Used by one thread, but
        # closed by whichever thread collects it (a CLI run in a thread, in tests).
        self._db = sqlite3.connect("", check_same_thread=False)
        weakref.finalize(self, self._db.close)
        self._db.executescript(_SCHEMA)
        self._indexed = False

    def add(self, users: Iterable[tuple[Place, UserRecord]]) -> None:
        """Keep a batch of users (one file's) with the place each is written at."""
        rows = (
            (user["upn"], file, key, user["conference_id"], json.dumps(user))
            for (file, key), user in users
        )
        try:
            self._db.executemany(
                "INSERT INTO users (upn, file, key, conference_id, record) VALUES (?, ?, ?, ?, ?)",
                rows,
            )
        except sqlite3.Error as exc:
            raise _no_room(exc) from None

    def rows(self, sql: str, parameters: tuple[str, ...] = ()) -> Iterator[Any]:
        """The rows of a query, streamed; a temporary folder without room is a UserError."""
        try:
            yield from self._query(sql, parameters)
        except sqlite3.Error as exc:
            raise _no_room(exc) from None

    def _query(self, sql: str, parameters: tuple[str, ...]) -> sqlite3.Cursor:
        if not self._indexed:  # built once every user is in: ten times faster than row by row
            self._db.executescript(_INDEXES)
            self._indexed = True
        return self._db.execute(sql, parameters)

    def repeated(self, column: str) -> dict[str, list[Place]]:
        """Every UPN (``upn``) or conference ID (``conference_id``) written more than once, with
        its places, in reading order: what ``semantic.check_unique`` reports."""
        assert column in ("upn", "conference_id")
        places: dict[str, list[Place]] = {}
        for value, file, key in self.rows(
            f"SELECT {column}, file, key FROM users WHERE {column} IN "
            f"(SELECT {column} FROM users WHERE {column} IS NOT NULL"
            f" GROUP BY {column} HAVING count(*) > 1) ORDER BY seq"
        ):
            places.setdefault(value, []).append((file, key))
        return places

    def conference_ids(self) -> list[str]:
        return [
            value
            for (value,) in self.rows(
                "SELECT DISTINCT conference_id FROM users WHERE conference_id IS NOT NULL"
            )
        ]

    @property
    def sources(self) -> Mapping[str, Place]:
        """Lower-cased UPN → where it is written (``TenantConfig.sources``)."""
        return KeyedView(
            self,
            self._place,
            lambda: (
                (upn, (file, key))
                for upn, file, key in self.rows("SELECT upn, file, key FROM users ORDER BY seq")
            ),
            checked=False,
        )

    def _place(self, upn: str) -> Place:
        row = self.row("file, key", upn)
        if row is None:
            raise KeyError(upn)
        return row[0], row[1]

    def row(self, columns: str, upn: str) -> Any:
        """Some columns of one user's row, or None."""
        try:
            return self._query(f"SELECT {columns} FROM users WHERE upn = ?", (upn,)).fetchone()
        except sqlite3.Error as exc:
            raise _no_room(exc) from None

    def __getitem__(self, upn: str) -> UserRecord:
        row = self.row("record", upn)
        if row is None:
            raise KeyError(upn)
        record: UserRecord = json.loads(row[0])
        return record

    def __contains__(self, upn: object) -> bool:
        return isinstance(upn, str) and self.row("1", upn) is not None

    def __iter__(self) -> Iterator[str]:
        return (upn for (upn,) in self.rows("SELECT upn FROM users ORDER BY seq"))

    def items(self) -> ItemsView[str, UserRecord]:
        return _Items(self)

    def __len__(self) -> int:
        return int(next(self.rows("SELECT count(*) FROM users"))[0])


class _Items(ItemsView[str, UserRecord]):
    """Every user and record in one pass, not one query per user."""

    _mapping: ParsedUsers

    def __iter__(self) -> Iterator[tuple[str, UserRecord]]:
        rows = self._mapping.rows("SELECT upn, record FROM users ORDER BY seq")
        return ((upn, json.loads(record)) for upn, record in rows)


def _no_room(exc: sqlite3.Error) -> UserError:
    return UserError(
        f"cannot keep the users read in a temporary file: {exc}; free some space in the "
        "temporary folder (TMPDIR, else /var/tmp or /tmp) or set TMPDIR to one with room "
        "(about 500 bytes per user); nothing was done"
    )
