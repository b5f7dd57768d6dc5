"""``azure-pipelines.yml``: valid for Azure Pipelines' schema, its scripts valid bash, and its pull
request step run locally — the example tenant planned, previewed, posted as one thread with the
status reconciler/plan on a fake Azure Repos API, failing (and saying so) on invalid YAML."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.azure_devops import FakeAzureRepos, pipeline_env
from tests.helpers.patience import patience

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = ROOT / "azure-pipelines.yml"
DRIFT = ROOT / "azure-pipelines-drift.yml"


def load() -> dict[str, Any]:
    return yaml.safe_load(PIPELINE.read_text(encoding="utf-8"))


def bash_steps(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        found = [node] if "bash" in node else []
        return found + [s for v in node.values() for s in bash_steps(v)]
    if isinstance(node, list):
        return [s for v in node for s in bash_steps(v)]
    return []


@pytest.mark.parametrize("path", [PIPELINE, DRIFT], ids=lambda p: p.name)
def test_the_pipeline_matches_the_azure_pipelines_schema(path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--regex-variant",
            "python",
            "--builtin-schema",
            "vendor.azure-pipelines",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=patience(120),
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_scripts_are_valid_bash_and_the_plan_never_gets_the_deploy_state() -> None:
    document = load()
    for step in bash_steps(document):
        check = subprocess.run(
            ["bash", "-n"], input=step["bash"], text=True, capture_output=True, check=False
        )
        assert check.returncode == 0, check.stderr
        if "|" in step["bash"]:
            assert "set -eo pipefail" in step["bash"]
    plan, apply = document["stages"]
    assert plan["jobs"][0]["variables"] == [{"group": "reconciler-plan"}]
    (posting,) = [s for s in bash_steps(plan) if "pr-comment" in s["bash"]]
    assert posting["env"] == {
        "RECONCILER_STATE": "$(RECONCILER_PLAN_STATE)",
        "SYSTEM_ACCESSTOKEN": "$(System.AccessToken)",
    }
    deployment = apply["jobs"][0]
    assert deployment["environment"] == "audio-conferencing"
    assert "refs/heads/main" in apply["condition"]


def run_step(script: str, work: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A pipeline's bash step as the agent runs it, in ``work`` (the example tenants copied in
    the first time), with ``env`` over this process's environment less its RECONCILER_ settings
    and the reconciler on the PATH."""
    if not work.exists():
        shutil.copytree(ROOT / "tenants", work / "tenants")
    keep = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    path = f"{Path(sys.executable).parent}:{keep.get('PATH', '')}"
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", script],
        cwd=work,
        env={**keep, **env, "PATH": path},
        capture_output=True,
        text=True,
        timeout=patience(300),
        check=False,
    )


def run_plan_step(tmp_path: Path, api: FakeAzureRepos, state: str) -> subprocess.CompletedProcess:
    (step,) = [s for s in bash_steps(load()["stages"][0]) if "pr-comment" in s["bash"]]
    return run_step(
        step["bash"], tmp_path / "repo", {**pipeline_env(api), "RECONCILER_STATE": state}
    )


def test_the_pull_request_step_posts_one_thread_and_a_status(
    tmp_path: Path, azure: FakeAzureRepos
) -> None:
    (tmp_path / "state").mkdir()
    state = str(tmp_path / "state" / "state.db")
    first = run_plan_step(tmp_path, azure, state)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "##vso[task.uploadsummary]" in first.stdout
    assert (tmp_path / "repo" / "artifacts" / "previews" / "index.html").is_file()
    assert azure.statuses[-1]["state"] == "succeeded"
    (thread,) = azure.threads
    assert "## Audio Conferencing plan" in thread["comments"][0]["content"]

    sales = tmp_path / "repo" / "tenants" / "contoso" / "users" / "sales.yaml"
    sales.write_text(
        sales.read_text(encoding="utf-8").replace('"5550101"', '"55501"'), encoding="utf-8"
    )
    broken = run_plan_step(tmp_path, azure, state)
    assert broken.returncode != 0 and "sales.yaml:" in broken.stderr
    assert azure.statuses[-1]["state"] == "failed"
    assert len(azure.threads) == 1  # the same thread, now showing the errors
    assert "sales.yaml:" in azure.threads[0]["comments"][0]["content"]


# ------------------------------------------------------------------------- drift on a schedule


def test_the_drift_pipeline_runs_on_a_schedule_only_and_keeps_the_state_read_only() -> None:
    document = yaml.safe_load(DRIFT.read_text(encoding="utf-8"))
    assert document["trigger"] == "none" and document["pr"] == "none"
    (schedule,) = document["schedules"]
    assert schedule["branches"] == {"include": ["main"]} and schedule["always"] == "true"
    export, drift = document["stages"]
    (job,) = export["jobs"]
    assert job["pool"] == {"vmImage": "windows-latest"}
    (script,) = [s for s in job["steps"] if "pwsh" in s]
    assert "scripts/export-teams.ps1" in script["pwsh"] and "-CertificatePath" in script["pwsh"]
    assert script["env"]["CERTIFICATE_PATH"] == "$(certificate.secureFilePath)"
    assert drift["dependsOn"] == "export"
    for step in bash_steps(document):
        check = subprocess.run(
            ["bash", "-n"], input=step["bash"], text=True, capture_output=True, check=False
        )
        assert check.returncode == 0, check.stderr
    (comparing,) = [s for s in bash_steps(drift) if "reconciler drift" in s["bash"]]
    assert comparing["env"]["RECONCILER_STATE"] == "$(RECONCILER_PLAN_STATE)"


def test_the_drift_step_fails_the_run_while_teams_and_git_differ(tmp_path: Path) -> None:
    """Run locally on the example tenant (imported): no drift passes with the report in the
    summary, drift fails with it there too, a bad export fails without one."""
    from tests.test_drift import BRIDGE, LIVE, SETTINGS, cmdlet_csv, convert_to_json

    work = tmp_path / "repo"
    export = tmp_path / "pipeline" / "teams-export"
    export.mkdir(parents=True)
    convert_to_json(export / "settings.json", SETTINGS)
    convert_to_json(export / "bridge.json", BRIDGE)
    state = str(tmp_path / "state.db")
    env = {
        "RECONCILER_STATE": state,
        "TENANT": "contoso",
        "EXPORT": str(export),
        "TF_BUILD": "True",
    }
    imported = run_step("reconciler import", work, env)
    assert imported.returncode == 0, imported.stderr
    (step,) = [
        s for s in bash_steps(yaml.safe_load(DRIFT.read_text())) if "reconciler drift" in s["bash"]
    ]

    def run(users: dict[str, tuple[str, ...]] | None) -> subprocess.CompletedProcess[str]:
        if users is None:
            (export / "users.csv").write_text("UserPrincipalName\nnot-an-address\n")
        else:
            cmdlet_csv(export / "users.csv", users)
        return run_step(step["bash"], work, env)

    summary = f"##vso[task.uploadsummary]{work}/report/drift.md"
    clean = run(LIVE)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert summary in clean.stdout.splitlines()
    assert "no drift" in (work / "report" / "drift.md").read_text()

    moved = dict(LIVE)
    moved["bob@contoso.com"] = ("Bob Kelly", "0123999", "+1 206-555-0123", "")
    drifted = run(moved)
    assert drifted.returncode == 1 and summary in drifted.stdout.splitlines()
    assert "##vso[task.logissue type=error]Teams and git differ for contoso" in drifted.stdout
    assert "bob@contoso.com" in (work / "report" / "drift.md").read_text()

    (work / "report" / "drift.md").unlink()
    broken = run(None)
    assert broken.returncode == 1 and "uploadsummary" not in broken.stdout
    assert "users.csv:2" in broken.stderr


# ------------------------------------------------------------------------- rollout waves


def test_the_hourly_schedule_applies_only_while_waves_are_on() -> None:
    document = load()
    (schedule,) = document["schedules"]
    assert schedule["cron"] == "23 * * * *" and schedule["branches"] == {"include": ["main"]}
    apply = document["stages"][1]
    assert (
        "or(ne(variables['Build.Reason'], 'Schedule'), eq(variables['RECONCILER_WAVES'], 'true'))"
        in apply["condition"]
    )
    assert document["stages"][0]["condition"] == "eq(variables['Build.Reason'], 'PullRequest')"


def test_scheduled_apply_steps_deliver_a_rollout_in_waves(tmp_path: Path) -> None:
    """The apply step run locally as the schedule runs it, RECONCILER_MAX_MESSAGES=2 a wave over
    the example tenant's first rollout: every wave passes, the queue is in the run's summary,
    and each email arrives once."""
    import mailbox

    work = tmp_path / "repo"
    (step,) = [s for s in bash_steps(load()["stages"][1]) if "reconciler apply" in s["bash"]]
    env = {
        "RECONCILER_STATE": str(tmp_path / "state.db"),
        "RECONCILER_MAIL_URL": f"maildir:{tmp_path / 'mail'}",
        "RECONCILER_DEFAULT_FROM": "noreply@contoso.com",
        "RECONCILER_MAX_MESSAGES": "2",
        "MAX_MESSAGES": " ",  # the parameter's default
        "REASON": "Schedule",
        "ALLOW_NEW_STATE": "no",
        "ALLOW_MASS_DISABLE": "no",
        "ALLOW_MASS_EMAIL": "no",
    }
    waves = []
    for _ in range(3):
        run = run_step(step["bash"], work, env)
        assert run.returncode == 0, run.stdout + run.stderr
        assert f"##vso[task.uploadsummary]{work}/applied/queue.txt" in run.stdout
        queue = (work / "applied" / "queue.txt").read_text()
        waves.append(("Wave delivered" in run.stdout, queue.split(" since ")[0].split(",")[0]))
    assert waves == [
        (True, "contoso: 2 queued"),
        (False, "contoso: 0 queued"),
        (False, "contoso: 0 queued"),
    ]
    sent = [m["Message-ID"] for m in mailbox.Maildir(tmp_path / "mail", create=False)]
    assert len(sent) == len(set(sent)) == 4
