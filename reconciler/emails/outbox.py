"""A tenant plan's emails as outbox messages: what apply commits and what preview renders.

One composition for both, so a preview shows exactly the message apply would send, except for
the PIN: a preview never generates one (the mask ``••••••`` stands in its place).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from email import policy

from reconciler.emails.compose import Sender, compose, message_id, sender_for
from reconciler.emails.pins import generate_pin
from reconciler.emails.templates import PIN_TYPES, TemplateSet
from reconciler.errors import UserError
from reconciler.model import TenantConfig, UserRecord
from reconciler.plan import TenantPlan
from reconciler.state import NewMessage


def compose_messages(
    templates: TemplateSet,
    plan: TenantPlan,
    lineage: str,
    serial: int,
    default: Sender,
    *,
    preview: bool = False,
) -> Iterator[NewMessage]:
    """Every planned email of a tenant as RFC 5322 bytes, a fresh PIN where the type has one;
    composed one at a time as they are consumed (apply inserts them in batches, inside the
    transaction that removes users from the state: the applied records of removed users are
    therefore read now, before it starts)."""
    config = plan.config
    assert config is not None
    before = plan.applied.users if plan.applied else {}
    deleted = {u.user for u in plan.user_changes if u.action == "delete"}
    removed = {e.user: before[e.user] for e in plan.emails if e.user in deleted}
    return _composed(templates, plan, config, removed, lineage, serial, default, preview)


def _composed(
    templates: TemplateSet,
    plan: TenantPlan,
    config: TenantConfig,
    removed: dict[str, UserRecord],
    lineage: str,
    serial: int,
    default: Sender,
    preview: bool,
) -> Iterator[NewMessage]:
    settings = config.tenant["settings"]
    sender = sender_for(settings, default)
    date = datetime.now(UTC)
    for email in plan.emails:
        user = removed[email.user] if email.user in removed else config.users[email.user]
        pin = None
        if email.type in PIN_TYPES:
            pin = "•" * settings["pin_length"] if preview else generate_pin(settings["pin_length"])
        mid = message_id(plan.name, lineage, serial, email.user, email.type)
        try:
            message = compose(
                tenant_name=plan.name,
                tenant=config.tenant,
                user=user,
                email_type=email.type,
                pin=pin,
                sender=sender,
                message_id=mid,
                date=date,
                templates=templates,
                preview=preview,
            )
        except ValueError as exc:  # the header checks, behind validation
            raise UserError(f"{plan.name}: {email.user}: {exc}; nothing was sent") from None
        yield NewMessage(
            email.user,
            email.type,
            mid,
            sender.address,
            [user["email"]],
            message.as_bytes(policy=policy.SMTP),
            email.suppressed,
        )
