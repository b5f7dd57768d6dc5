"""The ready-made pipelines: schema-valid GitHub workflows whose shell steps really work.

1. Both workflow files validate against the GitHub workflow JSON Schema that check-jsonschema
   ships (``--builtin-schema vendor.github-workflows``, vendored: works offline).
2. Their structure keeps the promises of docs/PIPELINES.md (triggers, permissions, one apply at a
   time, secrets, no ``${{ }}`` inside shell scripts).
3. A small local runner executes their ``run:`` steps in order with bash, evaluating the
   ``${{ }}`` expressions of ``env:`` and ``if:`` from a context the test provides, against the
   example tenant: the plan job posts its comment to a fake GitHub API on 127.0.0.1, the apply
   job sends through a local SMTP server and records the state.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.outputs.markdown import MARKER
from tests.fixtures.forge import Api
from tests.helpers.patience import patience
from tests.helpers.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
PLAN, APPLY = WORKFLOWS / "plan.yml", WORKFLOWS / "apply.yml"
DRIFT = WORKFLOWS / "drift.yml"
ALL = [PLAN, APPLY, DRIFT]


def load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    # YAML 1.1 (PyYAML) reads the key `on` as the boolean true
    if True in document:
        document["on"] = document.pop(True)
    return document


def check_jsonschema(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.github-workflows",
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        timeout=patience(120),
        check=False,
    )


# ------------------------------------------------------------------------- schema and shape


def test_workflows_match_the_github_workflow_schema(tmp_path: Path) -> None:
    result = check_jsonschema(*ALL)
    assert result.returncode == 0, result.stdout + result.stderr

    # ...and the same check rejects a broken workflow (a job without runs-on, a bad trigger)
    broken = load(PLAN)
    del broken["jobs"]["plan"]["runs-on"]
    broken["on"] = {"pull_requests": None}
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    result = check_jsonschema(path)
    assert result.returncode == 1, result.stdout


def steps(document: dict[str, Any], job: str) -> list[dict[str, Any]]:
    return list(document["jobs"][job]["steps"])


def pwsh(document: dict[str, Any], job: str) -> bool:
    """Whether ``job`` runs its steps with PowerShell (the Windows export of drift.yml)."""
    shell = ((document["jobs"][job].get("defaults") or {}).get("run") or {}).get("shell")
    return shell == "pwsh"


def scripts(document: dict[str, Any], *, powershell: bool = False) -> list[str]:
    """The ``run:`` scripts of the bash jobs (or of the PowerShell ones)."""
    return [
        s["run"]
        for job in document["jobs"]
        if pwsh(document, job) == powershell
        for s in steps(document, job)
        if "run" in s
    ]


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_scripts_are_valid_bash_without_expressions(path: Path) -> None:
    document = load(path)
    for script in scripts(document, powershell=True):
        assert "${{" not in script, script
    for script in scripts(document):
        # expressions go through env: so PR-controlled text is never pasted into a script
        assert "${{" not in script, script
        check = subprocess.run(
            ["bash", "-n"], input=script, text=True, capture_output=True, check=False
        )
        assert check.returncode == 0, check.stderr
    for job in document["jobs"]:
        for step in steps(document, job):
            if "uses" in step:  # actions pinned to a major version or a commit
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@(v\d+|[0-9a-f]{40})", step["uses"]), step


def test_plan_workflow_shape() -> None:
    document = load(PLAN)
    assert set(document["on"]) == {"pull_request"}
    assert document["permissions"] == {}  # job-level only
    assert document["jobs"]["plan"]["permissions"] == {"contents": "read", "pull-requests": "write"}
    text = "\n".join(scripts(document))
    assert "reconciler validate" in text
    assert "reconciler plan --detailed-exitcode --format json > artifacts/plan.json" in text
    assert re.search(r"0\).*changes=false.*\n\s*2\).*changes=true", text)
    assert "reconciler preview --out artifacts/previews" in text
    assert "reconciler pr-comment --body-file comment.md" in text
    upload = next(s for s in steps(document, "plan") if "upload-artifact" in s.get("uses", ""))
    assert upload["with"]["path"] == "artifacts/"


def test_apply_workflow_shape() -> None:
    document = load(APPLY)
    assert document["on"]["push"] == {"branches": ["main"]}
    assert document["concurrency"] == {"group": "reconciler-apply", "cancel-in-progress": False}
    # id-token: the OIDC token of a federated Azure credential, so no Azure secret is stored
    assert document["permissions"] == {}  # job-level only
    assert document["jobs"]["apply"]["permissions"] == {"contents": "read", "id-token": "write"}
    env = document["jobs"]["apply"]["env"]
    for name in ("RECONCILER_STATE", "RECONCILER_MAIL_URL", "RECONCILER_SMTP_PASSWORD"):
        assert env[name] == f"${{{{ secrets.{name} }}}}"
    assert document["jobs"]["apply"]["if"] == (
        "github.ref == 'refs/heads/main' && "
        "(github.event_name != 'schedule' || vars.RECONCILER_WAVES == 'true')"
    )
    assert document["on"]["schedule"] == [{"cron": "23 * * * *"}]  # hourly rollout waves
    checkout = steps(document, "apply")[0]
    assert checkout["uses"].startswith("actions/checkout@")
    assert checkout["with"]["ref"] == "${{ github.sha }}"  # the merged commit, nothing newer
    text = "\n".join(scripts(document))
    assert "reconciler plan --out applied/plan.saved.json" in text
    assert 'reconciler apply "${args[@]}" applied/plan.saved.json' in text
    assert "args=(--auto-approve)" in text


def test_every_action_is_pinned_to_a_commit_the_repository_already_uses() -> None:
    """One pin per action across the workflows: the same commit everywhere, never a tag."""
    pins: dict[str, set[str]] = {}
    for path in ALL:
        document = load(path)
        for job in document["jobs"]:
            for step in steps(document, job):
                if "uses" in step:
                    action, _, ref = step["uses"].partition("@")
                    assert re.fullmatch(r"[0-9a-f]{40}", ref), (path.name, step["uses"])
                    pins.setdefault(action, set()).add(ref)
    assert {action: len(refs) for action, refs in pins.items() if len(refs) > 1} == {}


def test_drift_workflow_shape() -> None:
    """Scheduled or by hand only (no pull request reaches its secrets); the export on Windows
    with no write permission, the comparison with issues: write and nothing else."""
    document = load(DRIFT)
    assert set(document["on"]) == {"schedule", "workflow_dispatch"}
    assert document["on"]["schedule"][0]["cron"]
    assert document["permissions"] == {}
    assert document["concurrency"] == {"group": "reconciler-drift", "cancel-in-progress": False}
    export, drift = document["jobs"]["export"], document["jobs"]["drift"]
    assert export["runs-on"].startswith("windows-") and pwsh(document, "export")
    assert export["permissions"] == {"contents": "read"}
    assert export["environment"] == "teams-export"
    assert drift["permissions"] == {"contents": "read", "issues": "write"}
    assert drift["needs"] == "export" and drift["runs-on"].startswith("ubuntu-")
    for job in (export, drift):
        assert job["timeout-minutes"] <= 180
    (exporting,) = [s for s in export["steps"] if "export-teams.ps1" in s.get("run", "")]
    assert "-CertificatePath" in exporting["run"] and "Remove-Item" in exporting["run"]
    assert exporting["env"] == {"CERTIFICATE": "${{ secrets.TEAMS_EXPORT_CERTIFICATE }}"}
    assert drift["env"]["RECONCILER_STATE"] == "${{ secrets.RECONCILER_PLAN_STATE }}"
    text = "\n".join(scripts(document))
    assert "--format markdown --detailed-exitcode" in text
    assert 'reconciler drift-issue --tenant "$TENANT" --body-file report/drift.md' in text
    secrets = re.findall(r"secrets\.(\w+)", DRIFT.read_text(encoding="utf-8"))
    assert set(secrets) == {"TEAMS_EXPORT_CERTIFICATE", "RECONCILER_PLAN_STATE"}


# ------------------------------------------------------------------------------- pre-commit

PRE_COMMIT_LANGUAGES = {
    "conda",
    "coursier",
    "dart",
    "docker",
    "docker_image",
    "dotnet",
    "fail",
    "golang",
    "haskell",
    "julia",
    "lua",
    "node",
    "perl",
    "pygrep",
    "python",
    "r",
    "ruby",
    "rust",
    "script",
    "swift",
    "system",
    "unsupported",
    "unsupported_script",
}


def test_pre_commit_hook_manifest(example_workspace: Workspace) -> None:
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    assert isinstance(hooks, list) and [h["id"] for h in hooks] == [
        "reconciler-validate",
        "reconciler-fmt",
    ]
    hook = hooks[0]
    assert {"id", "name", "entry", "language"} <= set(hook)
    assert hook["id"] == "reconciler-validate"
    assert hook["language"] in PRE_COMMIT_LANGUAGES and hook["language"] == "python"
    assert hook["pass_filenames"] is False  # validate takes no file arguments
    assert re.search(hook["files"], "tenants/contoso/users/sales.yaml")
    assert re.search(hook["files"], "templates/fr/enabled.html")
    assert not re.search(hook["files"], "README.md")
    command = shlex.split(hook["entry"])
    assert command[0] == "reconciler"  # the console script the package installs

    # the entry works as pre-commit runs it: in the repository, no state, exit 0 / 1
    ws = example_workspace
    result = ws.cli(*command[1:])
    assert result.code == 0, str(result)
    sales = ws.config / "contoso" / "users" / "sales.yaml"
    sales.write_text(
        sales.read_text(encoding="utf-8").replace('"5550101"', '"55501"'), encoding="utf-8"
    )
    result = ws.cli(*command[1:])
    assert result.code == 1 and "sales.yaml:" in result.output
    assert not (ws.root / ".reconciler").exists()


def test_pre_commit_fmt_hook_lays_out_the_files_a_commit_touches(
    example_workspace: Workspace,
) -> None:
    """As pre-commit runs it: the entry plus the staged files its pattern selects. The hook is
    the fix (pre-commit stops the commit when it changed a file), so nobody needs reconciler on
    their PATH; ``fmt --check`` says the command that fixes what it found."""
    (hook,) = [
        h
        for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
        if h["id"] == "reconciler-fmt"
    ]
    assert hook.get("pass_filenames", True) is True
    staged = [
        "tenants/contoso/tenant.yaml",
        "tenants/contoso/users/sales.yaml",
        "README.md",
        "templates/fr/enabled.html",
        "tenants/contoso/users/deep/x.yml",
    ]
    selected = [f for f in staged if re.search(hook["files"], f)]
    assert selected == [*staged[:2], staged[-1]]
    ws = example_workspace
    command = shlex.split(hook["entry"])
    assert command == ["reconciler", "fmt"]
    sales = ws.config / "contoso" / "users" / "sales.yaml"
    canonical = sales.read_text(encoding="utf-8")
    unchanged = ws.cli(*command[1:], *selected[:2])
    assert unchanged.code == 0 and sales.read_text(encoding="utf-8") == canonical
    messy = canonical.replace("    license: true\n", "    license:  true\n")
    assert messy != canonical
    sales.write_text(messy, encoding="utf-8")
    checked = ws.cli("fmt", "--check", *selected[:2])
    assert checked.code == 1 and sales.read_text(encoding="utf-8") == messy
    assert checked.output.splitlines()[0] == "would reformat tenants/contoso/users/sales.yaml"
    assert (
        checked.stderr.splitlines()[-1] == "To fix: reconciler fmt tenants/contoso/users/sales.yaml"
    )
    fixed = ws.cli(*command[1:], *selected[:2])
    assert fixed.code == 0 and sales.read_text(encoding="utf-8") == canonical


def test_the_documented_local_pre_commit_hook_matches_the_published_one() -> None:
    """docs/PIPELINES.md's snippet works as written: no made-up tag, the same hook locally."""
    guide = (ROOT / "docs" / "PIPELINES.md").read_text(encoding="utf-8")
    section = guide[guide.index("## pre-commit") :]
    snippet = yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.S)[1])
    (repo,) = snippet["repos"]
    assert repo["repo"] == "local" and "rev" not in repo
    published = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    assert len(repo["hooks"]) == len(published)
    for local, hook in zip(repo["hooks"], published, strict=True):
        assert local["language"] == "system"
        for key in ("id", "entry", "pass_filenames", "files"):
            assert local.get(key) == hook.get(key), key
    assert "v0.1.0" not in guide and "v0.1.0" not in (ROOT / ".pre-commit-hooks.yaml").read_text()


# --------------------------------------------------------------------------- a local runner


class Context:
    """The ``${{ }}`` contexts: dotted names looked up in nested dicts (missing = empty)."""

    def __init__(self, values: dict[str, Any]):
        self.values = values
        self.failed = False

    def lookup(self, name: str) -> Any:
        value: Any = self.values
        for part in name.split("."):
            if not isinstance(value, dict) or part not in value:
                if name.split(".")[0] not in {
                    "github",
                    "secrets",
                    "vars",
                    "steps",
                    "inputs",
                    "env",
                    "runner",
                }:
                    raise AssertionError(f"unknown context in {name}")
                return ""
            value = value[part]
        return value

    _TOKEN = re.compile(
        r"\s*(?:(?P<str>'[^']*')|(?P<op>==|!=|&&|\|\||!|\(|\))|"
        r"(?P<fn>always|failure|success|cancelled)\(\)|"
        r"(?P<num>\d+)|(?P<name>[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*)*))"
    )

    def evaluate(self, expression: str) -> Any:
        """A subset of GitHub's expression language: enough for these workflows."""
        code, pos = [], 0
        names: list[Any] = []
        while pos < len(expression.rstrip()):
            match = self._TOKEN.match(expression, pos)
            assert match, f"cannot evaluate {expression!r} at {pos}"
            pos = match.end()
            if match["str"]:
                code.append(repr(match["str"][1:-1]))
            elif match["op"]:
                code.append(
                    {"&&": " and ", "||": " or ", "!": " not "}.get(match["op"], match["op"])
                )
            elif match["fn"]:
                code.append(
                    repr(
                        {
                            "always": True,
                            "failure": self.failed,
                            "success": not self.failed,
                            "cancelled": False,
                        }[match["fn"]]
                    )
                )
            elif match["num"]:
                code.append(match["num"])
            elif match["name"] in ("true", "false"):
                code.append(match["name"].title())
            else:
                names.append(self.lookup(match["name"]))
                code.append(f"_[{len(names) - 1}]")
        return eval("".join(code), {"__builtins__": {}}, {"_": names})

    def substitute(self, text: Any) -> str:
        def one(match: re.Match[str]) -> str:
            value = self.evaluate(match.group(1))
            return (
                ""
                if value is None
                else str(value).lower()
                if isinstance(value, bool)
                else str(value)
            )

        return re.sub(r"\$\{\{(.*?)\}\}", one, str(text))


@dataclass
class StepRun:
    name: str
    ran: bool
    code: int = 0
    output: str = ""


def github_shell(document: dict[str, Any], job: dict[str, Any], step: dict[str, Any]) -> list[str]:
    """The command GitHub runs a ``run:`` step with on Linux: ``shell: bash`` (from the step, the
    job's or the workflow's ``defaults``) is ``bash --noprofile --norc -eo pipefail``; with no
    shell given it is ``bash -e``, where a pipe hides a failing command."""
    shell = (
        step.get("shell")
        or ((job.get("defaults") or {}).get("run") or {}).get("shell")
        or ((document.get("defaults") or {}).get("run") or {}).get("shell")
    )
    if shell == "bash":
        return ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c"]
    assert shell is None, f"unexpected shell {shell!r}"
    return ["bash", "-e", "-c"]


@dataclass
class LocalRunner:
    workflow: Path
    job: str
    workdir: Path
    context: dict[str, Any]
    environment: dict[str, str]
    actions: dict[str, Callable[[dict[str, Any], Context, Path], dict[str, str]]]
    skip: Callable[[dict[str, Any]], bool] = lambda step: False
    runs: list[StepRun] = field(default_factory=list)

    def run(self) -> Context:
        document = load(self.workflow)
        job = document["jobs"][self.job]
        context = Context(copy.deepcopy(self.context))
        context.values.setdefault("steps", {})
        job_env = {k: context.substitute(v) for k, v in (job.get("env") or {}).items()}
        summary = self.workdir.parent / "step-summary.md"
        for index, step in enumerate(job["steps"]):
            name = step.get("name") or step.get("uses") or f"step {index}"
            condition = step.get("if", "success()")
            if not context.evaluate(str(condition).removeprefix("${{").removesuffix("}}")):
                self.runs.append(StepRun(name, False))
                continue
            outputs: dict[str, str] = {}
            if "uses" in step:
                action = step["uses"].split("@")[0]
                assert action in self.actions, f"no local stand-in for {action}"
                with_ = {k: context.substitute(v) for k, v in (step.get("with") or {}).items()}
                outputs = self.actions[action](with_, context, self.workdir)
                self.runs.append(StepRun(name, True))
            elif self.skip(step):
                self.runs.append(StepRun(name, False))
                continue
            else:
                output_file = self.workdir.parent / f"output-{index}"
                output_file.write_text("")
                env = {
                    **self.environment,
                    **job_env,
                    **{k: context.substitute(v) for k, v in (step.get("env") or {}).items()},
                    "GITHUB_OUTPUT": str(output_file),
                    "GITHUB_STEP_SUMMARY": str(summary),
                }
                result = subprocess.run(
                    [*github_shell(document, job, step), step["run"]],
                    cwd=self.workdir,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=patience(300),
                    check=False,
                )
                self.runs.append(
                    StepRun(name, True, result.returncode, result.stdout + result.stderr)
                )
                outputs = dict(
                    line.split("=", 1)
                    for line in output_file.read_text().splitlines()
                    if "=" in line
                )
                if result.returncode != 0:
                    context.failed = True
            if "id" in step:
                context.values["steps"][step["id"]] = {"outputs": outputs}
        return context

    def step(self, name: str) -> StepRun:
        return next(r for r in self.runs if r.name == name)


def tool_path(tmp: Path) -> str:
    """PATH with a ``reconciler`` that runs this checkout's package under this interpreter."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "reconciler"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m reconciler "$@"\n')
    shim.chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"


def base_environment(tmp: Path) -> dict[str, str]:
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RECONCILER_", "GITHUB_", "GITLAB", "CI_"))
    }
    return {
        **keep,
        "PATH": tool_path(tmp),
        "PYTHONPATH": str(ROOT),
        "CI": "true",
        "GITHUB_ACTIONS": "true",
    }


def upload_artifact(store: Path) -> Callable[[dict[str, Any], Context, Path], dict[str, str]]:
    def upload(with_: dict[str, Any], _: Context, workdir: Path) -> dict[str, str]:
        source = workdir / with_["path"]
        if source.exists():
            shutil.copytree(source, store / with_["name"])
        elif with_.get("if-no-files-found") != "ignore":
            raise AssertionError(f"nothing to upload at {source}")
        return {"artifact-url": f"https://github.example/artifacts/{with_['name']}"}

    return upload


NO_OP = {"actions/checkout": lambda *_: {}, "actions/setup-python": lambda *_: {}}


def is_install(step: dict[str, Any]) -> bool:
    return "pip install" in step.get("run", "")  # the package is installed already


def git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A configuration repository (the example tenant) pushed to a local 'origin'."""
    origin = tmp_path / "origin.git"
    work = tmp_path / "repo"
    work.mkdir()
    shutil.copytree(ROOT / "tenants", work / "tenants")
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    git(work, "init", "-q", "-b", "main")
    git(work, "add", "tenants")
    git(work, "commit", "-q", "-m", "example tenant")
    git(work, "remote", "add", "origin", str(origin))
    git(work, "push", "-q", "origin", "main")
    return work


def test_plan_workflow_runs_locally(repo: Path, tmp_path: Path, forge_api: Api) -> None:
    # the pull request the job's context names, and the job's token
    forge_api.repo, forge_api.number, forge_api.token = "contoso/audio", 12, "gh-token"
    api_url, comments = forge_api.url, forge_api.comments
    artifacts = tmp_path / "uploaded"
    event = {
        "number": 12,
        "pull_request": {
            "number": 12,
            "head": {"sha": "abc1234", "repo": {"full_name": "contoso/audio"}},
        },
    }
    context = {
        "github": {
            "event": event,
            "repository": "contoso/audio",
            "run_id": "99",
            "server_url": "https://github.example",
            "token": "gh-token",
        },
        "secrets": {"RECONCILER_PLAN_STATE": str(tmp_path / "state" / "state.db")},
        "vars": {},
    }
    environment = {
        **base_environment(tmp_path),
        "GITHUB_API_URL": api_url,
        "GITHUB_REPOSITORY": "contoso/audio",
    }

    def runner() -> LocalRunner:
        return LocalRunner(
            PLAN,
            "plan",
            repo,
            context,
            environment,
            {**NO_OP, "actions/upload-artifact": upload_artifact(artifacts)},
            skip=is_install,
        )

    first = runner()
    result = first.run()
    assert not result.failed, [(r.name, r.output) for r in first.runs if r.code]
    assert result.values["steps"]["plan"]["outputs"] == {"changes": "true"}  # exit code 2
    assert not first.step("Report invalid configuration on the pull request").ran
    uploaded = artifacts / "plan-pr-12"
    plan = json.loads((uploaded / "plan.json").read_text())
    assert plan["summary"]["emails"] == 4
    assert (uploaded / "previews" / "index.html").is_file()
    assert len(list((uploaded / "previews" / "contoso").glob("*.eml"))) == 4
    (comment,) = comments
    assert comment["body"].startswith(MARKER)
    assert (
        "[JSON plan and email previews](https://github.example/artifacts/plan-pr-12)"
        in (comment["body"])
    )
    # tenant, settings, users, then enabled, details-changed, pin-reset, conference-info,
    # disabled, suppressed
    assert re.search(r"\| contoso \| \d+ \| 8 \| 4 \| 0 \| 0 \| 0 \| 0 \| 0 \|", comment["body"])
    assert "Planned at abc1234 (with changes)" in comment["body"]
    assert "https://github.example/contoso/audio/actions/runs/99" in comment["body"]

    # the next push breaks the configuration: the same comment now shows the errors
    sales = repo / "tenants" / "contoso" / "users" / "sales.yaml"
    sales.write_text(sales.read_text().replace('"5550101"', '"55501"'))
    second = runner()
    result = second.run()
    assert result.failed and second.step("Validate the configuration").code == 1
    assert not second.step("Plan").ran
    assert second.step("Report invalid configuration on the pull request").code == 0
    (comment,) = comments  # still one comment, updated in place
    assert comment["body"].startswith(MARKER)
    assert "The configuration is invalid" in comment["body"]
    assert "contoso/users/sales.yaml:" in comment["body"]


def apply_context(
    repo: Path, tmp_path: Path, mail_url: str, **variables: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """The ``${{ }}`` context and the environment of a push to main applying ``repo``'s HEAD,
    with an SQLite state under ``tmp_path``."""
    state = tmp_path / "state" / "state.db"
    state.parent.mkdir(exist_ok=True)
    head = git(repo, "rev-parse", "HEAD")
    context = {
        "github": {"sha": head, "ref_name": "main"},
        "secrets": {
            "RECONCILER_STATE": str(state),
            "RECONCILER_MAIL_URL": mail_url,
            "RECONCILER_SMTP_PASSWORD": "",
        },
        "vars": {"RECONCILER_DEFAULT_FROM": "Office 365 <noreply@contoso.com>", **variables},
        "inputs": {},
    }
    return context, {**base_environment(tmp_path), "GITHUB_SHA": head}


def apply_runner(
    repo: Path, context: dict[str, Any], environment: dict[str, str], artifacts: Path
) -> LocalRunner:
    return LocalRunner(
        APPLY,
        "apply",
        repo,
        context,
        environment,
        {**NO_OP, "actions/upload-artifact": upload_artifact(artifacts)},
        skip=is_install,
    )


def test_apply_workflow_runs_locally(repo: Path, tmp_path: Path, smtp_server: Any) -> None:
    context, environment = apply_context(repo, tmp_path, smtp_server.url)
    head = context["github"]["sha"]
    artifacts = tmp_path / "uploaded"

    def runner(values: dict[str, Any]) -> LocalRunner:
        return apply_runner(repo, values, environment, artifacts)

    first = runner(context)
    result = first.run()
    assert not result.failed, [(r.name, r.output) for r in first.runs if r.code]
    assert "Applied: contoso (serial 1). 4 email(s) delivered" in first.step("Apply it").output
    assert sorted(m["X-Reconciler-Email-Type"] for m in smtp_server.messages) == ["enabled"] * 4
    assert all(
        m["From"] == "Contoso Conferencing <conferencing@contoso.com>" for m in smtp_server.messages
    )
    saved = json.loads((artifacts / f"applied-{head}" / "plan.saved.json").read_text())
    assert saved["plan"]["summary"]["emails"] == 4

    # a newer commit lands on main: re-running this (older) apply must not revert anything
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(tmp_path / "origin.git"), str(clone))
    (clone / "tenants" / "contoso" / "users" / "sales.yaml").unlink()
    git(clone, "commit", "-q", "-am", "remove sales")
    git(clone, "push", "-q", "origin", "main")
    stale = runner(context)
    result = stale.run()
    assert not result.failed
    assert (
        "the run for that commit applies it"
        in stale.step("Skip if a newer commit is on the branch").output
    )
    assert not stale.step("Apply it").ran and len(smtp_server.messages) == 4

    # missing settings stop the job before anything is planned
    broken = copy.deepcopy(context)
    broken["secrets"]["RECONCILER_STATE"] = ""
    broken["secrets"]["RECONCILER_MAIL_URL"] = "maildir:/tmp/x"
    failing = runner(broken)
    result = failing.run()
    check = failing.step("Check the deployment settings")
    assert result.failed and check.code == 1
    assert "RECONCILER_STATE" in check.output and "RECONCILER_MAIL_URL" in check.output
    assert not failing.step("Apply it").ran


def test_apply_workflow_first_rollout_and_mass_email_need_the_manual_inputs(
    repo: Path, tmp_path: Path, smtp_server: Any
) -> None:
    users = repo / "tenants" / "contoso" / "users" / "bulk.yaml"

    def commit_bulk(prefix: str, message: str) -> None:
        users.write_text(
            "users:\n"
            + "".join(
                f"  bulk{i}@contoso.com: {{license: true, conference_id: '{prefix}{i:02d}'}}\n"
                for i in range(12)
            ),
            encoding="utf-8",
        )
        git(repo, "add", "tenants")
        git(repo, "commit", "-q", "-m", message)
        git(repo, "push", "-q", "origin", "main")

    def runner(values: dict[str, Any], artifacts: str) -> LocalRunner:
        return apply_runner(repo, values, environment, tmp_path / artifacts)

    def ran(job: LocalRunner) -> None:
        result = job.run()
        assert not result.failed, [(r.name, r.output) for r in job.runs if r.code]

    commit_bulk("55000", "a first rollout of 12 more users")
    context, environment = apply_context(repo, tmp_path, smtp_server.url)
    pushed = runner(context, "pushed")
    assert pushed.run().failed
    assert "--allow-new-state" in pushed.step("Apply it").output
    assert smtp_server.messages == []
    ran(runner({**context, "inputs": {"allow_new_state": True}}, "by-hand"))
    assert len(smtp_server.messages) == 16

    commit_bulk("56000", "move the 12 to new conference IDs")  # 12 of 20 users emailed
    context, environment = apply_context(repo, tmp_path, smtp_server.url)
    pushed = runner(context, "pushed-again")
    assert pushed.run().failed
    assert "--allow-mass-email" in pushed.step("Apply it").output
    assert len(smtp_server.messages) == 16
    ran(runner({**context, "inputs": {"allow_mass_email": True}}, "by-hand-again"))
    assert len(smtp_server.messages) == 28


def test_apply_workflow_treats_a_sending_limit_as_come_back_later(
    repo: Path, tmp_path: Path, smtp_server: Any
) -> None:
    context, environment = apply_context(
        repo, tmp_path, smtp_server.url, RECONCILER_MAX_MESSAGES="1"
    )
    job = apply_runner(repo, context, environment, tmp_path / "up")
    result = job.run()
    assert not result.failed, [(r.name, r.output) for r in job.runs if r.code]
    assert "::warning::Stopped at a sending limit" in job.step("Apply it").output
    assert len(smtp_server.messages) == 1


def test_scheduled_runs_deliver_a_rollout_in_waves_and_show_the_queue(
    repo: Path, tmp_path: Path, smtp_server: Any
) -> None:
    context, environment = apply_context(
        repo, tmp_path, smtp_server.url, RECONCILER_WAVES="true", RECONCILER_MAX_MESSAGES="2"
    )
    summary = tmp_path / "step-summary.md"

    def wave(event: str, inputs: dict[str, str], sent: int, said: str) -> None:
        values = {**context, "github": {**context["github"], "event_name": event}}
        summary.unlink(missing_ok=True)
        uploads = tmp_path / f"wave-{sent}"
        job = apply_runner(repo, {**values, "inputs": inputs}, environment, uploads)
        result = job.run()
        assert not result.failed, [(r.name, r.output) for r in job.runs if r.code]
        assert said in job.step("Apply it").output
        assert len(smtp_server.messages) == sent
        shown = job.step("Show the queue").output
        assert f"contoso: {4 - sent} queued" in shown and shown in summary.read_text()

    # Run workflow by hand with a pilot of one email, then the hourly schedule takes over
    wave("workflow_dispatch", {"max_messages": "1"}, 1, "::warning::Stopped at a sending limit")
    wave("schedule", {}, 3, "::notice::Wave delivered; the rest stays queued")
    wave("schedule", {}, 4, "Applied: nothing to change. 1 email(s) delivered")
    ids = [m["Message-ID"] for m in smtp_server.messages]
    assert len(set(ids)) == 4


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_workflows_are_zizmor_clean_offline(path: Path) -> None:
    """GitHub Actions' security linter finds nothing at medium severity or above: actions pinned
    to commits, least permissions, no credentials in uploaded artifacts."""
    zizmor = shutil.which("zizmor")
    assert zizmor is not None, "zizmor is a test dependency (pip install -e '.[test]')"
    done = subprocess.run(
        [zizmor, "--offline", "--min-severity", "medium", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_every_step_that_pipes_runs_with_pipefail(path: Path) -> None:
    document = load(path)
    for name, job in document["jobs"].items():
        if pwsh(document, name):
            continue  # PowerShell stops on a failing cmdlet ($ErrorActionPreference = "Stop")
        for step in job["steps"]:
            if "|" in step.get("run", ""):
                assert github_shell(document, job, step)[:5] == [
                    "bash",
                    "--noprofile",
                    "--norc",
                    "-eo",
                    "pipefail",
                ], step


def test_github_default_shell_hides_a_failing_command_before_a_pipe() -> None:
    """Why the workflows set ``shell: bash``: the harness runs steps as GitHub does."""
    script = "false | tee /dev/null"
    plain = subprocess.run([*github_shell({}, {}, {}), script], check=False)
    explicit = subprocess.run([*github_shell({}, {}, {"shell": "bash"}), script], check=False)
    assert plain.returncode == 0 and explicit.returncode == 1


def test_a_failing_apply_fails_the_workflow(repo: Path, tmp_path: Path, dead_smtp_url: str) -> None:
    context, environment = apply_context(repo, tmp_path, dead_smtp_url)
    environment["RECONCILER_RETRY_BACKOFF"] = "0"
    job = apply_runner(repo, context, environment, tmp_path / "up")
    assert job.run().failed
    step = job.step("Apply it")
    assert step.code == 1 and "still queued" in step.output


def test_the_gitlab_example_matches_gitlab_ci_schema(tmp_path: Path) -> None:
    guide = (ROOT / "docs" / "PIPELINES.md").read_text(encoding="utf-8")
    section = guide[guide.index("## GitLab CI") : guide.index("## Azure DevOps")]
    example = tmp_path / ".gitlab-ci.yml"
    example.write_text(re.search(r"```yaml\n(.*?)```", section, re.S)[1], encoding="utf-8")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--regex-variant",
            "python",
            "--builtin-schema",
            "vendor.gitlab-ci",
            str(example),
        ],
        capture_output=True,
        text=True,
        timeout=patience(120),
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    document = yaml.safe_load(example.read_text(encoding="utf-8"))
    assert document["apply"]["allow_failure"] == {"exit_codes": [3]}
    assert "RECONCILER_PLAN_STATE" in str(document) and "|| $RECONCILER_STATE" not in str(document)
    # a scheduled pipeline runs the drift jobs, or with RECONCILER_WAVES the apply job only
    schedule = '$CI_PIPELINE_SOURCE == "schedule"'
    waves = '$RECONCILER_WAVES == "true"'
    for name, job in document.items():
        if isinstance(job, dict) and "script" in job:
            rules = [rule["if"] for rule in job["rules"]]
            drift = name in ("teams-export", "drift")
            assert (rules == [f'{schedule} && $RECONCILER_WAVES != "true"']) == drift, name
            scheduled = [rule for rule in rules if schedule in rule]
            assert drift or scheduled == (
                []
                if name != "apply"
                else [f"$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH && {schedule} && {waves}"]
            ), name
    assert document["drift"]["needs"] == ["teams-export"]
    assert document["drift"]["variables"] == {"RECONCILER_STATE": "$RECONCILER_PLAN_STATE"}


def test_the_gitlab_drift_job_runs_locally(repo: Path, tmp_path: Path, forge_api: Api) -> None:
    """The example's drift job as GitLab's shell runs it (one bash, -eo pipefail) after the
    Windows job left its export: drift opens the GitLab issue, no drift closes it."""
    from tests.test_drift import BRIDGE, LIVE, SETTINGS, cmdlet_csv, convert_to_json

    guide = (ROOT / "docs" / "PIPELINES.md").read_text(encoding="utf-8")
    section = guide[guide.index("## GitLab CI") : guide.index("## Azure DevOps")]
    job = yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.S)[1])["drift"]
    forge_api.kind = "gitlab"
    state = tmp_path / "state.db"
    environment = {
        **base_environment(tmp_path),
        "GITLAB_CI": "true",
        "CI_API_V4_URL": f"{forge_api.url}/api/v4",
        "CI_PROJECT_ID": "42",
        "GITLAB_TOKEN": forge_api.token,
        "RECONCILER_PLAN_STATE": str(state),
        "RECONCILER_DRIFT_TENANT": "contoso",
    }
    environment.update(
        {k: v.replace("$RECONCILER_PLAN_STATE", str(state)) for k, v in job["variables"].items()}
    )
    subprocess.run(
        [sys.executable, "-m", "reconciler", "import"],
        cwd=repo, env=environment, check=True, capture_output=True,
    )  # fmt: skip
    export = repo / "export"
    export.mkdir()
    convert_to_json(export / "settings.json", SETTINGS)
    convert_to_json(export / "bridge.json", BRIDGE)

    def run(users: dict[str, tuple[str, ...]]) -> subprocess.CompletedProcess[str]:
        cmdlet_csv(export / "users.csv", users)
        return subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", "\n".join(job["script"])],
            cwd=repo, env=environment, capture_output=True, text=True,
            timeout=patience(300), check=False,
        )  # fmt: skip

    moved = dict(LIVE)
    moved["dan@contoso.com"] = ("Dan Jump", "5550999", "14255550100", "")
    opened = run(moved)
    assert opened.returncode == 0, opened.stdout + opened.stderr
    (issue,) = forge_api.issues
    assert issue["title"] == "Audio Conferencing drift: contoso" and issue["state"] == "opened"
    assert "dan@contoso.com" in issue["description"]
    assert issue["labels"] == ["audio-conferencing-drift"]
    closed = run(LIVE)
    assert closed.returncode == 0, closed.stdout + closed.stderr
    assert issue["state"] == "closed" and len(forge_api.issues) == 1


def test_drift_workflow_runs_locally(repo: Path, tmp_path: Path, forge_api: Api) -> None:
    """The Linux job of drift.yml, step by step, on the example tenant (imported) against a
    fake GitHub issues API: drift opens the issue, no drift closes it, an unreadable export
    fails the job and leaves the issue alone."""
    from tests.test_drift import BRIDGE, LIVE, SETTINGS, cmdlet_csv, convert_to_json

    state = tmp_path / "state" / "state.db"
    state.parent.mkdir()
    environment = {
        **base_environment(tmp_path),
        "GITHUB_API_URL": forge_api.url,
        "GITHUB_REPOSITORY": forge_api.repo,
    }
    imported = subprocess.run(
        [sys.executable, "-m", "reconciler", "import", "--state", str(state)],
        cwd=repo, env=environment, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stdout + imported.stderr
    context = {
        "github": {"token": forge_api.token, "ref": "refs/heads/main"},
        "secrets": {"RECONCILER_PLAN_STATE": str(state)},
        "vars": {"RECONCILER_DRIFT_TENANT": "contoso"},
    }
    export = tmp_path / "teams-export"

    def exported(users: dict[str, tuple[str, ...]]) -> None:
        export.mkdir(exist_ok=True)
        cmdlet_csv(export / "users.csv", users)
        convert_to_json(export / "settings.json", SETTINGS)
        convert_to_json(export / "bridge.json", BRIDGE)

    def download(with_: dict[str, Any], _: Context, workdir: Path) -> dict[str, str]:
        assert with_["name"] == "teams-export"
        shutil.rmtree(workdir / with_["path"], ignore_errors=True)
        shutil.copytree(export, workdir / with_["path"])
        return {}

    def run(name: str) -> LocalRunner:
        job = LocalRunner(
            DRIFT,
            "drift",
            repo,
            context,
            environment,
            {
                **NO_OP,
                "actions/download-artifact": download,
                "actions/upload-artifact": upload_artifact(tmp_path / name),
            },
            skip=is_install,
        )
        job.run()
        return job

    moved = dict(LIVE)
    moved["alice@contoso.com"] = ("Alice Martin", "8499999", "14255550100", "18005550199")
    exported(moved)
    first = run("first")
    assert first.step("Open, update or close the drift issue").code == 0, first.runs
    (issue,) = forge_api.issues
    assert issue["title"] == "Audio Conferencing drift: contoso" and issue["state"] == "open"
    assert issue["body"].startswith("<!-- audio-conferencing-reconciler drift -->")
    assert "alice@contoso.com" in issue["body"]
    report = tmp_path / "first" / "drift-report"
    assert json.loads((report / "drift.json").read_text())["drift"] is True

    (export / "users.csv").write_text("UserPrincipalName\nnot-an-address\n", encoding="utf-8")
    broken = run("broken")
    step = broken.step("Compare the export with git and the applied state")
    assert step.code == 1 and "users.csv:2" in step.output
    assert not broken.step("Open, update or close the drift issue").ran
    assert issue["state"] == "open" and "alice@contoso.com" in issue["body"]

    exported(LIVE)
    fixed = run("fixed")
    assert fixed.step("Open, update or close the drift issue").code == 0, fixed.runs
    assert issue["state"] == "closed" and "no drift" in issue["body"]
    assert len(forge_api.issues) == 1


def test_the_documented_schema_checks_work_as_written(tmp_path: Path) -> None:
    """docs/PIPELINES.md's check-jsonschema lines, run as a shell runs them: on the shipped
    files, and (GitLab) on the guide's example saved as .gitlab-ci.yml."""
    guide = (ROOT / "docs" / "PIPELINES.md").read_text(encoding="utf-8")
    section = guide[guide.index("## Checking a pipeline file you edited") :]
    lines = re.search(r"```sh\n(.*?)```", section, re.S)[1].splitlines()
    assert [line.split()[-1] for line in lines] == [
        ".github/workflows/*.yml",
        "azure-pipelines-drift.yml",
        ".gitlab-ci.yml",
    ]
    gitlab = guide[guide.index("## GitLab CI") : guide.index("## Azure DevOps")]
    example = tmp_path / ".gitlab-ci.yml"
    example.write_text(re.search(r"```yaml\n(.*?)```", gitlab, re.S)[1], encoding="utf-8")
    bin_dir = Path(sys.executable).parent
    for line, cwd in zip(lines, [ROOT, ROOT, tmp_path], strict=True):
        done = subprocess.run(
            ["bash", "-c", line],
            cwd=cwd,
            env={**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"},
            capture_output=True,
            text=True,
            timeout=patience(180),
            check=False,
        )
        assert done.returncode == 0, (line, done.stdout + done.stderr)
        assert "ok -- validation done" in done.stdout, line
