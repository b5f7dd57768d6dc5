"""State backends behind one interface; ``open_store`` picks one from ``--state``.

A path is an SQLite file (the embedded default); a ``postgresql://`` or ``postgres://`` URL is
the shared PostgreSQL backend (``pip install 'audio-conferencing-reconciler[postgres]'``).
"""

from __future__ import annotations

from pathlib import Path

from reconciler.errors import UserError
from reconciler.state.base import (
    Applied,
    Commit,
    EmptyState,
    LockLost,
    NewMessage,
    QueuedMessage,
    StaleState,
    StateLocked,
    StateStore,
    TenantDump,
    redact,
)

__all__ = ["Applied", "Commit", "LockLost", "NewMessage", "QueuedMessage", "StaleState",
           "StateLocked", "StateStore", "TenantDump", "is_database_url", "local_dir", "open_store",
           "printable", "redact"]

POSTGRES_SCHEMES = ("postgresql", "postgres")


def _scheme(location: str) -> str | None:
    head, sep, _ = location.partition("://")
    return head.lower() if sep and head.replace("+", "").isalnum() else None


def is_database_url(location: str) -> bool:
    """True for a database URL, False for a file path (SQLite)."""
    return _scheme(location) is not None


def printable(location: str) -> str:
    """``location`` fit to print: a URL's password masked."""
    return redact(location) if is_database_url(location) else location


def local_dir(location: str) -> Path:
    """Where files that go with a state belong on this machine (e.g. suppressed messages kept
    for the operator): the SQLite file's folder, or ``./.reconciler`` for a database URL (never
    a folder named after the URL, which may hold a password)."""
    return Path(".reconciler").resolve() if is_database_url(location) else (
        Path(location).resolve().parent)


def open_store(location: str, create: bool = True) -> StateStore:
    """A state store for a path (SQLite, the embedded default) or a ``postgresql://`` URL.

    ``create=False`` is for commands that only read: a SQLite file that does not exist yet is
    then an empty state, not a new file.

    Raises UserError (one line, password masked) when the store cannot be opened: unreachable
    server, bad credentials, missing database, a schema made by another reconciler version.
    """
    scheme = _scheme(location)
    if scheme in POSTGRES_SCHEMES:
        try:
            from reconciler.state.postgres import PostgresStore
        except ModuleNotFoundError as exc:
            if exc.name is None or not exc.name.startswith("psycopg"):
                raise
            raise UserError("a postgresql:// state needs psycopg 3: pip install "
                            "'audio-conferencing-reconciler[postgres]'") from None
        return PostgresStore(location)
    if scheme is not None:
        raise UserError(f"unsupported state URL scheme {scheme}://: give an SQLite file path or "
                        "a postgresql:// URL")
    from reconciler.state.sqlite import SQLiteStore

    if not create and not Path(location).exists():
        return EmptyState()  # type: ignore[return-value]
    return SQLiteStore(Path(location))
