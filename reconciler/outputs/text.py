"""The terminal plan: +/~/- per change, colour only when asked for (a TTY without NO_COLOR).

Values from the configuration go through :func:`reconciler.outputs.escape.visible`: no ANSI
escape or bidi override from YAML reaches the terminal."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import click

from reconciler.outputs.escape import json_text, visible
from reconciler.outputs.review import to_check
from reconciler.plan import Change, Plan, TenantPlan, UserChange
from reconciler.streams import batched

_SYMBOL = {"create": ("+", "green"), "update": ("~", "yellow"), "delete": ("-", "red")}


def render(plan: Plan, *, color: bool = False, **_: object) -> str:
    return "".join(chunks(plan, color=color))


def chunks(plan: Plan, *, color: bool = False, **_: object) -> Iterator[str]:
    """The plan a thousand lines at a time: a first plan of 300,000 users is never one
    string."""
    return ("".join(batch) for batch in batched(_lines(plan, color), 1000))


def _lines(plan: Plan, color: bool) -> Iterator[str]:

    def style(text: str, fg: str | None = None, bold: bool = False) -> str:
        return click.style(text, fg=fg, bold=bold) if color else text

    for tenant in plan.tenants:
        for refusal in tenant.safety:
            yield style(f"! {visible(tenant.name)}: {visible(refusal)}", fg="red", bold=True)
            yield "\n"
    if any(tenant.safety for tenant in plan.tenants):
        yield "\n"
    for tenant in plan.tenants:
        yield from (line + "\n" for line in _tenant(tenant, style))
        yield "\n"
    s = plan.summary()
    yield (
        style(
            f"Plan: {s['settings_changes']} setting change(s), {s['user_changes']} user change(s), "
            f"{s['emails']} email(s) ({s['suppressed']} suppressed).",
            bold=True,
        )
        + "\n"
    )
    if not plan.has_changes:
        yield "No changes. The configuration matches the applied state.\n"


def _tenant(t: TenantPlan, style: Any) -> Iterator[str]:
    state = f"serial {t.serial}, lineage {t.lineage}" if t.lineage else "no applied state yet"
    yield style(f"Tenant {visible(t.name)}", bold=True) + f" ({visible(state)})"
    if t.missing:
        yield style("  missing from the configuration: left alone", fg="yellow")
    if t.settings_changes:
        yield "  Settings:"
        yield from ("    " + style("~", fg="yellow") + " " + _change(c) for c in t.settings_changes)
    if t.user_changes:
        yield f"  Users ({len(t.user_changes)}):"
        for u in t.user_changes:
            symbol, fg = _SYMBOL[u.action]
            yield f"    {style(symbol, fg=fg)} {visible(u.user)} ({visible(_outcome(u))})"
            if u.action == "update":
                yield from (f"        {_change(c)}" for c in u.changes)
            elif u.action == "create":
                yield "        " + ", ".join(
                    f"{visible(path)}: {_value(value)}" for path, value in to_check(u)
                )
    if t.emails:
        counts = Counter(e.type for e in t.emails)
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        yield f"  Emails ({len(t.emails)}: {kinds}):"
        for e in t.emails:
            flag = style(" [suppressed]", fg="red") if e.suppressed else ""
            language = (
                f" (in {visible(e.locale)}, for locale {visible(e.requested_locale)})"
                if e.falls_back
                else ""
            )
            yield (
                f"    {style('@', fg='cyan')} {visible(e.user)} <{visible(e.to)}> "
                f"{style(e.type, bold=True)}{flag}{language}: "
                f"{visible('; '.join(e.reasons))}"
            )
    yield from ("  " + style("! " + visible(w), fg="yellow") for w in t.warnings)
    if not (t.has_changes or t.missing):
        yield "  no changes"


def _outcome(u: UserChange) -> str:
    """``email: enabled``, ``emails: details-changed, pin-reset``, or why there is none
    (``no email: not licensed``); suppressed emails say so."""
    listed = f"email{'s' * (len(u.emails) > 1)}: {', '.join(u.emails)}" if u.emails else ""
    return "; ".join(part for part in (listed, u.note) if part)


def _change(c: Change) -> str:
    return f"{visible(c.path)}: {_value(c.before)} -> {_value(c.after)}"


def _value(value: Any) -> str:
    return json_text(value)
