"""The applied state: what every backend stores, and the one interface apply talks to.

Per tenant: the applied effective configuration, a lineage id and a serial (Terraform's
contract: a saved plan is applicable only to the exact lineage and serial it was made against),
a transactional outbox of messages and a history of applies.
"""

from __future__ import annotations

import getpass
import os
import socket
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from reconciler.model import TenantRecord, UserRecord

SCHEMA_VERSION = 1


@dataclass
class Applied:
    """A tenant's last applied state."""

    lineage: str
    serial: int
    tenant: TenantRecord
    users: dict[str, UserRecord]
    files: dict[str, str] = field(default_factory=dict)
    """Content hashes of the config files this state was applied from."""


@dataclass
class NewMessage:
    """A composed message to put in the outbox, in the same transaction as the state."""

    user: str
    type: str
    message_id: str
    sender: str
    recipients: list[str]
    data: bytes
    suppressed: bool


@dataclass
class QueuedMessage:
    """An outbox row still to deliver (``data`` holds the RFC 5322 bytes, PIN included)."""

    id: int
    tenant: str
    serial: int
    user: str
    type: str
    message_id: str
    sender: str
    recipients: list[str]
    data: bytes
    suppressed: bool


@dataclass
class Commit:
    """One apply's write: the new tenant record, the users that changed, the outbox messages."""

    tenant: TenantRecord
    upserts: dict[str, UserRecord]
    deletes: list[str]
    files: dict[str, str]
    messages: list[NewMessage]
    lineage: str
    """The lineage to start when the tenant has none yet (or on ``replace``)."""
    kind: str = "apply"
    replace: bool = False
    """Start a new lineage and drop every stored user first (``import --force``)."""


class StaleState(Exception):
    """The state moved since the plan was made."""


class StateLocked(Exception):
    """Another process holds the tenant's lock."""


class StateStore(ABC):
    """A state backend. Every method is one transaction."""

    description: str

    @abstractmethod
    def tenants(self) -> list[str]: ...

    @abstractmethod
    def load(self, tenant: str) -> Applied | None: ...

    @abstractmethod
    def lock(self, tenant: str, timeout: float = 0.0) -> AbstractContextManager[None]:
        """Hold the tenant's lock; raise StateLocked ("locked by … since …") after ``timeout``."""

    @abstractmethod
    def commit(self, name: str, expected: tuple[str | None, int], change: Commit
               ) -> tuple[str, int]:
        """Write state, outbox and history atomically if the state is still at ``expected``
        (lineage, serial); return the new (lineage, serial). Raise StaleState otherwise."""

    @abstractmethod
    def queued(self, tenant: str) -> list[QueuedMessage]:
        """Messages not yet delivered, oldest first."""

    @abstractmethod
    def mark_delivered(self, message_id: str) -> None:
        """Record acceptance by the server and erase the message body (and so its PIN)."""

    @abstractmethod
    def mark_failed(self, message_id: str, reason: str) -> None:
        """Record a permanent refusal and erase the body: a PIN never lingers in the state."""

    @abstractmethod
    def history(self, tenant: str | None = None) -> list[dict[str, Any]]: ...

    @abstractmethod
    def messages(self, tenant: str) -> Iterator[dict[str, Any]]:
        """Every outbox row's metadata (never its body), for ``state show``."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def holder() -> str:
    """Who holds a lock, for the "locked by … since …" message."""
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()} (pid {os.getpid()})"


def email_counts(messages: list[NewMessage]) -> Mapping[str, int]:
    counts: dict[str, int] = {}
    for message in messages:
        counts[message.type] = counts.get(message.type, 0) + 1
    return counts
