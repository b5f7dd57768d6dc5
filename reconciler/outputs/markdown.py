"""The plan as a pull-request comment: counts first, then tables; always under GitHub's limit.

The comment starts with a hidden marker (:data:`MARKER`) so CI finds and edits the same comment
on every push (``reconciler pr-comment``). Then: one summary line, a table with one row per
tenant counting changes and emails by type, the link to the CI artifacts (JSON plan, email
previews), and per tenant its warnings, its counts and ``<details>`` tables of settings changes,
emails and user changes — open when short, folded when long.

Long tables are cut in the middle (head and tail kept, a count of what was left out between),
and halved again until the whole comment fits in ``limit`` characters. When even two rows per
table do not fit (hundreds of tenants), tenant sections are dropped from the end with a note;
the summary table always stays.

Every value from the configuration is a code span it cannot leave and every other text is
escaped (:mod:`reconciler.outputs.escape`): YAML in a pull request cannot put a live link, image,
mention or HTML into the comment.
"""

from __future__ import annotations

import urllib.parse
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TypeVar

from reconciler.model import EMAIL_TYPES
from reconciler.outputs.escape import code_span, markdown_text
from reconciler.outputs.review import to_check
from reconciler.plan import Change, Plan, PlannedEmail, TenantPlan, UserChange
from reconciler.transitions import Quoting

LIMIT = 65_000
"""Below GitHub's 65,536 characters, leaving room for a line CI may append (commit, run)."""
MARKER = "<!-- audio-conferencing-reconciler plan -->"
OPEN_ROWS = 20
"""A table with at most this many rows is shown unfolded."""
_SYMBOL = {"create": "+", "update": "~", "delete": "-"}
T = TypeVar("T")


def render(
    plan: Plan, *, limit: int = LIMIT, rows: int = 200, artifacts: str | None = None, **_: object
) -> str:
    while True:
        text = _render(plan, rows, artifacts)
        if len(text) <= limit:
            return text
        if rows <= 2:
            return _fit(plan, artifacts, limit)
        rows //= 2


def _render(plan: Plan, rows: int, artifacts: str | None) -> str:
    out = _head(plan, artifacts)
    for t in plan.tenants:
        out += ["", *_tenant(t, rows)]
    return "\n".join(out) + "\n"


def _head(plan: Plan, artifacts: str | None) -> list[str]:
    s = plan.summary()
    out = [MARKER, "## Audio Conferencing plan", ""]
    out.append(
        f"**{s['settings_changes']}** setting change(s), **{s['user_changes']}** user "
        f"change(s), **{s['emails']}** email(s), **{s['suppressed']}** suppressed."
    )
    refusals = [(t.name, r) for t in plan.tenants for r in t.safety]
    if refusals:
        out.append("")
        out += [
            f"> :no_entry: **{markdown_text(name)}**: {markdown_text(refusal)}"
            for name, refusal in refusals
        ]
    if not plan.has_changes:
        out += [
            "",
            "No changes: the configuration matches the applied state; no email will be sent.",
        ]
    if artifacts:
        out += [
            "",
            f":package: **Artifacts:** {_link('JSON plan and email previews', artifacts)}"
            " (download, then open `previews/index.html`).",
        ]
    out += [
        "",
        "| Tenant | Settings | Users | " + " | ".join(EMAIL_TYPES) + " | Suppressed |",
        "|---|---:|---:|" + "---:|" * len(EMAIL_TYPES) + "---:|",
    ]
    for t in plan.tenants:
        counts = Counter(e.type for e in t.emails)
        out.append(
            f"| {markdown_text(t.name)} | {len(t.settings_changes)} | "
            f"{len(t.user_changes)} | "
            + " | ".join(str(counts[k]) for k in EMAIL_TYPES)
            + f" | {sum(e.suppressed for e in t.emails)} |"
        )
    return out


def _fit(plan: Plan, artifacts: str | None, limit: int) -> str:
    """The head, then as many two-row tenant sections as fit, then a note for the rest."""
    text = "\n".join(_head(plan, artifacts)) + "\n"
    for index, t in enumerate(plan.tenants):
        section = "\n" + "\n".join(_tenant(t, 2)) + "\n"
        rest = len(plan.tenants) - index
        note = f"\n_{rest} more tenant(s) not shown here: see the JSON plan in the artifacts._\n"
        if len(text) + len(section) + len(note) > limit:
            text += note
            break
        text += section
    if len(text) <= limit:
        return text
    cut = "\n\n_(plan truncated: see the JSON plan in the artifacts)_\n"
    return text[: limit - len(cut)] + cut


def _tenant(t: TenantPlan, rows: int) -> list[str]:
    out = [f"### {markdown_text(t.name)}", ""]
    out += [f"> :warning: {markdown_text(w)}" for w in t.warnings]
    if t.missing or not t.has_changes:
        out.append("_No changes._" if not t.missing else "_Missing from the configuration._")
        return out
    out += [_counts(t), ""]
    if t.settings_changes:
        out += _details(
            "Settings changes",
            ["Setting", "Before", "After"],
            t.settings_changes,
            _setting_row,
            rows,
        )
    if t.emails:
        out += _details(
            f"Emails ({len(t.emails)})", ["User", "To", "Email", "Why"], t.emails, _email_row, rows
        )
    if t.user_changes:
        out += _details(
            f"User changes ({len(t.user_changes)})",
            ["", "User", "Changes", "Email"],
            t.user_changes,
            _user_row,
            rows,
        )
    return out


def _counts(t: TenantPlan) -> str:
    """``**4** email(s): 1 enabled, 3 disabled · **5** user change(s) · ...`` for one tenant."""
    counts = Counter(e.type for e in t.emails)
    by_type = ", ".join(f"{counts[k]} {k}" for k in EMAIL_TYPES if counts[k])
    parts = [f"**{len(t.emails)}** email(s)" + (f": {by_type}" if by_type else "")]
    suppressed = sum(e.suppressed for e in t.emails)
    if suppressed:
        parts.append(f"**{suppressed}** suppressed (not sent)")
    parts.append(f"**{len(t.user_changes)}** user change(s)")
    parts.append(f"**{len(t.settings_changes)}** setting change(s)")
    return " · ".join(parts)


def _setting_row(c: Change) -> list[str]:
    return [code_span(c.path), _code(c.before), _code(c.after)]


def _email_row(e: PlannedEmail) -> list[str]:
    language = (
        f" in {code_span(e.locale)}, for locale {code_span(e.requested_locale)}"
        if e.falls_back
        else ""
    )
    return [
        code_span(e.user),
        code_span(e.to),
        code_span(e.type) + (" (suppressed)" if e.suppressed else "") + language,
        "; ".join(map(_reason, e.reasons)),
    ]


def _reason(reason: str) -> str:
    """Our words as text, a value they quote (a request's text) as a code span."""
    if isinstance(reason, Quoting):
        return f"{markdown_text(reason.words)} ({code_span(reason.value)})"
    return markdown_text(reason)


def _user_row(u: UserChange) -> list[str]:
    if u.action == "update":
        changes = ", ".join(
            f"{code_span(c.path)}: {_code(c.before)} → {_code(c.after)}" for c in u.changes
        )
    elif u.action == "create":
        changes = "new: " + ", ".join(f"{code_span(k)} {_code(v)}" for k, v in to_check(u))
    else:
        changes = "removed"
    sent = ", ".join(code_span(kind) for kind in u.emails)
    note = markdown_text(u.note) if u.note else ""
    return [_SYMBOL[u.action], code_span(u.user), changes, "; ".join(filter(None, (sent, note)))]


def _details(
    title: str, header: Sequence[str], items: Sequence[T], row: Callable[[T], list[str]], rows: int
) -> list[str]:
    """A folded table of ``items``; past ``rows`` rows only the head and tail are formatted."""
    if len(items) > rows:
        head, tail = rows // 2, rows - rows // 2
        gap = len(items) - rows
        body = [
            *map(row, items[:head]),
            ["…", f"*{gap} more row(s) not shown*", *[""] * (len(header) - 2)],
            *map(row, items[len(items) - tail :]),
        ]
    else:
        body = [row(item) for item in items]
    open_ = " open" if len(items) <= OPEN_ROWS else ""
    lines = [
        f"<details{open_}><summary>{title}</summary>",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return [*lines, "", "</details>", ""]


def _link(text: str, url: str) -> str:
    """A markdown link to an http(s) URL, with characters that would end it percent-encoded;
    anything else is shown as code, never as a link."""
    if not url.lower().startswith(("https://", "http://")):
        return code_span(url)
    safe = urllib.parse.quote(url, safe=":/?#[]@!$&'*+,;=%~-._")
    return f"[{text}]({safe})"


def _code(value: object) -> str:
    """A value of a change; ``None`` (unset) as a dash."""
    return "—" if value is None else code_span(value)
