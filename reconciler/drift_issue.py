"""One drift issue per tenant, opened, updated, reopened and closed by a scheduled job.

``reconciler drift --format markdown --detailed-exitcode`` says whether Teams moved away from
git (exit 2) or not (exit 0). The issue titled :data:`TITLE` with the label :data:`LABEL` and
the hidden drift marker is the one place that says so in the repository:

- drift and no such issue: it is created;
- drift and the issue is open: its body is the new report (an identical body is left alone);
- drift and the issue was closed: the new report, and it is reopened;
- no drift and the issue is open: the no-drift report, and it is closed;
- no drift and no open issue: nothing is touched;
- any other exit code (an error): nothing is touched, and this step fails too.

GitHub (``/repos/{owner}/{repo}/issues``, ``state: open|closed``) and GitLab
(``/projects/:id/issues``, ``state_event: reopen|close``) differ in their URLs and field names
only. Everything that talks to the forge is :mod:`reconciler.pr_comment`'s: the token sent only
to the API's own origin, listings capped in pages and bytes, answers checked before use, the
token blanked out of every message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reconciler.errors import UserError
from reconciler.model import tenant_name_problem
from reconciler.outputs.drift import MARKER
from reconciler.pr_comment import (
    Forge,
    answer_id,
    listing,
    request,
    token_blanked,
    web_link,
    with_marker,
)

TITLE = "Audio Conferencing drift: {tenant}"
LABEL = "audio-conferencing-drift"
EXIT_NO_DRIFT, EXIT_DRIFT = 0, 2


@dataclass(frozen=True)
class IssueResult:
    action: str  # created | updated | reopened | closed | unchanged | none
    number: int | None
    url: str | None
    duplicates: int = 0
    """Other issues with the same title, label and marker (left alone)."""


def title_of(tenant: str) -> str:
    problem = tenant_name_problem(tenant)
    if problem:
        raise UserError(f"--tenant {tenant!r}: {problem}")
    return TITLE.format(tenant=tenant)


def drifted(exit_code: int) -> bool:
    """Whether ``drift --detailed-exitcode`` found drift; an error is refused, so that no
    failed run ever closes (or opens) the issue."""
    if exit_code not in (EXIT_NO_DRIFT, EXIT_DRIFT):
        raise UserError(
            f"drift exited {exit_code} (an error, not a report): the drift issue is left as it is"
        )
    return exit_code == EXIT_DRIFT


@token_blanked
def sync_issue(forge: Forge, tenant: str, body: str, exit_code: int) -> IssueResult:
    """Bring the tenant's drift issue in line with one ``drift --detailed-exitcode`` run."""
    drift = drifted(exit_code)
    title = title_of(tenant)
    body = with_marker(body, forge.limit, MARKER, "report", "report")
    fields = _Fields.of(forge)
    found = _issues(forge, title, fields)
    opened = [issue for issue in found if issue.get("state") in ("open", "opened")]
    issue = next(iter(opened or found), None)
    duplicates = max(len(found) - 1, 0)
    if issue is None:
        if not drift:
            return IssueResult("none", None, None)
        method, url = forge.issue()
        labels: Any = [LABEL] if fields.github else LABEL
        created = request(forge, method, url, {"title": title, fields.text: body, "labels": labels})
        return IssueResult(
            "created", _number(forge, created, fields.number), web_link(forge, created)
        )
    number = _number(forge, issue, fields.number)
    is_open = bool(opened)
    if not drift and not is_open:
        return IssueResult("none", number, web_link(forge, issue), duplicates)
    if drift and is_open and issue.get(fields.text) == body:
        return IssueResult("unchanged", number, web_link(forge, issue), duplicates)
    action = "updated" if drift == is_open else "reopened" if drift else "closed"
    method, url = forge.issue(number)
    updated = request(forge, method, url, fields.change(body, drift, is_open))
    return IssueResult(
        action, number, web_link(forge, updated) or web_link(forge, issue), duplicates
    )


@dataclass(frozen=True)
class _Fields:
    """How an issue's fields are named on one forge: GitHub's ``body``/``number``/``state``,
    GitLab's ``description``/``iid``/``state_event``."""

    github: bool
    text: str
    number: str

    @classmethod
    def of(cls, forge: Forge) -> _Fields:
        github = forge.kind == "github"
        return cls(github, *(("body", "number") if github else ("description", "iid")))

    def change(self, body: str, drift: bool, is_open: bool) -> dict[str, Any]:
        """The update: the new report, and the state when it opens or closes the issue."""
        change: dict[str, Any] = {self.text: body}
        if drift != is_open:
            if self.github:
                change["state"] = "open" if drift else "closed"
            else:
                change["state_event"] = "reopen" if drift else "close"
        return change


def _issues(forge: Forge, title: str, fields: _Fields) -> list[Any]:
    """The tenant's drift issues, open or closed: the title, the label and the hidden marker
    (never a pull request, which GitHub lists among issues)."""
    return [
        issue
        for issue in listing(forge, forge.issues_url(LABEL), "issues")
        if issue.get("title") == title
        and MARKER in str(issue.get(fields.text) or "")
        and not (fields.github and "pull_request" in issue)
    ]


def _number(forge: Forge, answer: Any, key: str) -> int:
    """The issue's number (GitHub) or IID (GitLab), checked like a comment's id."""
    return answer_id(forge, {"id": answer.get(key)} if isinstance(answer, dict) else None)
