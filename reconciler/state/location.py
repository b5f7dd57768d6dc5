"""Where the state lives: ``--state`` as an SQLite path or a PostgreSQL URL, checked as written
(never guessed) and opened by :func:`open_store`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, overload

from reconciler.errors import UserError
from reconciler.state.base import StateStore, redact
from reconciler.state.read_only import EmptyState

POSTGRES_SCHEMES = ("postgresql", "postgres")
DEFAULT_FOLDER = Path(".reconciler")
"""The one state folder created when missing (the embedded default, ``.reconciler/state.db``)."""
_KEYWORDS = re.compile(r"^\s*[A-Za-z_]+\s*=")


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
    return (
        Path(".reconciler").resolve()
        if is_database_url(location)
        else (Path(location).resolve().parent)
    )


@overload
def open_store(
    location: str,
    create: Literal[True] = True,
    read_only: bool | None = None,
    option: str = "--state",
) -> StateStore: ...


@overload
def open_store(
    location: str,
    create: bool,
    read_only: bool | None = None,
    option: str = "--state",
) -> StateStore | EmptyState: ...


def open_store(
    location: str,
    create: bool = True,
    read_only: bool | None = None,
    option: str = "--state",
) -> StateStore | EmptyState:
    """A state store for a path (SQLite, the embedded default) or a ``postgresql://`` URL
    (given as ``option``, which a refusal names).

    ``create=False``: a SQLite file that does not exist yet is an :class:`EmptyState`, not a new
    file (typed so: it only reads, and mypy keeps it from a caller that writes).
    ``read_only`` (default: ``not create``, commands that only read) opens an existing SQLite
    file read-only: never created, changed or chmod-ed.

    A PostgreSQL store seals queued bodies with the environment's ``RECONCILER_OUTBOX_KEY``.

    Raises UserError (one line, password masked) when the store cannot be opened: unreachable
    server, bad credentials, missing database, a schema made by another reconciler version, a
    malformed outbox key.
    """
    if why := _location_problem(location, option):
        raise UserError(why)
    scheme = _scheme(location)
    if scheme in POSTGRES_SCHEMES:
        _check_authority(location)
        with _postgres_extra():
            from reconciler.state.postgres import PostgresStore
            from reconciler.state.sealing import OutboxKeys
        return PostgresStore(location, OutboxKeys.from_env())
    if scheme is not None:
        raise UserError(
            f"unsupported state URL scheme {scheme}://: give an SQLite file path or "
            "a postgresql:// URL"
        )
    return _sqlite_store(Path(location), create, not create if read_only is None else read_only)


def new_outbox_key() -> tuple[str, str]:
    """A fresh ``RECONCILER_OUTBOX_KEY`` and its fingerprint (a PostgreSQL state seals its
    queued emails with it)."""
    with _postgres_extra():
        from reconciler.state.sealing import new_key
    return new_key()


@contextmanager
def _postgres_extra() -> Iterator[None]:
    """Imports of the ``postgres`` extra (psycopg 3, cryptography): when missing, one line
    saying how to install them (SQLite needs neither)."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if exc.name is None or not exc.name.startswith(("psycopg", "cryptography")):
            raise
        raise UserError(
            "a postgresql:// state needs psycopg 3 and cryptography: pip install "
            "'audio-conferencing-reconciler[postgres]'"
        ) from None


def _location_problem(location: str, option: str) -> str | None:
    """Why ``location`` is neither an SQLite path nor a PostgreSQL URL as written, or None.

    Each of these would otherwise be taken as the path of a new, empty SQLite state — and an
    apply would email every user again: a libpq ``key=value`` string (never echoed: it holds
    a password), whitespace around the value or an invisible character in it (a secret or a
    file read with its line break), a ``file:`` URI, nothing at all. What was given is shown
    escaped, a URL's password masked, so what is wrong with it can be seen."""
    core = location.strip()
    if _KEYWORDS.match(location) or (
        _scheme(core) is None and core.startswith(("postgresql:", "postgres:"))
    ):
        return (
            f"{option} looks like a PostgreSQL connection string, not a file path: "
            "write it as a URL, postgresql://USER@HOST:PORT/DBNAME (password in "
            "PGPASSWORD or a percent-encoded URL); nothing was done"
        )
    start = len(location) - len(location.lstrip())
    shown = location[:start] + printable(core) + location[start + len(core) :]
    if not core:
        why = "is empty"
    elif core != location:
        why = "begins or ends with whitespace (a line break read with a secret or a file?)"
    elif not core.isprintable():
        why = "holds a control or invisible character"
    elif core[:5].lower() == "file:":
        why = "is a file: URI, not a path"
    else:
        return None
    return (
        f"{option} {shown!r} {why}: give an SQLite file path or a postgresql:// URL, "
        "exactly; nothing was done"
    )


def _check_authority(url: str) -> None:
    """Refuse a URL whose password holds an unencoded ``@``, ``/``, ``?`` or ``#``: libpq would
    read part of the password as the host or the database, and print it in its error."""
    rest = url.split("://", 1)[1]
    end = min((i for c in "/?#" if (i := rest.find(c)) >= 0), default=len(rest))
    if rest[:end].count("@") > 1 or "@" in rest[end:]:
        raise UserError(
            f"state URL {redact(url)}: the password seems to hold an unencoded "
            "@, /, ? or #: percent-encode them (%40, %2F, %3F, %23), or put the "
            "password in PGPASSWORD; nothing was done"
        )


def _sqlite_store(path: Path, create: bool, read_only: bool) -> StateStore | EmptyState:
    """The SQLite state at ``path``, which must be a plain path, never a guess: a mistyped
    folder would otherwise start an empty state, and an apply would email every user again;
    a folder given for the file would be chmod-ed."""
    from reconciler.state.sqlite import SQLiteStore

    if path.is_symlink():
        raise UserError(
            f"state {path} is a symbolic link: give the real path (state files are "
            "opened, never followed); nothing was done"
        )
    if path.exists() and not path.is_file():
        what = "a folder" if path.is_dir() else "not a regular file"
        raise UserError(
            f"state {path} is {what}: give the path of the SQLite file itself; nothing was done"
        )
    if not create and not path.exists():
        return EmptyState()  # it reads as an empty state, and has no method that writes
    folder = path.parent
    if not folder.is_dir():
        if not _is_default_folder(folder):
            raise UserError(
                f"state folder {folder} does not exist: check --state (a wrong "
                "path would start an empty state), or create the folder; nothing "
                "was done"
            )
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(
                f"cannot create state folder {folder}: {(exc.strerror or str(exc)).lower()}"
            ) from None
    return SQLiteStore(path, read_only=read_only)


def _is_default_folder(folder: Path) -> bool:
    return folder.absolute() == DEFAULT_FOLDER.absolute()
