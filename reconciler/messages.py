"""What the outbox holds: a composed message, a queued one, and how one apply's messages fared.

Plain records shared by the edges that make, keep and send them (``emails/``, ``state/``,
``delivery/`` through the flows), so that none of them imports another for its types.
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.model import MessageType


@dataclass
class NewMessage:
    """A composed message to put in the outbox, in the same transaction as the state."""

    user: str
    type: MessageType
    message_id: str
    sender: str
    recipients: list[str]
    data: bytes
    suppressed: bool


@dataclass
class QueuedMessage(NewMessage):
    """An outbox row still to deliver (``data`` holds the RFC 5322 bytes, PIN included)."""

    id: int
    tenant: str
    serial: int


@dataclass
class Wave:
    """What became of one apply's messages so far: how a rollout delivered in daily portions
    is going (``state queue``)."""

    serial: int
    written_at: str
    queued: int = 0
    """Still to send."""
    delivered: int = 0
    failed: int = 0
    """Refused for good (never retried)."""
    suppressed: int = 0
    """Kept for the operator instead of sent (``automatically_send_emails_to_users: false``)."""
    last_delivered: str | None = None
