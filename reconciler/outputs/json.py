"""The machine-readable plan (``schemas/plan.schema.json``), in a deterministic order.

Printed to a terminal as often as piped: characters a terminal would act on (ANSI escapes, bidi
overrides) are JSON ``\\u`` escapes, the same data for a parser (:func:`json_text`)."""

from __future__ import annotations

from typing import Any

from reconciler.outputs.escape import json_text
from reconciler.plan import Change, Plan, TenantPlan

FORMAT_VERSION = "1"


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "tenants": [_tenant(t) for t in plan.tenants],
        "summary": plan.summary(),
    }


def render(plan: Plan, **_: object) -> str:
    """Compact JSON (pipe it to ``jq .`` to read it): with ``indent`` the standard library
    falls back to its pure-Python encoder, which needs gigabytes for a 100k-user first plan."""
    return json_text(plan_to_dict(plan), separators=(",", ":")) + "\n"


def _tenant(t: TenantPlan) -> dict[str, Any]:
    return {
        "name": t.name,
        "state": {"lineage": t.lineage, "serial": t.serial},
        "missing_from_config": t.missing,
        "settings_changes": [_change(c) for c in t.settings_changes],
        "user_changes": [
            {"user": u.user, "action": u.action, "changes": [_change(c) for c in u.changes]}
            for u in t.user_changes
        ],
        "emails": [
            {
                "user": e.user,
                "to": e.to,
                "type": e.type,
                "reasons": list(e.reasons),
                "suppressed": e.suppressed,
                "locale": e.locale,
                "requested_locale": e.requested_locale,
            }
            for e in t.emails
        ],
        "warnings": list(t.warnings),
    }


def _change(c: Change) -> dict[str, Any]:
    return {"path": c.path, "before": c.before, "after": c.after}
