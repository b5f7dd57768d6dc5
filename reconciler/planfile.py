"""The saved plan (``plan --out FILE``, then ``apply FILE``), after Terraform's planfile: the
plan as reviewed, the configuration it was made from and the state it was made against, so that
``apply FILE`` applies exactly that or refuses.

A plan file is bound to what it was made from. ``apply FILE`` refuses, in one line and before
anything is written or sent:

- a file that is not a saved plan, is edited or inconsistent (every tenant it shows must carry
  its configuration, and every record must pass the configuration's own checks);
- a plan whose configuration files differ from those under ``--config`` now (a plan made on an
  unmerged branch, applied on ``main``), naming the first file that differs and the commit the
  plan was made from when the configuration is in git;
- a plan whose tenant state moved since: another lineage or serial, or, for a tenant that had
  no state, any history since (applied and forgotten again).
"""

from __future__ import annotations

import json
import os
import stat
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.config import CACHE_KEY, file_hashes, schema, semantic
from reconciler.config.loader import is_tenant_file
from reconciler.errors import Finding, UserError
from reconciler.files import written_in_one_step
from reconciler.model import Applied, TenantConfig, TenantRecord, tenant_name_problem
from reconciler.outputs import json as json_output
from reconciler.outputs.json import FORMAT_VERSION, plan_to_dict
from reconciler.plan import Plan, plan_tenant
from reconciler.streams import batched

KIND = "audio-conferencing-reconciler saved plan"
MAX_BYTES = 1024 * 2**20
MAX_GIT_BYTES = 16 * 2**20
"""A bound on what is read of a git file to find the commit (``packed-refs`` of a large
repository included)."""


@dataclass(frozen=True)
class Basis:
    """What one tenant's plan was made against: its state's lineage and serial, and how many
    history rows the tenant had (a tenant without state may have had one since)."""

    lineage: str | None
    serial: int
    history: int


@dataclass(frozen=True)
class SavedPlan:
    path: Path
    shown: dict[str, Any]
    """The plan as reviewed (``plan --format json``)."""
    configs: dict[str, TenantConfig]
    basis: dict[str, Basis]
    commit: str | None
    """The git commit the configuration was at when the plan was made, if it was in git."""

    def check_files(self, config: Path) -> None:
        """Refuse when the configuration under ``config`` is not the one the plan was made
        from, file by file (the content hashes the plan recorded)."""
        for name, tenant in sorted(self.configs.items()):
            now = file_hashes(config, name)
            if now == tenant.files:
                continue
            differs = sorted(set(now or {}) ^ set(tenant.files)) or sorted(
                f for f in tenant.files if (now or {}).get(f) != tenant.files[f]
            )
            made = f" (made from commit {self.commit[:12]})" if self.commit else ""
            raise UserError(
                f"{self.path}: this plan{made} was made from other files than {config} holds "
                f"now ({differs[0] if now is not None else name + '/: not readable'}): was it "
                "made on another branch or an older commit? Make a new plan from these files; "
                "nothing was written or sent"
            )

    def replay(
        self,
        load: Callable[[str], Applied | None],
        history: Mapping[str, int],
        locales: Collection[str],
    ) -> Plan:
        """The plan re-derived from its configurations against the state (``load``, and each
        tenant's number of ``history`` rows) it was made for; refused in one line when that
        state moved or the plan derived differs from the one shown (the one reviewed)."""
        tenants = []
        for name, config in sorted(self.configs.items()):
            applied = load(name)
            self.check_state(name, applied, history[name])
            tenants.append(plan_tenant(config, applied, locales)[0])
        plan = Plan(tenants)
        shown = [t for t in self.shown["tenants"] if t["name"] in self.configs]
        if plan_to_dict(plan)["tenants"] != shown:
            raise UserError("saved plan does not match what it would apply; make a new plan")
        return plan

    def check_state(self, name: str, applied: Applied | None, history: int) -> None:
        """Refuse when ``name``'s state is not the one the plan was made against ("stale")."""
        basis = self.basis[name]
        current = (applied.lineage, applied.serial) if applied else (None, 0)
        if current != (basis.lineage, basis.serial):
            raise UserError(
                f"saved plan is stale: {name} was planned at serial {basis.serial} but the "
                f"state is now at serial {current[1]}; make a new plan"
            )
        if basis.lineage is None and history != basis.history:
            raise UserError(
                f"saved plan is stale: {name} had no applied state when it was planned and "
                "has had one since (applied, then forgotten); make a new plan"
            )


def save(plan: Plan, path: Path, history: Mapping[str, int], config: Path) -> None:
    """Write a saved plan: the plan as shown, the configuration it was made from (records and
    file hashes, and the git commit of ``config`` if any), and the state it was made against
    (lineage, serial and ``history``: each tenant's number of history rows). It holds no PIN
    (PINs exist only at apply).

    Written a batch of users at a time into a temporary file beside ``path``, renamed into
    place once complete: a 300,000-user plan is never one string, and a plan file is never
    half-written."""
    try:
        with written_in_one_step(path) as file:
            file.writelines(_chunks(plan, history, git_commit(config)))
    except OSError as exc:
        raise UserError(f"cannot write saved plan {path}: {exc.strerror or exc}") from None


def _chunks(plan: Plan, history: Mapping[str, int], commit: str | None) -> Iterator[str]:
    yield f'{{"kind":{_json(KIND)},"format_version":{_json(FORMAT_VERSION)}'
    yield f',"source":{_json({"commit": commit})},"plan":'
    yield from json_output.chunks(plan)
    yield ',"configs":{'
    tenants = [t for t in plan.tenants if t.config is not None]
    for number, t in enumerate(tenants):
        config = t.config
        assert config is not None
        head = {
            "lineage": t.lineage,
            "serial": t.serial,
            "history": history.get(t.name, 0),
            "tenant": config.tenant,
            "files": config.files,
        }
        yield "," * bool(number) + f"{_json(t.name)}:" + _json(head)[:-1] + ',"users":{'
        for n, batch in enumerate(batched(config.users.items(), json_output.BATCH)):
            yield "," * bool(n) + _json(dict(batch))[1:-1]  # members, a batch at a time
        yield "}}"
    yield "}}"


def read(path: Path) -> SavedPlan:
    """A saved plan, checked before anything in it is used.

    A plan file is data from outside, perhaps edited: it must match the ``saved_plan`` schema
    (``schemas/plan.schema.json``), show exactly the tenants it holds a configuration for (and
    those missing from the configuration), and its records must pass the configuration's own
    checks; otherwise a one-line refusal ``<planfile>: …``, and nothing is written.
    """
    document = _document(path)
    if not isinstance(document, dict) or document.get("kind") != KIND:
        raise UserError(f"{path}: not a saved plan (make one with `reconciler plan --out`)")
    if document.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"{path}: plan format {document.get('format_version')!r}; this "
            f"reconciler reads format {FORMAT_VERSION!r}"
        )
    findings = schema.check(document, "plan.schema.json", str(path), definition="saved_plan")
    problems = [".".join(map(str, f.path)) + ": " * bool(f.path) + f.message for f in findings]
    if not findings:
        problems += _unconfigured(document)
        for name, saved in document["configs"].items():
            problems.extend(_config_problems(name, saved["tenant"], saved["users"], saved["files"]))
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UserError(
            f"{path}: not a valid saved plan, was it edited? {problems[0]}{more}; "
            "make a new one with `reconciler plan --out`"
        )
    configs, basis = {}, {}
    for name, saved in document["configs"].items():
        configs[name] = TenantConfig(name, saved["tenant"], saved["users"], {}, saved["files"])
        basis[name] = Basis(saved["lineage"], saved["serial"], saved["history"])
    return SavedPlan(path, document["plan"], configs, basis, document["source"]["commit"])


def _config_problems(name: str, tenant: Any, users: Any, files: Collection[str]) -> list[str]:
    """Every reason the records of a saved plan are not what loading a tenant folder could have
    produced, as ``path: message``. A saved plan is a file anyone could have edited, so its
    records pass the YAML's shape and meaning checks, and must be their own effective form
    (complete, defaults filled in), before anything uses them; the files it says were read (kept
    in the state) are files of that tenant's folder."""
    where = f"configs.{name}"
    if why := tenant_name_problem(name):
        return [f"{where}: tenant name {why}"]
    if not all(file == CACHE_KEY or is_tenant_file(name, file) for file in files):
        return [f"{where}.files: names a file outside the tenant folder {name}/"]
    if problems := _tenant_problems(where, tenant):
        return problems
    if not isinstance(users, dict):
        return [f"{where}.users: expected a mapping of users"]
    return _users_problems(where, tenant, users)


def _tenant_problems(where: str, tenant: Any) -> list[str]:
    found = schema.check(tenant, "tenant.schema.json", where)
    if not found and semantic.effective_tenant(tenant) != tenant:
        return [f"{where}.tenant: not a complete effective tenant record"]
    return _dotted(f"{where}.tenant", found or semantic.check_tenant(tenant, where))


def _users_problems(where: str, tenant: TenantRecord, users: dict[str, Any]) -> list[str]:
    numbers = semantic.bridge_numbers(tenant)
    problems, ids = [], defaultdict(list)
    for upn, user in users.items():
        raw = {k: v for k, v in user.items() if k != "upn"} if isinstance(user, dict) else user
        found = schema.check(raw, "users.schema.json", where, ("users", upn), "user")
        if not found and (
            upn != semantic.lower(upn)
            or user.get("upn") != upn
            or semantic.effective_user(upn, raw, tenant) != user
        ):
            problems.append(f"{where}.users.{upn}: not a complete effective user record")
            continue
        found = found or list(semantic.check_user(user, raw, upn, where, tenant, numbers))
        problems.extend(_dotted(where, found))
        if not found and user["conference_id"] is not None:
            ids[user["conference_id"]].append((where, upn))
    return problems + _dotted(
        where, semantic.check_unique(ids, "conference_id", ("conference_id",))
    )


def _dotted(prefix: str, findings: Iterable[Finding]) -> list[str]:
    """Findings as ``path: message`` lines under ``prefix``: a saved plan's records are located
    by their path in the plan file, not by a line of YAML."""
    return [".".join([prefix, *map(str, f.path)]) + f": {f.message}" for f in findings]


def _unconfigured(document: dict[str, Any]) -> list[str]:
    """Tenants the plan shows as applied without holding their configuration, or holds a
    configuration for without showing: a plan that would silently apply less than was
    reviewed."""
    shown = {t["name"] for t in document["plan"]["tenants"] if not t["missing_from_config"]}
    held = set(document["configs"])
    return [
        f"plan.tenants: {name} is shown but the plan holds no configuration for it"
        for name in sorted(shown - held)
    ] + [f"configs.{name}: a configuration the plan does not show" for name in sorted(held - shown)]


def _document(path: Path) -> Any:
    """The JSON in a plan file, read only if it is a regular file of a sane size."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # before opening: a FIFO would block
            raise ValueError("not a regular file")
        with path.open("rb") as file:
            if (
                os.fstat(file.fileno()).st_size > MAX_BYTES
                or len(data := file.read(MAX_BYTES + 1)) > MAX_BYTES
            ):
                raise ValueError(f"larger than {MAX_BYTES // 2**20} MiB")
        return json.loads(data)
    except (OSError, ValueError, RecursionError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        if isinstance(exc, RecursionError):
            reason = "nested too deeply"
        raise UserError(f"{path}: cannot read this saved plan: {reason}") from None


def git_commit(folder: Path) -> str | None:
    """The commit checked out in the git work tree holding ``folder``, read from the ``.git``
    files themselves (no ``git`` process: a repository's configuration can run commands), or
    None when there is none or it cannot be read."""
    try:
        start = folder.resolve()
    except OSError:
        return None
    for candidate in (start, *start.parents):
        dot_git = candidate / ".git"
        if dot_git.is_file():  # a worktree or submodule: "gitdir: <path>"
            pointer = _small(dot_git)
            if pointer is None or not pointer.startswith("gitdir:"):
                return None
            return _head(candidate / pointer.removeprefix("gitdir:").strip())
        if dot_git.is_dir():
            return _head(dot_git)
    return None


def _head(git: Path) -> str | None:
    head = _small(git / "HEAD")
    if head is None or not head.startswith("ref:"):
        return head if head and _is_sha(head) else None
    ref = head.removeprefix("ref:").strip()
    common = git
    if (shared := _small(git / "commondir")) is not None:  # a linked worktree's refs
        common = git / shared
    for base in (git, common):
        if (sha := _small(base / ref)) is not None and _is_sha(sha):
            return sha
    for line in (_small(common / "packed-refs") or "").splitlines():
        sha, _, name = line.partition(" ")
        if name == ref and _is_sha(sha):
            return sha
    return None


def _small(path: Path) -> str | None:
    try:
        with path.open("rb") as file:
            return file.read(MAX_GIT_BYTES).decode("ascii", "replace").strip()
    except OSError:
        return None


def _is_sha(text: str) -> bool:
    return len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
