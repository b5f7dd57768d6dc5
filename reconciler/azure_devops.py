"""Azure DevOps: the plan as one pull request thread (updated in place) and the pull request
status ``reconciler/plan``, through the Azure Repos REST API (api-version 7.1) with the
pipeline's own token. A forge beside GitHub's and GitLab's (``pr_comment.py``), sharing their
safe requests: same-origin redirects, capped replies, the token never printed."""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler import __version__
from reconciler.errors import UserError
from reconciler.outputs.markdown import MARKER
from reconciler.pr_comment import (
    GITHUB_LIMIT,
    Result,
    answer_id,
    request,
    token_blanked,
    with_marker,
)

AZURE_API_VERSION = "7.1"
STATUS_STATES = ("succeeded", "failed")


@dataclass(frozen=True)
class AzureDevOps:
    """One Azure Repos pull request, from the predefined pipeline variables."""

    collection_url: str
    """``SYSTEM_COLLECTIONURI``, e.g. ``https://dev.azure.com/contoso/``."""
    project: str
    repository_id: str
    number: int
    token: str
    kind: str = "azure"
    name: str = "Azure DevOps"
    limit: int = GITHUB_LIMIT
    """The markdown plan is already cut to fit this; Azure documents no lower bound."""

    @property
    def api_url(self) -> str:
        return self.collection_url

    def _url(self, tail: str = "") -> str:
        project = urllib.parse.quote(self.project, safe="")
        repository = urllib.parse.quote(self.repository_id, safe="")
        return (
            f"{self.collection_url.rstrip('/')}/{project}/_apis/git/repositories/"
            f"{repository}/pullRequests/{self.number}{tail}?api-version={AZURE_API_VERSION}"
        )

    def threads_url(self) -> str:
        return self._url("/threads")

    def comment_url(self, thread: int, comment: int) -> str:
        return self._url(f"/threads/{thread}/comments/{comment}")

    def statuses_url(self) -> str:
        return self._url("/statuses")

    def headers(self) -> dict[str, str]:
        return {
            "User-Agent": f"audio-conferencing-reconciler/{__version__}",
            "Accept": "application/json",
            "Content-Type": "application/json",
            "Authorization": f"Bearer {self.token}",
        }


def azure_from_env(
    env: Mapping[str, str] = os.environ, *, number: int | None = None
) -> AzureDevOps:
    """The pull request of an Azure Pipelines run: ``SYSTEM_COLLECTIONURI``,
    ``SYSTEM_TEAMPROJECT``, ``BUILD_REPOSITORY_ID``, ``SYSTEM_PULLREQUEST_PULLREQUESTID`` and
    the job's token ``SYSTEM_ACCESSTOKEN`` (map it in the step: ``env: SYSTEM_ACCESSTOKEN:
    $(System.AccessToken)``)."""
    values = {
        name: env.get(name, "")
        for name in (
            "SYSTEM_COLLECTIONURI",
            "SYSTEM_TEAMPROJECT",
            "BUILD_REPOSITORY_ID",
            "SYSTEM_PULLREQUEST_PULLREQUESTID",
            "SYSTEM_ACCESSTOKEN",
        )
    }
    if number is not None:
        values["SYSTEM_PULLREQUEST_PULLREQUESTID"] = str(number)
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise UserError(
            f"cannot post the plan to Azure DevOps: set {', '.join(missing)} (a "
            "pull request validation run, with SYSTEM_ACCESSTOKEN mapped in the step)"
        )
    if not values["SYSTEM_PULLREQUEST_PULLREQUESTID"].isdigit():
        raise UserError("SYSTEM_PULLREQUEST_PULLREQUESTID must be a number")
    collection = values["SYSTEM_COLLECTIONURI"]
    if not collection.startswith(("https://", "http://")):
        raise UserError(f"SYSTEM_COLLECTIONURI {collection!r} must start with https://")
    return AzureDevOps(
        collection,
        values["SYSTEM_TEAMPROJECT"],
        values["BUILD_REPOSITORY_ID"],
        int(values["SYSTEM_PULLREQUEST_PULLREQUESTID"]),
        values["SYSTEM_ACCESSTOKEN"],
    )


@token_blanked
def upsert_thread(azure: AzureDevOps, body: str) -> Result:
    """Update the first comment of the thread holding the marker, or start that thread."""
    body = with_marker(body, azure.limit)
    listing = request(azure, "GET", azure.threads_url(), None)
    threads = listing.get("value") if isinstance(listing, dict) else None
    if not isinstance(threads, list):
        raise UserError("Azure DevOps API: unexpected answer listing pull request threads")
    found = [
        (t, c)
        for t in threads
        if isinstance(t, dict)
        for c in (t.get("comments") or [])[:1]
        if isinstance(c, dict) and MARKER in str(c.get("content") or "")
    ]
    if not found:
        created = request(
            azure,
            "POST",
            azure.threads_url(),
            {"comments": [{"parentCommentId": 0, "content": body, "commentType": 1}], "status": 1},
        )
        return Result("created", answer_id(azure, created), None)
    thread, comment = found[0]
    thread_id = answer_id(azure, thread)
    if comment.get("content") == body:
        return Result("unchanged", thread_id, None, len(found) - 1)
    request(
        azure, "PATCH", azure.comment_url(thread_id, answer_id(azure, comment)), {"content": body}
    )
    return Result("updated", thread_id, None, len(found) - 1)


@token_blanked
def set_status(
    azure: AzureDevOps, state: str, description: str, target_url: str | None = None
) -> None:
    """The pull request status ``reconciler/plan`` (genre ``reconciler``, name ``plan``)."""
    if state not in STATUS_STATES:
        raise ValueError(f"unknown status {state!r}")
    status: dict[str, Any] = {
        "state": state,
        "description": description[:400],
        "context": {"genre": "reconciler", "name": "plan"},
    }
    if target_url:
        status["targetUrl"] = target_url
    request(azure, "POST", azure.statuses_url(), status)
