"""A tenant plan's emails as outbox messages: what apply commits and what preview renders.

One composition for both, so a preview shows exactly the message apply would send, except for
the PIN: a preview never generates one (the mask ``••••••`` stands in its place). A tenant in PIN
self-service mode has no PIN to generate, mask or store: its users get theirs from Microsoft.

Composing (templates, then the standard library's ``email`` package) is CPU-bound Python: an
apply of many emails composes them in worker processes, one per core, a chunk at a time and in
order, with a bounded number of chunks in flight so its memory stays flat.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from pathlib import Path

from reconciler.emails.compose import Sender, compose, message_id, sender_for
from reconciler.emails.pins import generate_pin
from reconciler.emails.templates import PIN_TYPES, TemplateSet
from reconciler.errors import UserError
from reconciler.messages import NewMessage
from reconciler.model import EmailType, TenantRecord, UserRecord, pin_self_service_url
from reconciler.plan import TenantPlan
from reconciler.streams import batched

PARALLEL_FROM = 1000
"""From this many emails, workers compose them (below, starting them costs more than it
saves)."""
CHUNK = 100
"""Emails a worker composes per task."""


@dataclass(frozen=True)
class _Shared:
    """What every message of one tenant's plan shares: sent with each chunk to a worker."""

    tenant_name: str
    tenant: TenantRecord
    sender: Sender
    lineage: str
    serial: int
    date: datetime
    preview: bool


_Job = tuple[str, EmailType, bool, UserRecord, str]
"""One email to compose: the user, its type, whether it is suppressed, the user's record, and
the locale folder the plan resolved for it."""


def compose_messages(
    templates: TemplateSet,
    plan: TenantPlan,
    lineage: str,
    serial: int,
    default: Sender,
    *,
    preview: bool = False,
) -> Iterator[NewMessage]:
    """Every planned email of a tenant as RFC 5322 bytes, in the plan's order, a fresh PIN
    where the type has one and the tenant is not in PIN self-service mode; composed as they
    are consumed (apply writes them in batches). The applied records of removed users are read
    now, before anything changes the state."""
    config = plan.config
    assert config is not None
    before = plan.applied.users if plan.applied else {}
    deleted = {u.user for u in plan.user_changes if u.action == "delete"}
    removed = {e.user: before[e.user] for e in plan.emails if e.user in deleted}
    shared = _Shared(
        plan.name,
        config.tenant,
        sender_for(config.tenant["settings"], default),
        lineage,
        serial,
        datetime.now(UTC),
        preview,
    )
    jobs = (
        (e.user, e.type, e.suppressed, removed.get(e.user) or config.users[e.user], e.locale)
        for e in plan.emails
    )
    workers = cores()
    if preview or workers < 2 or len(plan.emails) < PARALLEL_FROM:
        return (_compose(templates, shared, job) for job in jobs)
    return _in_workers(templates.directory, shared, jobs, workers)


def cores() -> int:
    """The cores this process may run on: one worker each."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1


def _compose(templates: TemplateSet, shared: _Shared, job: _Job) -> NewMessage:
    upn, email_type, suppressed, user, locale = job
    pin = None
    if email_type in PIN_TYPES and pin_self_service_url(shared.tenant) is None:
        length = shared.tenant["settings"]["pin_length"]
        pin = "•" * length if shared.preview else generate_pin(length)
    mid = message_id(shared.tenant_name, shared.lineage, shared.serial, upn, email_type)
    try:
        message = compose(
            tenant_name=shared.tenant_name,
            tenant=shared.tenant,
            user=user,
            email_type=email_type,
            locale=locale,
            pin=pin,
            sender=shared.sender,
            message_id=mid,
            date=shared.date,
            templates=templates,
            preview=shared.preview,
        )
    except ValueError as exc:  # the header checks, behind validation
        raise UserError(f"{shared.tenant_name}: {upn}: {exc}; nothing was sent") from None
    return NewMessage(
        upn,
        email_type,
        mid,
        shared.sender.address,
        [user["email"]],
        message.as_bytes(policy=policy.SMTP),
        suppressed,
    )


def _in_workers(
    directory: Path | None, shared: _Shared, jobs: Iterable[_Job], workers: int
) -> Iterator[NewMessage]:
    """The messages of ``jobs`` composed by ``workers`` processes, in order. Workers are
    started fresh (``spawn``: the apply may have threads, and must not share its database
    connections), each with its own copy of the templates; an error in one is raised here."""
    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(directory,),
    )
    try:
        pending: deque[Future[list[NewMessage]]] = deque()
        for chunk in batched(jobs, CHUNK):
            pending.append(pool.submit(_compose_chunk, shared, chunk))
            if len(pending) > 2 * workers:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


_templates: TemplateSet | None = None
"""A worker's templates (set once by :func:`_start_worker`)."""


def _start_worker(directory: Path | None) -> None:
    global _templates
    _templates = TemplateSet(directory)
    threading.Thread(target=_end_with, args=(os.getppid(),), daemon=True).start()


def _end_with(parent: int) -> None:
    """End this worker once its apply is gone (killed, say): nothing else would, since the
    workers keep their task queue open for each other."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def _compose_chunk(shared: _Shared, chunk: list[_Job]) -> list[NewMessage]:
    assert _templates is not None
    return [_compose(_templates, shared, job) for job in chunk]
