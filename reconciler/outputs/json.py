"""The machine-readable plan (``schemas/plan.schema.json``), in a deterministic order.

Printed to a terminal as often as piped: characters a terminal would act on (ANSI escapes, bidi
overrides) are JSON ``\\u`` escapes, the same data for a parser (:func:`json_text`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from reconciler.outputs.escape import json_text
from reconciler.plan import Change, Plan, PlannedEmail, TenantPlan, UserChange
from reconciler.streams import batched

FORMAT_VERSION = "1"
BATCH = 1000
"""Users or emails encoded at a time by :func:`chunks`."""
T = TypeVar("T")


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "tenants": [_tenant(t) for t in plan.tenants],
        "summary": plan.summary(),
    }


def render(plan: Plan, **_: object) -> str:
    return "".join(chunks(plan))


def chunks(plan: Plan, **_: object) -> Iterator[str]:
    """The plan as :func:`plan_to_dict` has it, in compact JSON (pipe it to ``jq .`` to read
    it), written a batch of users at a time: a 300,000-user first plan never exists as one
    string or one dict. (With ``indent`` the standard library would fall back to its
    pure-Python encoder.)"""
    yield f'{{"format_version":{_json(FORMAT_VERSION)},"tenants":['
    for number, tenant in enumerate(plan.tenants):
        yield "," * bool(number)
        yield from _tenant_chunks(tenant)
    yield f'],"summary":{_json(plan.summary())}}}\n'


def array(items: Iterable[T], encode: Callable[[T], Any]) -> Iterator[str]:
    """A JSON array of ``encode(item)`` for each item, :data:`BATCH` items per chunk."""
    yield "["
    for number, group in enumerate(batched(items, BATCH)):
        yield "," * bool(number) + _json([encode(item) for item in group])[1:-1]
    yield "]"


def _json(value: Any) -> str:
    return json_text(value, separators=(",", ":"))


def _tenant_chunks(t: TenantPlan) -> Iterator[str]:
    yield _json(_head(t))[:-1] + ',"user_changes":'
    yield from array(t.user_changes, _user_change)
    yield ',"emails":'
    yield from array(t.emails, _email)
    yield f',"warnings":{_json(_warnings(t))}}}'


def _tenant(t: TenantPlan) -> dict[str, Any]:
    return {
        **_head(t),
        "user_changes": [_user_change(u) for u in t.user_changes],
        "emails": [_email(e) for e in t.emails],
        "warnings": _warnings(t),
    }


def _head(t: TenantPlan) -> dict[str, Any]:
    return {
        "name": t.name,
        "state": {"lineage": t.lineage, "serial": t.serial},
        "missing_from_config": t.missing,
        "mass_disable": t.mass_disable,
        "mass_email": t.mass_email,
        **({"meeting_migration_users": t.meeting_migration} if t.meeting_migration else {}),
        "settings_changes": [_change(c) for c in t.settings_changes],
    }


def _warnings(t: TenantPlan) -> list[str]:
    """What apply refuses (:attr:`TenantPlan.safety`) first, then the other warnings."""
    return [*t.safety, *t.warnings]


def _user_change(u: UserChange) -> dict[str, Any]:
    return {
        "user": u.user,
        "action": u.action,
        "changes": [_change(c) for c in u.changes],
        "emails": list(u.emails),
        "note": u.note,
    }


def _email(e: PlannedEmail) -> dict[str, Any]:
    return {
        "user": e.user,
        "to": e.to,
        "type": e.type,
        "reasons": list(e.reasons),
        "suppressed": e.suppressed,
        "locale": e.locale,
        "requested_locale": e.requested_locale,
    }


def _change(c: Change) -> dict[str, Any]:
    return {"path": c.path, "before": c.before, "after": c.after}
