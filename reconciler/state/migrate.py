"""``state migrate``: copy every tenant's state, outbox and history from one backend to another.

Each tenant is copied under both stores' locks (no apply can run on either side meanwhile), in
one transaction on the target, and read back to check the copy is exact. Outbox rows keep their
status, times and Message-IDs; still-queued messages keep their bodies so the next apply against
the target delivers them; history keeps its times and actors.

Nothing is lost and nothing is sent twice: replacing a tenant the target already holds keeps its
history and refuses while it has queued mail (as ``state forget`` does) unless the operator
drops it; and each tenant copied is marked migrated in the source, whose state stays as it was,
as a record: an apply, import or forget against it is refused, so its queue is never delivered a
second time from there.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from reconciler.errors import UserError
from reconciler.state.base import StateLocked, StateStore, TenantDump


@dataclass
class Migrated:
    tenants: list[str] = field(default_factory=list)
    users: int = 0
    messages: int = 0
    queued: int = 0
    history: int = 0
    replaced: list[str] = field(default_factory=list)
    """Tenants that already had state in the target (``--force``)."""
    untouched: list[str] = field(default_factory=list)
    """Tenants only the target knows: left as they were."""
    dropped: int = 0
    """Emails queued in the target for replaced tenants, dropped (``drop_queued``)."""


def migrate(
    source: StateStore,
    target: StateStore,
    *,
    only: tuple[str, ...] = (),
    force: bool = False,
    drop_queued: bool = False,
    lock_timeout: float = 0.0,
) -> Migrated:
    """Copy ``only`` (default: every tenant of ``source``) into ``target``, marking each one
    migrated in ``source``.

    Refuses (UserError) when both name the same store, when the source holds nothing to copy or
    a tenant already migrated elsewhere, when the target already holds any state unless
    ``force``, which replaces the copied tenants there (others are left alone, and the history
    of those replaced is kept), and when a tenant to replace has mail queued in the target
    unless ``drop_queued``.
    """
    names = _names(source, target, only)
    result = _plan_target(target, names, force, drop_queued)
    _check_queues(source, target, names)
    for name in sorted(names):
        try:
            with source.lock(name, lock_timeout), target.lock(name, lock_timeout):
                dump = _copy(source, target, name, result)
        except (StateLocked, UserError) as exc:
            raise UserError(
                f"{name}: {exc}; copied so far: {', '.join(result.tenants) or 'nothing'}"
            ) from None
        if dump is not None:
            _count(result, dump)
    return result


def _names(source: StateStore, target: StateStore, only: tuple[str, ...]) -> list[str]:
    """The tenants to copy: ``only``, else every tenant of ``source``; each must have state
    there and not be migrated already, and the two stores must differ."""
    if source.store_id == target.store_id:
        raise UserError(f"{target.description} is the source state itself; nothing was copied")
    known = source.tenants()
    missing = [name for name in only if name not in known]
    if missing:
        raise UserError(
            f"{', '.join(missing)}: no state in {source.description}; nothing was copied"
        )
    names = list(only) if only else known
    if not names:
        raise UserError(f"{source.description} holds no state; nothing was copied")
    gone = [f"{n} (to {to})" for n in names if (to := source.migrated_to(n)) is not None]
    if gone:
        raise UserError(
            f"already migrated from {source.description}: {', '.join(gone)}; nothing was copied"
        )
    return names


def _plan_target(target: StateStore, names: list[str], force: bool, drop_queued: bool) -> Migrated:
    """What the copy will replace and leave in ``target``, once it may: an empty target, or
    ``force`` (and ``drop_queued`` where a replaced tenant has mail queued there)."""
    existing = target.tenants()
    if existing and not force:
        raise UserError(
            f"{target.description} already holds state ({', '.join(existing)}); "
            "refusing to overwrite it (pass --force to replace the copied tenants "
            "there); nothing was copied"
        )
    result = Migrated(
        replaced=[n for n in names if n in existing],
        untouched=[n for n in existing if n not in names],
    )
    queued = {n: count for n in result.replaced if (count := target.queued_count(n))}
    if queued and not drop_queued:
        listed = ", ".join(f"{n} ({count})" for n, count in sorted(queued.items()))
        raise UserError(
            f"{target.description} still has email queued for {listed}: run apply against it "
            "to deliver them, or pass --drop-queued (they would never be sent); nothing was "
            "copied"
        )
    return result


def _check_queues(source: StateStore, target: StateStore, names: list[str]) -> None:
    """Before anything is copied: the source's queues open with the keys given, and the target
    can keep them (a PostgreSQL target seals them)."""
    queued = [name for name in names if source.queued_count(name)]
    for name in queued:
        source.ready_to_deliver(name)
    if queued:
        target.ready_to_queue()


def _copy(source: StateStore, target: StateStore, name: str, result: Migrated) -> TenantDump | None:
    """One tenant copied under both locks, read back, and marked migrated in ``source``; None
    when it was removed since it was listed."""
    dump = source.export(name)
    if dump is None:
        return None
    kept = target.history(name)
    result.dropped += target.queued_count(name)
    target.restore(dump)
    if target.export(name) != replace(dump, history=[*kept, *dump.history]):
        raise UserError(
            f"{name}: the copy in {target.description} differs from the source "
            "after writing it; do not use the target"
        )
    source.mark_migrated(name, target.description)
    return dump


def _count(result: Migrated, dump: TenantDump) -> None:
    result.tenants.append(dump.name)
    result.users += len(dump.applied.users)
    result.messages += len(dump.outbox)
    result.queued += sum(1 for m in dump.outbox if m["status"] == "queued")
    result.history += len(dump.history)
