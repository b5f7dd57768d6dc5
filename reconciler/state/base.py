"""The applied state: what every backend stores, and the one interface apply talks to.

Per tenant: the applied effective configuration, a lineage id and a serial (Terraform's
contract: a saved plan is applicable only to the exact lineage and serial it was made against),
a transactional outbox of messages and a history of applies.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import socket
from abc import abstractmethod
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from reconciler.errors import UserError
from reconciler.messages import NewMessage, QueuedMessage, Wave
from reconciler.model import Applied, TenantRecord, UserRecord, Version, tenant_name_problem
from reconciler.redaction import mask_password, userinfo_password
from reconciler.views import KeyedView


def encode_record(record: Mapping[str, Any]) -> str:
    """The one text form in which every backend stores a user record, so a plan can tell an
    unchanged user by comparing texts, without parsing 100k stored records."""
    return json.dumps(record)


def record_digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def decode_records(rows: list[tuple[str, str]]) -> dict[str, UserRecord]:
    """Stored (upn, text) rows as records, decoded in one call so every record shares one copy
    of each key string (100k separate ``json.loads`` would each make their own)."""
    records = json.loads("[" + ",".join(text for _, text in rows) + "]")
    for (upn, _), record in zip(rows, records, strict=True):
        if record.get("upn") == upn:  # one copy of each address, as the YAML path keeps
            record["upn"] = upn
            if record.get("email") == upn:
                record["email"] = upn
    return {upn: record for (upn, _), record in zip(rows, records, strict=True)}


class StoredUsers(KeyedView[str, UserRecord]):
    """Applied users as a 16-byte digest of their stored text each; a record itself is fetched
    from the store only when read. A plan compares digests and reads the 1% that changed, so a
    100k-user tenant's before-state costs a few MB instead of its full parsed size (the
    planner's :class:`~reconciler.model.AppliedUsers`)."""

    __slots__ = ("_digests",)

    def __init__(self, digests: dict[str, bytes], fetch: Callable[[str], str]):
        super().__init__(digests, lambda upn: json.loads(fetch(upn)))
        self._digests = digests

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str]], fetch: Callable[[str], str]) -> StoredUsers:
        """From (upn, stored text) rows, streamed: the texts are not kept."""
        return cls({upn: record_digest(text) for upn, text in rows}, fetch)

    def same(self, upn: str, record: UserRecord) -> bool:
        """Whether ``record`` is exactly the stored one (compared by digest, nothing parsed)."""
        digest = self._digests.get(upn)
        return digest is not None and digest == record_digest(encode_record(record))


@dataclass
class Commit:
    """One apply's write: the new tenant record, the users that changed, the outbox messages."""

    tenant: TenantRecord
    upserts: Mapping[str, UserRecord]
    deletes: list[str]
    files: dict[str, str]
    messages: Iterable[NewMessage]
    """Consumed once, inside the commit's transaction, a batch at a time: composing lazily
    keeps an apply's memory flat however many users it emails."""
    lineage: str
    """The lineage to start when the tenant has none yet (or on ``replace``)."""
    sources: Mapping[str, str] = field(default_factory=dict)
    """User → the config file that defines it, for the users of every file that was read:
    lets a later plan take an unchanged file's users from the state instead of parsing it."""
    kind: str = "apply"
    replace: bool = False
    """Start a new lineage and drop every stored user first (``import --force``)."""


@dataclass
class TenantDump:
    """Everything a backend holds about one tenant, for ``state migrate``: the applied state,
    every outbox row (bodies only where still queued) and every history entry, oldest first."""

    name: str
    applied: Applied
    updated_at: str
    outbox: list[dict[str, Any]]
    """Keys: serial, user, type, message_id, sender, recipients, data, suppressed, status, error,
    created_at, done_at."""
    history: list[dict[str, Any]]
    """As ``StateStore.history`` returns them."""


class StaleState(Exception):
    """The state moved since the plan was made."""


class StateLocked(Exception):
    """Another process holds the tenant's lock."""


class SealBroken(UserError):
    """A queued body that cannot be opened: the key that sealed it is not given, or it was cut,
    altered or moved to another row. Delivery stops at it, in one line, and sends nothing for
    it."""


class MailQueued(Exception):
    """A tenant still has queued mail, which forgetting its state would drop."""

    def __init__(self, count: int):
        super().__init__(f"{count} email(s) still queued")
        self.count = count


class UsersExcept(NamedTuple):
    """The applied users of every users file but some, and how many users those hold."""

    users: Mapping[str, UserRecord]
    """The other files' users (and those of files no longer configured)."""
    held: int
    """How many users the left-out files hold."""
    enabled: int
    """How many of those are enabled."""


@dataclass(frozen=True)
class Forgotten:
    """What ``forget`` removed."""

    serial: int
    users: int
    dropped: int
    """Queued emails dropped (their PINs with them)."""


class LockLost(Exception):
    """The tenant's lock this process took is no longer held (its connection or file is gone):
    another apply may be delivering the same queue, so this one must not send anything more."""


class AppliedState(Protocol):
    """A tenant's applied state: read by every command that plans, written by apply and
    import, removed on purpose by ``state forget``."""

    description: str
    """Where the state lives, fit to print (a database URL's password is masked)."""
    store_id: str
    """A random id made with the store's tables: two locations naming the same store agree."""

    @abstractmethod
    def tenants(self) -> list[str]: ...

    @abstractmethod
    def load(self, tenant: str, *, users: bool = True) -> Applied | None:
        """The tenant's applied state; without its users (an empty mapping) when ``users`` is
        false, for a check that it exists or a plan that knows nothing changed."""

    @abstractmethod
    def commit(
        self, name: str, expected: tuple[str | None, int], change: Commit
    ) -> tuple[str, int]:
        """Write state, outbox and history atomically if the state is still at ``expected``
        (lineage, serial); return the new (lineage, serial). Raise StaleState otherwise."""

    @abstractmethod
    def history(self, tenant: str | None = None) -> list[dict[str, Any]]: ...

    @abstractmethod
    def forget(self, tenant: str, drop_queued: bool = False) -> Forgotten | None:
        """Remove the tenant's applied state (users, outbox) on purpose, in one transaction,
        keeping its history plus a ``forget`` row; None if it has no state. Raises MailQueued
        while mail is queued, unless ``drop_queued``."""

    def close(self) -> None:
        """Release connections."""
        return None


class Locks(Protocol):
    """One apply per tenant: the lock, and whether this process still holds it."""

    @abstractmethod
    def lock(self, tenant: str, timeout: float = 0.0) -> AbstractContextManager[None]:
        """Hold the tenant's lock; raise StateLocked ("locked by … since …") after ``timeout``."""

    @abstractmethod
    def check_lock(self, tenant: str) -> None:
        """Raise LockLost unless this process still holds the tenant's lock: the precondition
        of every commit and every message sent."""


class Outbox(Protocol):
    """The messages an apply writes with its state, delivered after: read a page at a time,
    marked delivered or failed (their bodies erased), counted by apply."""

    def ready_to_queue(self) -> None:
        """Raise UserError when this store could not keep the messages an apply would queue:
        asked before anything is written (before the lock when the plan made before it already
        sends email)."""
        return None

    def ready_to_deliver(self, tenant: str) -> None:
        """Raise SealBroken when the tenant's queue cannot be read with what this store was
        given (a sealed body whose key is missing): asked before the lock, so an apply that
        could not deliver the queue changes nothing."""
        return None

    @abstractmethod
    def queued(self, tenant: str, *, suppressed: bool | None = None) -> Iterator[QueuedMessage]:
        """Messages not yet delivered, oldest first (only the suppressed ones, or only the
        others, when ``suppressed`` says so), read a page at a time as they are consumed: a
        message delivered meanwhile is not seen again, one still queued is not seen twice."""

    @abstractmethod
    def queued_count(self, tenant: str, *, suppressed: bool | None = None) -> int:
        """How many messages :meth:`queued` would give now."""

    @abstractmethod
    def waves(self, tenant: str) -> list[Wave]:
        """Each apply that wrote messages, oldest first, with what became of them."""

    @abstractmethod
    def mark_delivered(self, *message_ids: str) -> None:
        """Record acceptance by the server and erase the message bodies (and so their PINs),
        in one transaction."""

    @abstractmethod
    def mark_failed(self, message_id: str, reason: str) -> None:
        """Record a permanent refusal and erase the body: a PIN never lingers in the state."""

    @abstractmethod
    def messages(self, tenant: str) -> Iterator[dict[str, Any]]:
        """Every outbox row's metadata (never its body), for ``state show``."""


class FileIndex(Protocol):
    """Which users file defined each applied user: what lets a plan reuse the files unchanged
    since the last apply instead of parsing them. Each answer is about one state, its
    ``version`` (lineage, serial): a serial alone starts again at 1 after ``state forget``."""

    @abstractmethod
    def applied_files(self, tenant: str) -> tuple[Version, dict[str, str]] | None:
        """The version and the config files' hashes of the last apply, without its users."""

    @abstractmethod
    def file_users(
        self, tenant: str, files: Collection[str], version: Version
    ) -> dict[str, dict[str, UserRecord]] | None:
        """The applied users recorded as defined in each of ``files``, or None when the state is
        no longer at ``version`` or does not know every user's file (a state upgraded from
        schema 1 or migrated: reusing it would lose those users)."""

    @abstractmethod
    def users_except(
        self, tenant: str, version: Version, files: Collection[str]
    ) -> UsersExcept | None:
        """The applied users of every file but ``files`` (unchanged since, so not wanted), or
        None when the state is no longer at ``version``, does not know every user's file, or
        cannot ask by file (an older schema read-only)."""

    @abstractmethod
    def clashes(
        self,
        tenant: str,
        version: Version,
        files: Collection[str],
        upns: Collection[str],
        conference_ids: Collection[str],
    ) -> bool | None:
        """Whether a user recorded as defined in one of ``files`` has one of these UPNs or
        conference IDs (asked by index, nothing decoded); None when the state is no longer at
        ``serial``, does not know every user's file, or cannot ask by index (an older schema
        read-only)."""

    @abstractmethod
    def files_known(self, tenant: str, version: Version) -> bool:
        """Whether the state is still at ``version`` and knows the file of every user, so that
        :meth:`file_users` can give them all."""


class Archive(Protocol):
    """A tenant's whole record, out of one store and into another (``state migrate``)."""

    @abstractmethod
    def export(self, tenant: str) -> TenantDump | None:
        """The tenant's whole record (one consistent snapshot), or None when it has no state."""

    @abstractmethod
    def restore(self, dump: TenantDump) -> None:
        """Replace the tenant's state and outbox with ``dump``'s and add its history after the
        tenant's own (history is never dropped), in one transaction; the tenant is live here
        again (no longer marked migrated)."""

    @abstractmethod
    def mark_migrated(self, tenant: str, to: str) -> None:
        """Record that ``tenant``'s state now lives in ``to``: this copy is a record only."""

    @abstractmethod
    def migrated_to(self, tenant: str) -> str | None:
        """Where ``tenant``'s state was migrated to (and when), or None."""


class DeliveryQueue(Outbox, Locks, Protocol):
    """What delivering a tenant's outbox takes: its messages, and the lock checked before each."""


class StateStore(AppliedState, Locks, Outbox, FileIndex, Archive, Protocol):
    """A state backend: all five concerns, each method one transaction. Callers take the part
    they use (a plan's file reuse takes a :class:`FileIndex`, delivery a :class:`DeliveryQueue`);
    every backend passes the one contract suite, ``tests/test_state_contract.py``."""


OUTBOX_SUMMARY = (
    "serial",
    "upn",
    "type",
    "message_id",
    "status",
    "suppressed",
    "error",
    "created_at",
    "done_at",
)
"""The outbox columns ``messages()`` shows (never the body)."""
OUTBOX_FULL = (
    "serial",
    "upn",
    "type",
    "message_id",
    "sender",
    "recipients",
    "data",
    "suppressed",
    "status",
    "error",
    "created_at",
    "done_at",
)
"""The outbox columns a dump carries (``export``/``restore``)."""


def outbox_dict(
    columns: Sequence[str], row: Sequence[Any], convert: Mapping[str, Callable[[Any], Any]]
) -> dict[str, Any]:
    """One outbox row as the backends report it (``upn`` named ``user``), with the backend's
    own conversions (JSON text, integers for booleans, timestamps)."""
    return {
        ("user" if c == "upn" else c): convert.get(c, _same)(v)
        for c, v in zip(columns, row, strict=True)
    }


def _same(value: Any) -> Any:
    return value


def tenant_key(name: str) -> str:
    """``name``, once it is known to be a tenant name: the last gate before a name becomes a state
    row, a lock file or a folder of suppressed mail. Names are checked where they enter (tenant
    folders, ``--tenant``, saved plans); this holds whatever a caller forgot."""
    if why := tenant_name_problem(name):
        raise UserError(f"tenant {name!r} {why}; nothing was written")
    return name


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def holder() -> str:
    """Who holds a lock, for the "locked by … since …" message."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()} (pid {os.getpid()})"


def schema_mismatch(where: str, found: str, understood: int) -> str:
    """The one-line refusal for tables made by another version of the reconciler."""
    try:
        version = int(found)
    except ValueError:
        version = None
    if version is None:
        advice = "it is not a reconciler state"
    elif version > understood:
        advice = "it was written by a newer reconciler: upgrade this one to use it"
    else:
        advice = "it was written by an older reconciler and this one has no upgrade from it"
    return (
        f"state {where} has schema version {found}, this reconciler understands version "
        f"{understood}; {advice} (the state was left untouched)"
    )


def redact(url: str) -> str:
    """The URL fit to print: its password (in the authority or as ``password=``) masked."""
    url = mask_password(url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable state URL>"
    netloc = parts.netloc
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() == "password" for k, _ in pairs):
            query = urlencode(
                [(k, "***" if k.lower() == "password" else v) for k, v in pairs], safe="*"
            )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_secrets(url: str) -> list[str]:
    """The password as written in the URL, raw and decoded, to scrub from server messages."""
    found = []
    if (password := userinfo_password(url)) is not None:
        found.append(password)
    try:
        parts = urlsplit(url)
        found += [v for k, v in parse_qsl(parts.query) if k.lower() == "password"]
    except ValueError:
        pass
    return sorted({s for raw in found for s in (raw, unquote(raw)) if s}, key=len, reverse=True)
