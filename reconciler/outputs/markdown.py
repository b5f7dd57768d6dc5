"""The plan as a pull-request comment: counts first, then tables; always under GitHub's limit.

Long tables are cut in the middle (head and tail kept, a count of what was left out between),
and halved again until the whole comment fits in ``limit`` characters.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from reconciler.model import EMAIL_TYPES
from reconciler.plan import Plan, TenantPlan

LIMIT = 65_000
MARKER = "<!-- audio-conferencing-reconciler plan -->"


def render(plan: Plan, *, limit: int = LIMIT, rows: int = 200, artifacts: str | None = None,
           **_: object) -> str:
    while True:
        text = _render(plan, rows, artifacts)
        if len(text) <= limit or rows <= 2:
            return text if len(text) <= limit else text[: limit - 40] + "\n\n_(plan truncated)_\n"
        rows //= 2


def _render(plan: Plan, rows: int, artifacts: str | None) -> str:
    s = plan.summary()
    out = [MARKER, "## Audio Conferencing plan", ""]
    out.append(f"**{s['settings_changes']}** setting change(s), **{s['user_changes']}** user "
               f"change(s), **{s['emails']}** email(s), **{s['suppressed']}** suppressed.")
    out += ["", "| Tenant | Settings | Users | " + " | ".join(EMAIL_TYPES) + " | Suppressed |",
            "|---|---:|---:|" + "---:|" * len(EMAIL_TYPES) + "---:|"]
    for t in plan.tenants:
        counts = Counter(e.type for e in t.emails)
        out.append(f"| {_cell(t.name)} | {len(t.settings_changes)} | {len(t.user_changes)} | "
                   + " | ".join(str(counts[k]) for k in EMAIL_TYPES)
                   + f" | {sum(e.suppressed for e in t.emails)} |")
    if artifacts:
        out += ["", f"Artifacts (JSON plan, email previews): {artifacts}"]
    for t in plan.tenants:
        out += ["", *_tenant(t, rows)]
    return "\n".join(out) + "\n"


def _tenant(t: TenantPlan, rows: int) -> list[str]:
    out = [f"### {_cell(t.name)}", ""]
    out += [f"> :warning: {_cell(w)}" for w in t.warnings]
    if t.missing or not t.has_changes:
        out.append("_No changes._" if not t.missing else "_Missing from the configuration._")
        return out
    if t.settings_changes:
        out += _details("Settings changes", ["Setting", "Before", "After"],
                        [[c.path, _code(c.before), _code(c.after)] for c in t.settings_changes],
                        rows, open_=True)
    if t.emails:
        out += _details(f"Emails ({len(t.emails)})", ["User", "To", "Email", "Why"],
                        [[e.user, e.to, f"`{e.type}`" + (" (suppressed)" if e.suppressed else ""),
                          "; ".join(e.reasons)] for e in t.emails], rows, open_=True)
    if t.user_changes:
        out += _details(f"User changes ({len(t.user_changes)})", ["", "User", "Changes"],
                        [[{"create": "+", "update": "~", "delete": "-"}[u.action], u.user,
                          ", ".join(f"{c.path}: {_code(c.before)} → {_code(c.after)}"
                                    for c in u.changes) if u.action == "update" else u.action]
                         for u in t.user_changes], rows, open_=False)
    return out


def _details(title: str, header: Sequence[str], body: list[list[str]], rows: int,
             open_: bool) -> list[str]:
    if len(body) > rows:
        head, tail = rows // 2, rows - rows // 2
        gap = len(body) - rows
        body = [*body[:head], ["…", f"*{gap} more row(s) not shown*", *[""] * (len(header) - 2)],
                *body[-tail:]]
    lines = [f"<details{' open' if open_ else ''}><summary>{title}</summary>", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in body]
    return [*lines, "", "</details>", ""]


def _code(value: object) -> str:
    return "—" if value is None else f"`{value}`"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")
