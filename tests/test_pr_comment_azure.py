"""``pr-comment`` on Azure DevOps, against a fake of the documented Azure Repos REST API (7.1) on
loopback: pull request threads (the plan is the first comment of the marked thread, updated in
place) and the pull request status ``reconciler/plan``."""

from __future__ import annotations

import pytest

from reconciler.outputs.markdown import MARKER
from tests.fixtures.azure_devops import PREFIX, FakeAzureRepos, pipeline_env
from tests.helpers.cli import Result
from tests.helpers.workspace import NewWorkspace, Workspace


@pytest.fixture
def ws(new_workspace: NewWorkspace) -> Workspace:
    return new_workspace()


def post(ws: Workspace, api: FakeAzureRepos, body: str, *extra: str, **env: str) -> Result:
    plan = ws.root / "plan.md"
    plan.write_text(body, encoding="utf-8")
    return ws.cli("pr-comment", "--body-file", str(plan), *extra, env=pipeline_env(api, **env))


def test_one_thread_is_created_then_its_comment_updated_in_place_with_a_status(
    ws: Workspace, azure: FakeAzureRepos
) -> None:
    azure.threads.append({"id": 7, "comments": [{"id": 1, "content": "LGTM"}]})
    first = post(ws, azure, f"{MARKER}\n## Audio Conferencing plan\n\none\n")
    assert first.code == 0, str(first)
    assert "Plan comment created: thread 101" in first.stdout
    assert f"##vso[task.uploadsummary]{ws.root / 'plan.md'}" in first.stdout
    second = post(ws, azure, f"{MARKER}\n## Audio Conferencing plan\n\ntwo\n")
    assert second.code == 0 and "Plan comment updated: thread 101" in second.stdout
    assert len(azure.threads) == 2  # never a second plan thread
    assert azure.threads[1]["comments"][0]["content"].endswith("two\n")
    assert [m for m, _ in azure.requests].count("POST") == 3  # one thread, two statuses
    assert (
        azure.statuses
        == [
            {
                "state": "succeeded",
                "description": "Audio Conferencing plan",
                "context": {"genre": "reconciler", "name": "plan"},
            }
        ]
        * 2
    )


def test_a_failed_validation_sets_the_status_to_failed(
    ws: Workspace, azure: FakeAzureRepos
) -> None:
    result = post(
        ws,
        azure,
        "The configuration is invalid:\n\n    acme/users.yaml:3:5: x\n",
        "--status",
        "failed",
    )
    assert result.code == 0, str(result)
    assert azure.statuses[-1]["state"] == "failed"
    assert MARKER in azure.threads[0]["comments"][0]["content"]


def test_missing_variables_and_a_refused_token_are_one_line(
    ws: Workspace, azure: FakeAzureRepos
) -> None:
    missing = post(ws, azure, "x", SYSTEM_ACCESSTOKEN="")
    assert missing.code == 1 and "set SYSTEM_ACCESSTOKEN" in missing.stderr
    refused = post(ws, azure, "x", SYSTEM_ACCESSTOKEN="wrong")
    assert refused.code == 1
    assert refused.stderr.splitlines() == [
        f"error: Azure DevOps API: 401 TF400813: The user is not authorized (GET "
        f"{PREFIX}/threads); map SYSTEM_ACCESSTOKEN: $(System.AccessToken) in the step and give "
        "the project's build service 'Contribute to pull requests'"
    ]
    assert "wrong" not in refused.output
