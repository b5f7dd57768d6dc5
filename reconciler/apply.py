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
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from reconciler import planfile
from reconciler.delivery import DeliveryReport, Pace, SuppressedFiles, Transport, deliver
from reconciler.emails import Sender
from reconciler.emails.plan_messages import compose_messages
from reconciler.errors import ConfigError, UserError
from reconciler.manager import Manager
from reconciler.messages import QueuedMessage
from reconciler.plan import Plan, TenantPlan, plan_tenant
from reconciler.sending import default_sender, mail_transport, suppressed_dir
from reconciler.state import (
    Commit,
    DeliveryQueue,
    LockLost,
    SealBroken,
    StaleState,
    printable,
)
from reconciler.views import KeyedView

DEFAULT_RETRY_BACKOFF = 1.0
"""Seconds before the first retry of a temporary delivery failure (then 2x, 4x...)."""
DEFAULT_DELIVERY_TIMEOUT = 900.0
"""Seconds an apply may spend delivering; what is left stays queued for the next run."""
MARK_BATCH = 200
"""Deliveries into an idempotent sink (a Maildir, suppressed files) recorded per transaction:
a server's are recorded one by one, before the next message is tried."""
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
        return Pace(
            deadline=time.monotonic() + self.timeout,
            interval=60.0 / self.max_rate if self.max_rate else 0.0,
            remaining=self.max_messages,
        )


class UI(Protocol):
    """What apply needs from its terminal."""

    def show_plan(self, plan: Plan) -> None: ...
    def confirm(self, plan: Plan) -> bool: ...
    def echo(self, message: str, err: bool = False) -> None: ...
    def progress(
        self, total: int, label: str
    ) -> contextlib.AbstractContextManager[Callable[[object], None]]: ...


@dataclass
class Outcome:
    applied: list[tuple[str, int]] = field(default_factory=list)
    delivered: int = 0
    queued: list[str] = field(default_factory=list)
    """Messages tried and still queued (by id; ``why_queued`` says why)."""
    untried: Counter[str] = field(default_factory=Counter)
    """Why delivery stopped → how many messages it left queued without trying them."""
    failed: dict[str, str] = field(default_factory=dict)
    suppressed: list[Path] = field(default_factory=list)
    why_queued: dict[str, str] = field(default_factory=dict)
    about: dict[str, str] = field(default_factory=dict)
    """Message id → "user type", to tell the operator which email is queued or failed."""
    limits: set[str] = field(default_factory=set)
    """The sending limits or throttling that stopped a delivery: a pause, not a fault."""

    def record(self, report: DeliveryReport, untried: int) -> None:
        """What one delivery left queued (``untried`` of them never taken from the outbox) or
        failed, and which sending limit stopped it."""
        self.queued.extend(report.queued)
        self.why_queued.update(report.queued_reasons)
        if untried and report.stopped is not None:
            self.untried[report.stopped] += untried
        if report.limited is not None:
            self.limits.add(report.limited)
        self.failed.update(report.failed)

    @property
    def queued_count(self) -> int:
        return len(self.queued) + sum(self.untried.values())

    def held_back(self) -> Counter[str]:
        """Sending limit → emails it kept for the next apply (tried and throttled, or untried)."""
        held = Counter({why: n for why, n in self.untried.items() if why in self.limits})
        held.update(why for why in self.why_queued.values() if why in self.limits)
        return held

    @property
    def only_limited(self) -> bool:
        """Everything not delivered was held back by a limit: a pause, not a failure."""
        return (
            self.queued_count > 0
            and not self.failed
            and sum(self.held_back().values()) == self.queued_count
        )

    @property
    def ok(self) -> bool:
        return not self.queued_count and not self.failed


def run_apply(
    manager: Manager,
    ui: UI,
    *,
    saved: Path | None = None,
    auto_approve: bool = False,
    allow_mass_disable: bool = False,
    allow_mass_email: bool = False,
    allow_new_state: bool = False,
    limits: DeliveryLimits = DeliveryLimits(),
) -> Outcome:
    """Apply: lock, plan (or re-check a saved plan), guard, commit, deliver within ``limits``."""
    options = manager.options
    sender = default_sender(options.mail, options.default_from)
    transport = mail_transport(options.mail, sender.address)
    source = _saved(manager, saved) if saved else _live(manager)
    # Before the lock creates anything where a wrong --state points.
    if not allow_new_state:
        _first_contact_guard(source.first.emails, options.state)
    _check_templates(manager, source.first.kinds)
    if source.first.kinds:
        manager.store.ready_to_queue()
    for name in source.names:
        manager.store.ready_to_deliver(name)
    with manager.locked(source.names):
        plan = source.plan()
        _check_templates(manager, plan.email_kinds() - source.first.kinds)
        if plan.email_kinds():
            manager.store.ready_to_queue()
        if source.reviewed_here:
            ui.show_plan(plan)
        if plan.has_changes:
            if source.reviewed_here and not auto_approve and not ui.confirm(plan):
                raise UserError("apply cancelled; nothing was changed")
            plan.check_safe(
                allow_mass_disable=allow_mass_disable, allow_mass_email=allow_mass_email
            )
            if not allow_new_state:
                _first_contact_guard(_FirstContact.of(plan).emails, options.state)
        return _commit_and_deliver(manager, plan, sender, transport, ui, limits)


def _check_templates(manager: Manager, emails: Collection[tuple[str, str]]) -> None:
    """Refuse the apply over a template that cannot render an email it will send (or over a
    missing templates folder): found before anything is committed or sent, not half-way
    through composing. Only those emails' templates are rendered, so an apply that sends
    nothing renders nothing; ``validate`` checks every one."""
    folder = manager.options.templates
    if emails or (folder is not None and not folder.is_dir()):
        broken = manager.templates.check(emails)
        if broken:
            raise ConfigError(broken)


@dataclass(frozen=True)
class _Source:
    """Where the plan comes from: the tenants to lock, and the plan to make under the lock."""

    names: list[str]
    plan: Callable[[], Plan]
    reviewed_here: bool
    """A live plan is shown and confirmed now; a saved plan was reviewed when it was made."""
    first: _FirstContact


@dataclass(frozen=True)
class _FirstContact:
    """What the tenants without applied state would send, from plans made before any lock: the
    first-contact guard and their templates are checked before the lock creates a state. Only
    this summary is kept, so a first apply of 300,000 users never holds two plans of them."""

    emails: dict[str, int]
    """Tenant → emails it would send (suppressed ones aside)."""
    kinds: set[tuple[str, str]]
    """``(locale, type)`` of every email they would write."""

    @classmethod
    def of(cls, plan: Plan) -> _FirstContact:
        new = [t for t in plan.tenants if t.lineage is None and not t.missing]
        return cls(
            {t.name: sum(not e.suppressed for e in t.emails) for t in new},
            {(e.locale, e.type) for t in new for e in t.emails},
        )


def _saved(manager: Manager, path: Path) -> _Source:
    saved = planfile.read(path)
    saved.check_files(manager.options.config)
    first = _FirstContact.of(
        Plan(
            [
                plan_tenant(config, None, manager.locales())[0]
                for name, config in sorted(saved.configs.items())
                if saved.basis[name].lineage is None
            ]
        )
    )
    return _Source(
        sorted(saved.configs),
        lambda: saved.replay(
            manager.store.load, manager.history_counts(saved.configs), manager.locales()
        ),
        False,
        first,
    )


def _live(manager: Manager) -> _Source:
    loaded = manager.load(reuse_state=True)  # unchanged files: no parse, no file update
    names, known = manager.tenant_names(loaded), manager.known_tenants()
    first = _FirstContact.of(
        Plan(
            [
                plan_tenant(config, None, manager.locales())[0]
                for name, config in sorted(loaded.tenants.items())
                if name not in known
            ]
        )
    )
    return _Source(names, lambda: manager.plan(loaded, names), True, first)


def _commit_and_deliver(
    manager: Manager,
    plan: Plan,
    sender: Sender,
    transport: Transport,
    ui: UI,
    limits: DeliveryLimits,
) -> Outcome:
    """Commit every tenant, then deliver. Each tenant's messages are composed a batch at a time
    inside its commit's transaction, so a failure while composing rolls that tenant back, and
    nothing is sent before every commit is done. Then earlier leftovers go first (the outbox is
    delivered in the order it was written), then this apply's messages. A tenant whose folder
    vanished is left alone, its queue included."""
    present = [t for t in plan.tenants if not t.missing]
    outcome = Outcome()
    for tenant_plan in present:
        if tenant_plan.has_changes:
            try:
                outcome.applied.append(_commit(manager, tenant_plan, sender))
            except UserError as exc:
                if outcome.applied:
                    done = ", ".join(
                        f"{name} (serial {serial})" for name, serial in outcome.applied
                    )
                    raise UserError(
                        f"{exc}; already applied: {done}, their emails queued for the next apply"
                    ) from None
                raise
    pace = limits.pace()
    for tenant_plan in present:
        kept = suppressed_dir(manager.options.state, tenant_plan.name)
        _deliver(
            manager.store, kept, tenant_plan, transport, ui, outcome, limits.retry_backoff, pace
        )
    return outcome


def _commit(manager: Manager, plan: TenantPlan, default: Sender) -> tuple[str, int]:
    """Write the tenant's changed users, its messages (composed now, fresh PINs) and a history
    row in one transaction; the store refuses it if the state moved since ``plan`` was made
    (under our lock it cannot)."""
    config = plan.config
    assert config is not None
    lineage = plan.lineage or uuid.uuid4().hex
    change = Commit(
        tenant=config.tenant,
        upserts=KeyedView(
            {u.user for u in plan.user_changes if u.action != "delete"}, config.users.__getitem__
        ),
        deletes=[u.user for u in plan.user_changes if u.action == "delete"],
        files=config.files,
        messages=compose_messages(manager.templates, plan, lineage, plan.serial + 1, default),
        lineage=lineage,
        sources=config.source_files(),
    )
    try:
        return plan.name, manager.store.commit(plan.name, (plan.lineage, plan.serial), change)[1]
    except StaleState as exc:
        raise UserError(f"stale plan: {exc}") from None
    except LockLost as exc:
        raise UserError(f"lock lost: {exc}; nothing was written for {plan.name}") from None


def _first_contact_guard(new: Mapping[str, int], state: str) -> None:
    """Refuse to email many users of a tenant the state has never seen (``new``: tenant →
    emails): an empty state is more often a wrong ``--state``, a missing secret or a fresh disk
    than a real first rollout, and every user would get ``enabled`` with a new PIN."""
    crowded = {name: count for name, count in new.items() if count > NEW_STATE_LIMIT}
    if crowded:
        listed = ", ".join(f"{name} ({count} emails)" for name, count in sorted(crowded.items()))
        raise UserError(
            f"no applied state for {listed} in {printable(state)}: is --state right? If these "
            "users already have Audio Conferencing, adopt the configuration without emails "
            "with `reconciler import`; to really email them all, pass --allow-new-state; "
            "nothing was written or sent"
        )


def _deliver(
    store: DeliveryQueue,
    kept: Path,
    plan: TenantPlan,
    transport: Transport,
    ui: UI,
    outcome: Outcome,
    retry_backoff: float,
    pace: Pace,
) -> None:
    """Deliver the tenant's outbox, streamed from the state a page at a time. While the
    configuration being applied says not to email users, even messages queued earlier are kept
    for the operator (in ``kept``) instead of sent."""
    tenant = plan.name
    hold = (
        plan.config is not None
        and not plan.config.tenant["settings"]["automatically_send_emails_to_users"]
    )

    def send(
        suppressed: bool | None,
        sink: Transport,
        label: str,
        pace: Pace | None,
        on_delivered: Callable[[QueuedMessage], None] = lambda m: None,
    ) -> int:
        total = store.queued_count(tenant, suppressed=suppressed)
        if not total:
            return 0

        unreadable: list[str] = []

        def seen(messages: Iterator[QueuedMessage]) -> Iterator[QueuedMessage]:
            try:
                for m in messages:  # kept only while not delivered: the run's memory stays flat
                    outcome.about[m.message_id] = f"{m.user} {m.type}"
                    yield m
            except SealBroken as exc:  # stop there; what came before is recorded as usual
                unreadable.append(str(exc))

        unrecorded: list[str] = []

        def record() -> None:
            store.mark_delivered(*unrecorded)
            unrecorded.clear()

        def delivered(m: QueuedMessage) -> None:
            unrecorded.append(m.message_id)
            if not sink.idempotent or len(unrecorded) >= MARK_BATCH:
                record()
            del outcome.about[m.message_id]
            on_delivered(m)

        with ui.progress(total, f"{tenant}: {label}") as step, sink:
            try:
                report = deliver(
                    seen(store.queued(tenant, suppressed=suppressed)),
                    sink,
                    on_delivered=delivered,
                    on_failed=lambda m, why: store.mark_failed(m.message_id, why),
                    progress=step,
                    backoff=retry_backoff,
                    precondition=lambda: store.check_lock(tenant),
                    pace=pace,
                )
            except LockLost as exc:
                raise UserError(
                    f"lock lost: {exc}; stopped at once: what was not sent stays "
                    "queued for the next apply"
                ) from None
            finally:
                if unrecorded:  # an idempotent sink's: sent again, they would not be doubled
                    with contextlib.suppress(UserError):
                        record()
        tried = report.delivered + len(report.queued) + len(report.failed)
        outcome.record(report, max(total - tried, 0))
        if unreadable:
            outcome.untried[unreadable[0]] += max(total - tried, 0)
        return report.delivered

    files = SuppressedFiles(kept)
    send(
        None if hold else True,
        files,
        "keeping suppressed",
        None,
        lambda m: outcome.suppressed.append(files.path_for(m)),
    )
    if not hold:
        outcome.delivered += send(False, transport, "sending", pace)
