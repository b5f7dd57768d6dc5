"""The drift report in the plan's three formats: text, markdown (an issue or a run summary) and
JSON (``schemas/drift.schema.json``).

Values from a live export are untrusted text like the YAML of a pull request (a display name
is whatever someone typed in Entra): they go through :mod:`reconciler.outputs.escape` exactly as
plan values do — visible escapes on a terminal, code spans in markdown, ``\\u`` escapes in
JSON — so no export value becomes a link, mention, HTML or a terminal or CI command.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from reconciler.drift import KINDS, TITLES, Drifted, DriftReport, next_step
from reconciler.outputs.escape import code_span, json_text, markdown_text, shown, visible

FORMAT_VERSION = "1"
MARKER = "<!-- audio-conferencing-reconciler drift -->"
"""Starts the markdown report, so a scheduled job finds and updates the one drift issue."""
LIMIT = 65_000
"""Below GitHub's 65,536 characters for an issue body or comment."""
CELL = 1000
"""Characters of one value shown in a markdown cell: a longer one is cut (the JSON report has it
whole), so one huge exported value cannot push the report past :data:`LIMIT`."""


def render(report: DriftReport, fmt: str) -> str:
    if fmt == "json":
        return json_text(to_dict(report), indent=2) + "\n"
    if fmt == "markdown":
        return markdown(report)
    return "".join(text(report))


def to_dict(report: DriftReport) -> dict[str, Any]:
    counts = report.counts()
    return {
        "format_version": FORMAT_VERSION,
        "tenant": report.tenant,
        "state": {"lineage": report.state[0], "serial": report.state[1]},
        "drift": report.has_drift,
        "summary": {**counts, "live_users": report.live_users, "git_users": report.git_users},
        "findings": [_finding(f) for f in report.ordered()],
        "next_steps": {kind: next_step(kind, report.tenant) for kind in KINDS if counts[kind]},
        "not_compared": list(report.not_compared),
        "notes": list(report.notes),
    }


def _finding(f: Drifted) -> dict[str, Any]:
    return {
        "kind": f.kind,
        "subject": f.subject,
        "name": f.name,
        "field": f.field,
        "live": f.live,
        "git": f.git,
        "applied": f.applied,
        "place": f.place,
    }


def _what(f: Drifted) -> str:
    return f"{f.subject} {f.name}" + (f" {f.field}" if f.field else "")


def text(report: DriftReport) -> Iterator[str]:
    """For a terminal or a log: one line per finding, every value made visible."""
    counts = report.counts()
    yield (
        visible(f"Drift of {report.tenant} (applied serial {report.state[1]}): ")
        + _summary(report)
        + "\n"
    )
    for kind in KINDS:
        if not counts[kind]:
            continue
        yield f"\n{TITLES[kind]} ({counts[kind]}): {visible(next_step(kind, report.tenant))}\n"
        for f in report.ordered():
            if f.kind == kind:
                values = f"Teams {shown(f.live)}, git {shown(f.git)}, applied {shown(f.applied)}"
                at = f" ({visible(f.place)})" if f.place else ""
                yield f"  {visible(_what(f))}: {values}{at}\n"
    for title, lines in (("Not compared", report.not_compared), ("Notes", report.notes)):
        if lines:
            yield f"\n{title}:\n" + "".join(f"  {visible(line)}\n" for line in lines)


def _summary(report: DriftReport) -> str:
    if not report.has_drift:
        return (
            f"no drift: Teams has what git says ({report.live_users} user(s) in the export, "
            f"{report.git_users} in git)."
        )
    parts = [f"{TITLES[kind]}: {n}" for kind, n in report.counts().items() if n]
    return f"{len(report.findings)} finding(s): {'; '.join(parts)}."


def markdown(report: DriftReport, limit: int = LIMIT) -> str:
    """A markdown report under ``limit`` characters: long tables are cut in the middle with a
    count of the rows left out, halved until the whole fits."""
    rows = 500
    while True:
        body = _markdown(report, rows)
        if len(body) <= limit or rows <= 1:
            return body
        rows //= 2


def _markdown(report: DriftReport, rows: int) -> str:
    counts = report.counts()
    out = [
        MARKER,
        f"## Audio Conferencing drift: {code_span(report.tenant)}",
        "",
        markdown_text(_summary(report)),
    ]
    for kind in KINDS:
        if not counts[kind]:
            continue
        found = [f for f in report.ordered() if f.kind == kind]
        out += [
            "",
            f"### {TITLES[kind]} ({counts[kind]})",
            "",
            markdown_text(next_step(kind, report.tenant)),
            "",
        ]
        out += ["| What | Teams | git | applied | Export |", "|---|---|---|---|---|"]
        shown_rows = found
        if len(found) > rows:
            head, tail = found[: (rows + 1) // 2], found[len(found) - rows // 2 :]
            left = len(found) - len(head) - len(tail)
            out += [_row(f) for f in head]
            out.append(f"| … {left} more … | | | | |")
            shown_rows = tail
        out += [_row(f) for f in shown_rows]
    for title, lines in (("Not compared", report.not_compared), ("Notes", report.notes)):
        if lines:
            out += ["", f"### {title}", ""] + [f"- {markdown_text(line)}" for line in lines]
    return "\n".join(out) + "\n"


def _row(f: Drifted) -> str:
    cells = [_what(f), f.live, f.git, f.applied, f.place or ""]
    return (
        "| "
        + " | ".join(
            code_span(cell[:CELL] + "…" if isinstance(cell, str) and len(cell) > CELL else cell)
            if cell not in ("", None)
            else "—"
            for cell in cells
        )
        + " |"
    )
