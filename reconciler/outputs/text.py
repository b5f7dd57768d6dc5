"""The terminal plan: +/~/- per change, colour only when asked for (a TTY without NO_COLOR).

Values from the configuration go through :func:`reconciler.outputs.escape.visible`: no ANSI
escape or bidi override from YAML reaches the terminal."""

from __future__ import annotations

from collections import Counter
from typing import Any

import click

from reconciler.outputs.escape import json_text, visible
from reconciler.plan import Change, Plan, TenantPlan

_SYMBOL = {"create": ("+", "green"), "update": ("~", "yellow"), "delete": ("-", "red")}


def render(plan: Plan, *, color: bool = False, **_: object) -> str:
    def style(text: str, fg: str | None = None, bold: bool = False) -> str:
        return click.style(text, fg=fg, bold=bold) if color else text

    lines: list[str] = []
    for tenant in plan.tenants:
        lines.extend(_tenant(tenant, style))
        lines.append("")
    s = plan.summary()
    lines.append(
        style(
            f"Plan: {s['settings_changes']} setting change(s), {s['user_changes']} user change(s), "
            f"{s['emails']} email(s) ({s['suppressed']} suppressed).",
            bold=True,
        )
    )
    if not plan.has_changes:
        lines.append("No changes. The configuration matches the applied state.")
    return "\n".join(lines) + "\n"


def _tenant(t: TenantPlan, style: Any) -> list[str]:
    state = f"serial {t.serial}, lineage {t.lineage}" if t.lineage else "no applied state yet"
    lines = [style(f"Tenant {visible(t.name)}", bold=True) + f" ({visible(state)})"]
    if t.missing:
        lines.append(style("  missing from the configuration: left alone", fg="yellow"))
    if t.settings_changes:
        lines.append("  Settings:")
        lines.extend(
            "    " + style("~", fg="yellow") + " " + _change(c) for c in t.settings_changes
        )
    if t.user_changes:
        lines.append(f"  Users ({len(t.user_changes)}):")
        for u in t.user_changes:
            symbol, fg = _SYMBOL[u.action]
            lines.append(f"    {style(symbol, fg=fg)} {visible(u.user)}")
            if u.action == "update":
                lines.extend(f"        {_change(c)}" for c in u.changes)
    if t.emails:
        counts = Counter(e.type for e in t.emails)
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        lines.append(f"  Emails ({len(t.emails)}: {kinds}):")
        for e in t.emails:
            flag = style(" [suppressed]", fg="red") if e.suppressed else ""
            language = (
                f" (in {visible(e.locale)}, for locale {visible(e.requested_locale)})"
                if e.falls_back
                else ""
            )
            lines.append(
                f"    {style('@', fg='cyan')} {visible(e.user)} <{visible(e.to)}> "
                f"{style(e.type, bold=True)}{flag}{language}: "
                f"{visible('; '.join(e.reasons))}"
            )
    lines.extend("  " + style("! " + visible(w), fg="yellow") for w in t.warnings)
    if not (t.has_changes or t.missing):
        lines.append("  no changes")
    return lines


def _change(c: Change) -> str:
    return f"{visible(c.path)}: {_value(c.before)} -> {_value(c.after)}"


def _value(value: Any) -> str:
    return json_text(value)
