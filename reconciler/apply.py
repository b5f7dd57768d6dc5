"""Apply: lock, plan, confirm, commit state and outbox in one transaction, then deliver.

Nothing lost, nothing doubled: every message is composed (PIN included) and written to the
outbox in the same transaction as the new state, before anything is sent; delivery marks each
message delivered (erasing its body) once the server accepted it. A run killed at any point
leaves either the old state and no messages, or the new state and its queued messages, which the
next apply delivers first.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from pathlib import Path
from typing import Protocol

from reconciler.delivery import (
    DeliveryReport,
    Pace,
    SuppressedFiles,
    Transport,
    deliver,
    graph_sender,
    open_transport,
)
from reconciler.emails import (
    PIN_TYPES,
    Sender,
    check_templates,
    compose,
    generate_pin,
    message_id,
    parse_default_sender,
    sender_for,
)
from reconciler.errors import ConfigError, UserError
from reconciler.manager import Manager, read_saved_plan
from reconciler.model import TenantConfig
from reconciler.outputs.json import plan_to_dict
from reconciler.plan import Plan, TenantPlan, plan_tenant
from reconciler.state import (
    Commit,
    LockLost,
    NewMessage,
    QueuedMessage,
    StaleState,
    StateLocked,
    local_dir,
    printable,
    tenant_key,
)

MAILDIR_DEFAULT_FROM = "noreply@localhost"
SMTP_SCHEMES = ("smtp:", "smtp+starttls:", "smtps:")
DEFAULT_RETRY_BACKOFF = 1.0
DEFAULT_DELIVERY_TIMEOUT = 900.0
"""Seconds an apply may spend delivering; what is left stays queued for the next run."""
NEW_STATE_LIMIT = 10
"""A tenant without applied state may get at most this many emails without --allow-new-state."""


@dataclass(frozen=True)
class DeliveryLimits:
    """How delivery may go: the first retry pause (doubled at each retry), the whole apply's
    delivery budget in seconds, and the sending limits: messages per minute and per apply."""

    retry_backoff: float = DEFAULT_RETRY_BACKOFF
    timeout: float = DEFAULT_DELIVERY_TIMEOUT
    max_rate: float | None = None
    max_messages: int | None = None

    def pace(self) -> Pace:
        """The limits of one apply's delivery, starting now."""
        return Pace(deadline=time.monotonic() + self.timeout,
                    interval=60.0 / self.max_rate if self.max_rate else 0.0,
                    remaining=self.max_messages)
"""Seconds before the first retry of a temporary delivery failure (then 2x, 4x...)."""


class UI(Protocol):
    """What apply needs from its terminal."""

    def show_plan(self, plan: Plan) -> None: ...
    def confirm(self, plan: Plan) -> bool: ...
    def echo(self, message: str, err: bool = False) -> None: ...
    def progress(self, total: int, label: str) -> contextlib.AbstractContextManager[
        Callable[[object], None]]: ...


@dataclass
class Outcome:
    applied: list[tuple[str, int]] = field(default_factory=list)
    delivered: int = 0
    queued: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    suppressed: list[Path] = field(default_factory=list)
    why_queued: dict[str, str] = field(default_factory=dict)
    about: dict[str, str] = field(default_factory=dict)
    """Message id → "user type", to tell the operator which email is queued or failed."""
    held_back: dict[str, str] = field(default_factory=dict)
    """Queued message id → the sending limit or throttling that kept it for the next apply."""

    @property
    def only_limited(self) -> bool:
        """Everything not delivered was held back by a limit: a pause, not a failure."""
        return bool(self.queued) and not self.failed and set(self.queued) <= set(self.held_back)

    @property
    def ok(self) -> bool:
        return not self.queued and not self.failed


def default_sender(mail_url: str, value: str | None) -> Sender:
    """``--default-from``, required for SMTP; a Maildir gets ``noreply@localhost``."""
    if value is None:
        if mail_url.lower().startswith(SMTP_SCHEMES):
            raise UserError("--default-from (or RECONCILER_DEFAULT_FROM) is required for SMTP "
                            "delivery")
        value = MAILDIR_DEFAULT_FROM
        if mail_url.lower().startswith("graph:"):  # Graph sends as that mailbox
            try:
                value = graph_sender(mail_url)
            except ValueError as exc:
                raise UserError(f"--mail: {exc}") from None
    try:
        return parse_default_sender(value)
    except ValueError as exc:
        raise UserError(f"--default-from {value!r}: {exc}") from None


def mail_transport(mail_url: str, default_from: str) -> Transport:
    """The ``--mail`` transport; a bad URL is a one-line refusal (never showing a password)."""
    try:
        return open_transport(mail_url, default_from=default_from)
    except ValueError as exc:
        raise UserError(f"--mail: {exc}") from None


def suppressed_dir(state: str, tenant: str) -> Path:
    """Where suppressed messages are kept for the operator (see ``state.local_dir``)."""
    return local_dir(state) / "suppressed" / tenant_key(tenant)


def run_apply(manager: Manager, ui: UI, *, saved: Path | None = None,
              auto_approve: bool = False, allow_mass_disable: bool = False,
              allow_new_state: bool = False, limits: DeliveryLimits = DeliveryLimits()
              ) -> Outcome:
    """Apply: lock, plan (or re-check a saved plan), guard, commit, deliver within ``limits``."""
    options = manager.options
    sender = default_sender(options.mail, options.default_from)
    transport = mail_transport(options.mail, sender.address)
    broken = check_templates(options.templates)
    if broken:  # found now, not half-way through composing
        raise ConfigError(broken)
    outcome = Outcome()
    if saved is not None:
        shown_plan, configs, expected = read_saved_plan(saved)
        names = sorted(configs)
    else:
        loaded = manager.load(reuse_state=True)  # unchanged files: no parse, no file update
        if not allow_new_state:  # before anything is created where a wrong --state points
            known = manager.known_tenants()
            _first_contact_guard(Plan([plan_tenant(config, None)[0] for name, config
                                       in sorted(loaded.tenants.items()) if name not in known]),
                                 options.state)
        names = manager.tenant_names(loaded)
    with _locked(manager, names):
        if saved is not None:
            plan = _replan_saved(manager, configs, expected, shown_plan)
        else:
            plan = manager.plan(loaded, names)
            ui.show_plan(plan)
        if plan.has_changes:
            if saved is None and not auto_approve and not ui.confirm(plan):
                raise UserError("apply cancelled; nothing was changed")
            guarded = [t.name for t in plan.tenants if t.mass_disable]
            if guarded and not allow_mass_disable:
                raise UserError(
                    "refusing to disable more than 10% of the enabled users of "
                    f"{', '.join(guarded)}; check the configuration (a deleted users file?) or "
                    "pass --allow-mass-disable")
            if not allow_new_state:
                _first_contact_guard(plan, options.state)
        # Every tenant's messages are composed before the first commit, so a failure there
        # leaves every tenant as it was. Only then is anything sent: earlier leftovers go first
        # (the outbox is delivered in the order it was written), then this apply's messages.
        # A tenant whose folder vanished is left alone, its queue included.
        present = [t for t in plan.tenants if not t.missing]
        changes = {t.name: _change(manager, t, sender) for t in present if t.has_changes}
        pace = limits.pace()
        for tenant_plan in present:
            if tenant_plan.name in changes:
                outcome.applied.append(_commit(manager, tenant_plan, changes[tenant_plan.name]))
            _deliver(manager, tenant_plan, transport, ui, outcome, limits.retry_backoff, pace)
    return outcome


@contextlib.contextmanager
def _locked(manager: Manager, names: list[str]) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for name in sorted(names):
            try:
                stack.enter_context(manager.store.lock(name, manager.options.lock_timeout))
            except StateLocked as exc:
                raise UserError(f"{name}: {exc}") from None
        yield


def _replan_saved(manager: Manager, configs: dict[str, TenantConfig],
                  expected: dict[str, tuple[str | None, int]], shown: dict) -> Plan:
    """The saved plan, re-derived from its configs against the state it was made for."""
    tenants = []
    for name, config in sorted(configs.items()):
        applied = manager.store.load(name)
        current = (applied.lineage, applied.serial) if applied else (None, 0)
        if current != expected[name]:
            raise UserError(f"saved plan is stale: {name} was planned at serial "
                            f"{expected[name][1]} but the state is now at serial {current[1]}; "
                            "make a new plan")
        tenant_plan, _ = plan_tenant(config, applied, manager.locales())
        tenants.append(tenant_plan)
    plan = Plan(tenants)
    if plan_to_dict(plan)["tenants"] != [t for t in shown["tenants"] if t["name"] in configs]:
        raise UserError("saved plan does not match what it would apply; make a new plan")
    return plan


def _change(manager: Manager, plan: TenantPlan, default: Sender) -> Commit:
    """The tenant's write: its changed users and its composed messages (fresh PINs)."""
    config = plan.config
    assert config is not None
    lineage = plan.lineage or uuid.uuid4().hex
    return Commit(
        tenant=config.tenant,
        upserts={u.user: config.users[u.user] for u in plan.user_changes if u.action != "delete"},
        deletes=[u.user for u in plan.user_changes if u.action == "delete"],
        files=config.files,
        messages=compose_messages(manager, plan, lineage, plan.serial + 1, default),
        lineage=lineage,
        sources=config.source_files(),
    )


def _commit(manager: Manager, plan: TenantPlan, change: Commit) -> tuple[str, int]:
    """Write state, outbox and history in one transaction; the store refuses it if the state
    moved since ``plan`` was made (under our lock it cannot)."""
    try:
        return plan.name, manager.store.commit(plan.name, (plan.lineage, plan.serial), change)[1]
    except StaleState as exc:
        raise UserError(f"stale plan: {exc}") from None
    except LockLost as exc:
        raise UserError(f"lock lost: {exc}; nothing was written for {plan.name}") from None


def compose_messages(manager: Manager, plan: TenantPlan, lineage: str, serial: int,
                     default: Sender, *, preview: bool = False) -> list[NewMessage]:
    """Every planned email of a tenant as RFC 5322 bytes; a fresh PIN where the type has one."""
    config = plan.config
    assert config is not None
    settings = config.tenant["settings"]
    sender = sender_for(settings, default)
    date = datetime.now(UTC)
    before = plan.applied.users if plan.applied else {}
    messages = []
    for email in plan.emails:
        user = config.users.get(email.user) or before[email.user]
        pin = None
        if email.type in PIN_TYPES:
            pin = "•" * settings["pin_length"] if preview else generate_pin(settings["pin_length"])
        mid = message_id(plan.name, lineage, serial, email.user, email.type)
        try:
            message = compose(tenant_name=plan.name, tenant=config.tenant, user=user,
                              email_type=email.type, pin=pin, sender=sender, message_id=mid,
                              date=date, templates=manager.templates, preview=preview)
        except ValueError as exc:  # the header checks, behind validation
            raise UserError(f"{plan.name}: {email.user}: {exc}; nothing was sent") from None
        messages.append(NewMessage(email.user, email.type, mid, sender.address, [user["email"]],
                                   message.as_bytes(policy=policy.SMTP), email.suppressed))
    return messages


def _first_contact_guard(plan: Plan, state: str) -> None:
    """Refuse to email many users of a tenant the state has never seen: an empty state is more
    often a wrong ``--state``, a missing secret or a fresh disk than a real first rollout, and
    every user would get ``enabled`` with a new PIN."""
    new = {t.name: sum(not e.suppressed for e in t.emails) for t in plan.tenants
           if t.lineage is None and not t.missing}
    crowded = {name: count for name, count in new.items() if count > NEW_STATE_LIMIT}
    if crowded:
        listed = ", ".join(f"{name} ({count} emails)" for name, count in sorted(crowded.items()))
        raise UserError(
            f"no applied state for {listed} in {printable(state)}: is --state right? If these "
            "users already have Audio Conferencing, adopt the configuration without emails "
            "with `reconciler import`; to really email them all, pass --allow-new-state; "
            "nothing was written or sent")


def _deliver(manager: Manager, plan: TenantPlan, transport: Transport, ui: UI,
             outcome: Outcome, retry_backoff: float, pace: Pace) -> None:
    """Deliver the tenant's outbox. While the configuration being applied says not to email
    users, even messages queued earlier are kept for the operator instead of sent."""
    store, tenant = manager.store, plan.name
    queued = store.queued(tenant)
    if not queued:
        return
    outcome.about.update({m.message_id: f"{m.user} {m.type}" for m in queued})
    files = SuppressedFiles(suppressed_dir(manager.options.state, tenant))
    hold = plan.config is not None and not plan.config.tenant["settings"][
        "automatically_send_emails_to_users"]
    kept = [m for m in queued if m.suppressed or hold]
    to_send = [m for m in queued if not (m.suppressed or hold)]

    def delivered(message: QueuedMessage) -> None:
        store.mark_delivered(message.message_id)

    def failed(message: QueuedMessage, reason: str) -> None:
        store.mark_failed(message.message_id, reason)

    for batch, sink, label in ((kept, files, "keeping suppressed"), (to_send, transport,
                                                                      "sending")):
        if not batch:
            continue
        with ui.progress(len(batch), f"{tenant}: {label}") as step, sink:
            try:
                report: DeliveryReport = deliver(
                    batch, sink, on_delivered=delivered, on_failed=failed, progress=step,
                    backoff=retry_backoff, precondition=lambda: store.check_lock(tenant),
                    pace=pace if sink is transport else None)
            except LockLost as exc:
                raise UserError(f"lock lost: {exc}; stopped at once: what was not sent stays "
                                "queued for the next apply") from None
        outcome.delivered += len(report.delivered) if sink is transport else 0
        outcome.queued.extend(report.queued)
        outcome.why_queued.update(report.queued_reasons)
        if report.limited is not None:
            held = (report.limited, f"not attempted: {report.limited}")
            outcome.held_back.update({mid: report.limited for mid, why
                                      in report.queued_reasons.items() if why in held})
        outcome.failed.update(report.failed)
        if sink is files:
            outcome.suppressed.extend(files.path_for(m) for m in batch
                                      if m.message_id in report.delivered)
