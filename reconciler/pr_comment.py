"""One plan comment per pull request, updated in place on every push.

The markdown plan starts with a hidden marker (:data:`reconciler.outputs.markdown.MARKER`). On
each run the comment carrying it is looked up (every page of the conversation) and edited; only
when none exists is a new one created, so a pull request never collects a pile of stale plans.

GitHub (issue comments of a pull request) and GitLab (notes of a merge request) differ only in
their URLs and how the token is sent; the find-or-update logic is shared. Azure DevOps keeps
comments in threads: the plan is the first comment of the thread that carries the marker
(updated in place, never a second thread), and a pull request status ``reconciler/plan`` says
whether the plan succeeded, for a branch policy to require. Only the standard
library is used: ``urllib`` with a timeout, JSON in and out. The token is sent only to the API's
own origin (scheme, host and port): a pagination link or an HTTP redirect pointing anywhere else
is refused, since urllib would otherwise forward the token's header to it.

The forge's replies are not trusted either: the listing stops at :data:`MAX_PAGES` pages and
:data:`MAX_ANSWER_BYTES` bytes (a ``next`` link that never ends is refused, not followed
forever), a comment's address is reported only when it is an http(s) URL, and the token is
blanked out of every message, whatever the forge echoed back.
"""

from __future__ import annotations

import functools
import http.client
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from reconciler import __version__
from reconciler.errors import UserError
from reconciler.outputs.markdown import MARKER
from reconciler.redaction import scrub

if TYPE_CHECKING:
    from reconciler.azure_devops import AzureDevOps

GITHUB_LIMIT = 65_536
"""GitHub refuses comment bodies longer than this (characters)."""
GITLAB_LIMIT = 1_000_000
TIMEOUT = 30.0
PER_PAGE = 100
MAX_PAGES = 100
"""Pages of comments read at most (10,000 comments), however many ``next`` links follow."""
MAX_ANSWER_BYTES = 64 * 1024 * 1024
"""Bytes read at most from one answer, and from all the pages of the listing together."""
ERROR_BYTES = 64 * 1024
"""Bytes of an error answer read for its message."""

_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


@dataclass(frozen=True)
class Forge:
    """Where one pull/merge request's comments live and how to authenticate there."""

    kind: str  # github | gitlab
    api_url: str
    project: str
    """``owner/name`` on GitHub; the numeric id or ``group/project`` path on GitLab."""
    number: int
    """Pull request number (GitHub) or merge request IID (GitLab); 0 for the repository's
    issues (:mod:`reconciler.drift_issue`)."""
    token: str
    permission: str = "pull-requests"
    """What a GitHub token needs written (``permissions: <this>: write``), for a refusal."""

    @property
    def limit(self) -> int:
        return GITHUB_LIMIT if self.kind == "github" else GITLAB_LIMIT

    @property
    def name(self) -> str:
        return "GitHub" if self.kind == "github" else "GitLab"

    def list_url(self) -> str:
        if self.kind == "github":
            return (
                f"{self._base()}/repos/{self.project}/issues/{self.number}/comments"
                f"?per_page={PER_PAGE}"
            )
        return (
            f"{self._base()}/projects/{self._project_id()}/merge_requests/{self.number}"
            f"/notes?per_page={PER_PAGE}&sort=asc&order_by=created_at"
        )

    def create_url(self) -> str:
        if self.kind == "github":
            return f"{self._base()}/repos/{self.project}/issues/{self.number}/comments"
        return f"{self._base()}/projects/{self._project_id()}/merge_requests/{self.number}/notes"

    def update(self, comment_id: int) -> tuple[str, str]:
        """``(method, url)`` that edits one comment."""
        if self.kind == "github":
            return "PATCH", f"{self._base()}/repos/{self.project}/issues/comments/{comment_id}"
        return "PUT", (
            f"{self._base()}/projects/{self._project_id()}/merge_requests/"
            f"{self.number}/notes/{comment_id}"
        )

    def issues_url(self, label: str) -> str:
        """The repository's issues carrying ``label``, open and closed, oldest first."""
        label = urllib.parse.quote(label, safe="")
        if self.kind == "github":
            return (
                f"{self._base()}/repos/{self.project}/issues?state=all&labels={label}"
                f"&sort=created&direction=asc&per_page={PER_PAGE}"
            )
        return (
            f"{self._base()}/projects/{self._project_id()}/issues?labels={label}"
            f"&order_by=created_at&sort=asc&per_page={PER_PAGE}"
        )

    def issue(self, number: int | None = None) -> tuple[str, str]:
        """``(method, url)`` that creates an issue, or edits issue ``number`` (GitLab: IID)."""
        if self.kind == "github":
            tail = "" if number is None else f"/{number}"
            return ("POST" if number is None else "PATCH"), (
                f"{self._base()}/repos/{self.project}/issues{tail}"
            )
        tail = "" if number is None else f"/{number}"
        return ("POST" if number is None else "PUT"), (
            f"{self._base()}/projects/{self._project_id()}/issues{tail}"
        )

    def headers(self) -> dict[str, str]:
        common = {
            "User-Agent": f"audio-conferencing-reconciler/{__version__}",
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
        if self.kind == "github":
            return {
                **common,
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
                "Authorization": f"Bearer {self.token}",
            }
        return {**common, "PRIVATE-TOKEN": self.token}

    def _base(self) -> str:
        return self.api_url.rstrip("/")

    def _project_id(self) -> str:
        return urllib.parse.quote(self.project, safe="")


_Target = TypeVar("_Target", bound="Forge | AzureDevOps")
_P = ParamSpec("_P")
_R = TypeVar("_R")


def token_blanked(
    operation: Callable[Concatenate[_Target, _P], _R],
) -> Callable[Concatenate[_Target, _P], _R]:
    """``operation`` whose refusals never show the token: a forge may echo it (an error naming
    the credential it refused, a link carrying it), and the message goes to a CI log."""

    @functools.wraps(operation)
    def run(target: _Target, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return operation(target, *args, **kwargs)
        except UserError as exc:
            raise UserError(scrub(str(exc), [target.token])) from None

    return run


def forge_from_env(
    kind: str | None = None,
    *,
    api_url: str | None = None,
    project: str | None = None,
    number: int | None = None,
    token: str | None = None,
    env: Mapping[str, str] = os.environ,
    issues: bool = False,
) -> Forge:
    """A :class:`Forge` from explicit values, completed from the CI's environment.

    GitHub Actions: ``GITHUB_API_URL``, ``GITHUB_REPOSITORY``, ``GITHUB_TOKEN`` (passed to the
    step) and the pull request number from the event payload (``GITHUB_EVENT_PATH``).
    GitLab CI: ``CI_API_V4_URL``, ``CI_PROJECT_ID``, ``CI_MERGE_REQUEST_IID`` and ``GITLAB_TOKEN``
    (a project access token with the ``api`` scope; the job token cannot write notes).
    With ``issues``, the repository's issues: no pull request number, and a GitHub token
    needs ``issues: write``.
    """
    permission = "issues" if issues else "pull-requests"
    kind = kind or ("gitlab" if env.get("GITLAB_CI") else "github")
    if kind not in _FROM_ENV:
        raise UserError(f"unknown platform {kind!r}: use github or gitlab")
    found = _FROM_ENV[kind](env, permission, number or issues)
    api_url = api_url or found.api_url
    project, token = project or found.project, token or found.token
    number = 0 if issues else number or found.number
    missing = [
        hint
        for hint, value in zip(found.hints, (project, number, token), strict=True)
        if not value and not (issues and value == 0)
    ]
    if missing:
        what = "the drift issue" if issues else "the plan comment"
        raise UserError(f"cannot post {what}: set {', '.join(missing)}")
    assert project is not None and number is not None and token is not None
    if not api_url.startswith(("https://", "http://")):
        raise UserError(f"API URL {api_url!r} must start with https://")
    return Forge(kind, api_url, project, number, token, permission)


@dataclass(frozen=True)
class _CIValues:
    """What a CI's environment says of the forge, and where each missing value would come from."""

    api_url: str
    project: str | None
    number: int | None
    token: str | None
    hints: tuple[str, str, str]
    """How to give the project, the number and the token."""


def _github_env(env: Mapping[str, str], permission: str, known: object) -> _CIValues:
    """``known``: the number is given (or not needed): the event payload is not read."""
    return _CIValues(
        env.get("GITHUB_API_URL") or "https://api.github.com",
        env.get("GITHUB_REPOSITORY"),
        None if known else _github_event_number(env.get("GITHUB_EVENT_PATH")),
        env.get("GITHUB_TOKEN"),
        (
            "--repo or GITHUB_REPOSITORY",
            "--number or a pull_request event",
            "GITHUB_TOKEN (pass the workflow's token to the step: env: GITHUB_TOKEN: "
            f"${{{{ github.token }}}}; it needs {permission}: write)",
        ),
    )


def _gitlab_env(env: Mapping[str, str], permission: str, known: object) -> _CIValues:
    iid = env.get("CI_MERGE_REQUEST_IID")
    return _CIValues(
        env.get("CI_API_V4_URL") or "https://gitlab.com/api/v4",
        env.get("CI_PROJECT_ID"),
        int(iid) if not known and iid and iid.isascii() and iid.isdigit() else None,
        env.get("GITLAB_TOKEN"),
        (
            "--repo or CI_PROJECT_ID",
            "--number or CI_MERGE_REQUEST_IID (a merge request pipeline)",
            "GITLAB_TOKEN (a masked CI/CD variable holding a project access token with the api "
            f"scope; the job token cannot write {'issues' if permission == 'issues' else 'notes'})",
        ),
    )


_FROM_ENV: dict[str, Callable[[Mapping[str, str], str, object], _CIValues]] = {
    "github": _github_env,
    "gitlab": _gitlab_env,
}


def _github_event_number(path: str | None) -> int | None:
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            event = json.load(handle)
    except (OSError, ValueError):
        return None
    number = (event.get("pull_request") or {}).get("number") or event.get("number")
    return number if isinstance(number, int) else None


@dataclass(frozen=True)
class Result:
    action: str  # created | updated | unchanged
    comment_id: int
    url: str | None
    duplicates: int = 0
    """Other comments carrying the marker (left alone; the oldest one is kept up to date)."""


def with_marker(
    body: str, limit: int, marker: str = MARKER, what: str = "comment", full: str = "plan"
) -> str:
    """``body`` starting with ``marker`` and cut to ``limit`` characters with a visible note:
    the ``what`` is truncated, the full ``full`` is in the artifacts."""
    if marker not in body:
        body = f"{marker}\n{body}"
    if len(body) > limit:
        note = f"\n\n_({what} truncated: the full {full} is in the artifacts)_\n"
        kept = body[: limit - len(note)]
        # Whole lines only: a line cut inside a code span would show the rest of it as markdown.
        body = kept[: kept.rfind("\n")] if "\n" in kept else kept
        body += note
    return body


@token_blanked
def upsert_comment(forge: Forge, body: str) -> Result:
    """Update the comment holding the marker, or create it; return what was done."""
    body = with_marker(body, forge.limit)
    found = [
        c
        for c in listing(forge, forge.list_url(), "comments")
        if MARKER in str(c.get("body") or "")
    ]
    if not found:
        created = request(forge, "POST", forge.create_url(), {"body": body})
        return Result("created", answer_id(forge, created), web_link(forge, created))
    first = found[0]
    first_id = answer_id(forge, first)
    if first.get("body") == body:
        return Result("unchanged", first_id, web_link(forge, first), len(found) - 1)
    method, url = forge.update(first_id)
    updated = request(forge, method, url, {"body": body})
    return Result(
        "updated", first_id, web_link(forge, updated) or web_link(forge, first), len(found) - 1
    )


def web_link(forge: Forge, answer: Any) -> str | None:
    """The comment's web address, if the forge gives an http(s) URL (a ``javascript:`` link or
    any other text is not reported), its token blanked; printed, it still goes through
    :func:`reconciler.outputs.escape.visible`."""
    url = (answer.get("html_url") or answer.get("web_url")) if isinstance(answer, dict) else None
    if not isinstance(url, str) or not url.lower().startswith(("https://", "http://")):
        return None
    return scrub(url, [forge.token])


def answer_id(forge: Forge | AzureDevOps, answer: Any) -> int:
    """The ``id`` of a comment or thread in a forge's answer; anything else is a one-line
    refusal, not a traceback quoting the reply."""
    value = answer.get("id") if isinstance(answer, dict) else None
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{forge.name} API: unexpected answer (no numeric id)")
    return value


def listing(forge: Forge, first: str, what: str) -> Iterator[dict[str, Any]]:
    """Every item of a listing (``what``: comments, issues), page after page from ``first``,
    following ``Link: rel="next"`` for at most :data:`MAX_PAGES` pages and
    :data:`MAX_ANSWER_BYTES` bytes in all."""
    url: str | None = first
    origin = _origin(forge.api_url)
    seen: set[str] = set()
    budget = MAX_ANSWER_BYTES
    while url and url not in seen:
        if len(seen) == MAX_PAGES:
            raise UserError(
                f"{forge.name} API: more than {MAX_PAGES} pages of {what}; stopped reading, "
                "nothing was posted"
            )
        seen.add(url)
        raw, headers = _fetch(forge, "GET", url, None, budget)
        budget -= len(raw)
        page = _json(forge, "GET", url, raw)
        if not isinstance(page, list):
            raise UserError(f"{forge.name} API: unexpected answer listing {what} at {url}")
        yield from (c for c in page if isinstance(c, dict))
        match = _NEXT.search(headers.get("Link", "") or "")
        url = match.group(1) if match else None
        if url is not None and _origin(url) != origin:
            # Never send the token to another host, whatever a response says.
            raise UserError(f"{forge.name} API: pagination link to another host ({url}) refused")


def _origin(url: str) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, parts.netloc


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only within the request's origin."""

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        target = urllib.parse.urljoin(req.full_url, newurl)
        if _origin(target) != _origin(req.full_url):
            raise UserError(
                f"API redirect from {_path(req.full_url)} to another host "
                f"({_origin(target)[1] or target}) refused: the token is only sent "
                "to the API's own host"
            )
        return super().redirect_request(req, fp, code, msg, headers, target)


_OPENER = urllib.request.build_opener(_SameOriginRedirects())


def request(
    forge: Forge | AzureDevOps, method: str, url: str, payload: Mapping[str, Any] | None
) -> Any:
    """One API request with the forge's token, its JSON answer read within
    :data:`MAX_ANSWER_BYTES`; any failure is a one-line UserError with the token blanked.
    Shared with ``drift_issue``."""
    raw, _ = _fetch(forge, method, url, payload, MAX_ANSWER_BYTES)
    return _json(forge, method, url, raw)


def _fetch(
    forge: Forge | AzureDevOps,
    method: str,
    url: str,
    payload: Mapping[str, Any] | None,
    limit: int,
) -> tuple[bytes, Any]:
    """The body and headers of the answer, refused past ``limit`` bytes."""
    data = json.dumps(payload).encode("utf-8") if payload is not None else None
    outgoing = urllib.request.Request(url, data=data, method=method, headers=forge.headers())
    try:
        with _OPENER.open(outgoing, timeout=TIMEOUT) as response:
            raw = response.read(limit + 1)
            headers = response.headers
    except urllib.error.HTTPError as exc:
        raise UserError(_http_error(forge, method, url, exc)) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(f"{forge.name} API unreachable ({method} {_path(url)}): {reason}") from None
    if len(raw) > limit:
        raise UserError(
            f"{forge.name} API: more than {MAX_ANSWER_BYTES // 2**20} MiB of answers "
            f"({method} {_path(url)}); stopped reading, nothing more was sent"
        )
    return raw, headers


def _json(forge: Forge | AzureDevOps, method: str, url: str, raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8")) if raw else {}
    except ValueError:
        raise UserError(f"{forge.name} API: answer to {method} {_path(url)} is not JSON") from None


def _http_error(
    forge: Forge | AzureDevOps, method: str, url: str, exc: urllib.error.HTTPError
) -> str:
    try:
        detail = json.loads(exc.read(ERROR_BYTES).decode("utf-8")).get("message", "")
    except (ValueError, AttributeError, OSError, http.client.HTTPException):
        detail = ""
    said = " ".join(str(detail or exc.reason).split())[:200]  # one line, whatever the server
    message = f"{forge.name} API: {exc.code} {said} ({method} {_path(url)})"
    if exc.code in (401, 403, 404):
        if isinstance(forge, Forge) and forge.kind == "github":
            message += f"; the workflow needs `permissions: {forge.permission}: write`" + (
                " (pull requests from forks only get a read-only token)"
                if forge.permission == "pull-requests"
                else ""
            )
        elif forge.kind == "azure":
            message += (
                "; map SYSTEM_ACCESSTOKEN: $(System.AccessToken) in the step and give "
                "the project's build service 'Contribute to pull requests'"
            )
        else:
            message += "; GITLAB_TOKEN needs the api scope and at least the Reporter role"
    return message


def _path(url: str) -> str:
    """The path of a URL without its query (never echo more than needed)."""
    return urllib.parse.urlsplit(url).path
