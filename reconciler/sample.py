"""``test-email``: one real message in a tenant's language and From settings, showing sample
details and no PIN (none exists outside apply), sent at once and recorded nowhere."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy

from reconciler.delivery import deliver
from reconciler.emails import TEST_MESSAGE, Sender, compose_test_message, message_id, sender_for
from reconciler.errors import UserError
from reconciler.manager import Manager
from reconciler.messages import NewMessage
from reconciler.sending import default_sender, mail_transport


@dataclass(frozen=True)
class SampleSent:
    sender: Sender
    via: str
    """The transport's description (never a password)."""


def send_sample(manager: Manager, to: str, retry_backoff: float) -> SampleSent:
    """Compose and deliver the sample of the one ``--tenant`` to ``to``; a UserError says why
    it was not delivered."""
    if len(manager.options.tenants) != 1:
        raise UserError("test-email needs exactly one --tenant")
    loaded = manager.load()
    name = manager.options.tenants[0]
    if name not in loaded.tenants:
        raise UserError(f"no tenant folder {name} under {manager.options.config}")
    tenant = loaded.tenants[name].tenant
    sender = sender_for(
        tenant["settings"], default_sender(manager.options.mail, manager.options.default_from)
    )
    mid = message_id(name, uuid.uuid4().hex, 0, to, TEST_MESSAGE)
    try:
        message = compose_test_message(
            tenant_name=name,
            tenant=tenant,
            to=to,
            sender=sender,
            message_id=mid,
            date=datetime.now(UTC),
            templates=manager.templates,
        )
    except ValueError as exc:  # the header classes refuse a malformed --to
        raise UserError(f"--to {to!r}: {exc}") from None
    sample = NewMessage(
        to, TEST_MESSAGE, mid, sender.address, [to], message.as_bytes(policy=policy.SMTP), False
    )
    with mail_transport(manager.options.mail, sender.address) as transport:
        report = deliver(
            [sample],
            transport,
            on_delivered=lambda m: None,
            on_failed=lambda m, r: None,
            backoff=retry_backoff,
        )
    if not report.delivered:
        reason = report.failed.get(mid) or report.queued_reasons.get(mid, "not delivered")
        raise UserError(f"sample not delivered to {to}: {reason}")
    return SampleSent(sender, transport.description)
