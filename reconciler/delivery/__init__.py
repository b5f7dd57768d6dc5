"""Delivery of outbox messages: ``--mail`` URLs to transports (``url.py``), and the retrying
send loop (``base.py``)."""

from .base import (
    AuthenticationFailure,
    ConnectionFailure,
    DeliveryReport,
    InDoubt,
    OutOfTime,
    Pace,
    Pending,
    PermanentFailure,
    SetupFailure,
    TemporaryFailure,
    Throttled,
    Transport,
    deliver,
)
from .files import SuppressedFiles
from .graph import GraphTransport
from .maildir import MaildirTransport
from .smtp import SMTPTransport
from .url import graph_sender, open_transport, redact

__all__ = [
    "AuthenticationFailure",
    "ConnectionFailure",
    "DeliveryReport",
    "GraphTransport",
    "InDoubt",
    "MaildirTransport",
    "OutOfTime",
    "Pace",
    "Pending",
    "PermanentFailure",
    "SMTPTransport",
    "SetupFailure",
    "SuppressedFiles",
    "TemporaryFailure",
    "Throttled",
    "Transport",
    "deliver",
    "graph_sender",
    "open_transport",
    "redact",
]
