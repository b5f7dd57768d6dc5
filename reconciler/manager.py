"""Orchestration of the pure core: load the config, read the state, build the plan.

The ``Manager`` owns the run's options and the state store; the CLI only parses arguments and
prints, and ``apply`` builds on the plan made here.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.config import (
    LoadedConfig,
    UsersCache,
    load_config,
    locate_findings,
    saved_config_problems,
    schema,
)
from reconciler.errors import ConfigError, UserError
from reconciler.locales import locale_folders
from reconciler.model import Applied, TenantConfig, UserRecord
from reconciler.outputs import json as json_output
from reconciler.outputs.json import FORMAT_VERSION
from reconciler.plan import Plan, TenantPlan, plan_missing, plan_tenant
from reconciler.resources import default_templates
from reconciler.state import EmptyState, StateLocked, StateStore, open_store
from reconciler.streams import batched

if TYPE_CHECKING:
    from reconciler.emails import TemplateSet

SAVED_PLAN_KIND = "audio-conferencing-reconciler saved plan"
MAX_SAVED_PLAN_BYTES = 1024 * 2**20


@dataclass
class Options:
    config: Path = Path("tenants")
    state: str = ".reconciler/state.db"
    mail: str = "maildir:.reconciler/mail"
    default_from: str | None = None
    templates: Path | None = None
    tenants: tuple[str, ...] = ()
    lock_timeout: float = 0.0


@dataclass
class Manager:
    options: Options
    read_only: bool = False
    """Set by commands that only read the state: a missing SQLite file is then an empty state
    instead of being created."""
    _store: StateStore | None = field(default=None, repr=False)
    _templates: TemplateSet | None = field(default=None, repr=False)

    def locales(self) -> list[str]:
        """The locale folders emails can be written in (the configured templates folder and the
        packaged copy), found without loading Jinja2: plans name each email's language."""
        if self._templates is not None:
            return self._templates.locales()
        return locale_folders(self.options.templates, default_templates())

    @property
    def templates(self) -> TemplateSet:
        if self._templates is None:
            from reconciler.emails import TemplateSet  # Jinja2: only once emails are rendered

            self._templates = TemplateSet(self.options.templates)
        return self._templates

    @property
    def store(self) -> StateStore:
        if self._store is None:
            self._store = open_store(self.options.state, create=not self.read_only)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def known_tenants(self) -> set[str]:
        """The tenants the state has, found without creating or changing anything."""
        store = self._store or open_store(self.options.state, create=False, read_only=True)
        try:
            return set(store.tenants())
        finally:
            if store is not self._store:
                store.close()

    def load(self, reuse_state: bool = False) -> LoadedConfig:
        """The configuration, or ConfigError with every problem in it.

        ``reuse_state``: users files unchanged since the last apply are taken from the state
        instead of parsed (plan and apply; never ``validate``, which needs no state).
        """
        caches: dict[str, UsersCache] | None = None
        if reuse_state:
            store = self._store or open_store(
                self.options.state, create=False, read_only=self.read_only
            )
            if not isinstance(store, EmptyState):  # looking must not create a state
                self._store = store
                caches = {
                    name: _StateCache(store, name, *applied)
                    for name in store.tenants()
                    if (applied := store.applied_files(name)) is not None
                }
        return load_config(self.options.config, self.options.tenants or None, caches)

    @contextlib.contextmanager
    def locked(self, names: Collection[str]) -> Iterator[None]:
        """Hold the state lock of every tenant in ``names`` (in name order, so two runs over
        overlapping tenants cannot each wait for the other); "locked by …" is a UserError."""
        with contextlib.ExitStack() as stack:
            for name in sorted(names):
                try:
                    stack.enter_context(self.store.lock(name, self.options.lock_timeout))
                except StateLocked as exc:
                    raise UserError(f"{name}: {exc}") from None
            yield

    def tenant_names(self, loaded: LoadedConfig) -> list[str]:
        """Tenants this run covers: the configured ones plus those only the state knows (found
        without creating a state)."""
        names = set(loaded.tenants)
        in_state = self.known_tenants()
        if self.options.tenants:
            unknown = [n for n in loaded.missing if n not in in_state]
            if unknown:
                raise UserError(
                    f"no tenant folder {', '.join(unknown)} under "
                    f"{self.options.config} and no applied state for it"
                )
            names |= set(self.options.tenants) & in_state
        else:
            names |= in_state
        return sorted(names)

    def plan(self, loaded: LoadedConfig, names: list[str]) -> Plan:
        """The plan for ``names`` against the current state; ConfigError for refused requests."""
        tenants: list[TenantPlan] = []
        findings = []
        locales = self.locales()
        for name in names:
            config = loaded.tenants.get(name)
            if config is None:
                applied = self.store.load(name, users=False)
                assert applied is not None
                tenants.append(plan_missing(name, applied))
                continue
            applied = self._applied(config)
            if config.reused_from is not None and not _matches(config, applied):
                # Another apply moved the state since the files were matched: read them.
                config = load_config(loaded.root, [name]).tenants[name]
                applied = self.store.load(name)
            tenant_plan, found = plan_tenant(config, applied, locales)
            tenants.append(tenant_plan)
            findings.extend(found)
        if findings:
            raise ConfigError(locate_findings(loaded.root, findings))
        return Plan(tenants)

    def _applied(self, config: TenantConfig) -> Applied | None:
        """The state to plan ``config`` against: no user when no file changed, only the
        changed files' users when some did."""
        if config.unchanged_since is not None:
            return self.store.load(config.name, users=False)
        return self.store.load(config.name, skip=config.cached)


def _matches(config: TenantConfig, applied: Applied | None) -> bool:
    """``applied`` is the state ``config``'s reused files were matched against, and left their
    users out."""
    return (
        applied is not None
        and applied.serial == config.reused_from
        and (config.unchanged_since is not None or applied.skipped == config.cached)
    )


@dataclass
class _StateCache:
    """One tenant's applied state offered to the config loader (``config.UsersCache``)."""

    store: StateStore
    name: str
    serial: int
    files: dict[str, str]

    def users(self, files: Collection[str]) -> Mapping[str, UserRecord] | None:
        if not self.store.files_known(self.name, self.serial):
            return None
        return _UsersOnDemand(self, tuple(files))

    def clashes(
        self, files: Collection[str], upns: Collection[str], conference_ids: Collection[str]
    ) -> bool | None:
        return self.store.clashes(self.name, self.serial, files, upns, conference_ids)


class _UsersOnDemand(Mapping[str, UserRecord]):
    """The users of unchanged files, read from the state the first time anything asks (a
    saved plan, a comparison in a test); a plan never does."""

    def __init__(self, cache: _StateCache, files: tuple[str, ...]):
        self._cache, self._files = cache, files
        self._users: dict[str, UserRecord] | None = None

    def _read(self) -> dict[str, UserRecord]:
        if self._users is None:
            by_file = self._cache.store.file_users(
                self._cache.name, self._files, self._cache.serial
            )
            if by_file is None:
                raise UserError(
                    f"{self._cache.name}: the state changed while this command ran (another "
                    "apply?); nothing was done: run it again"
                )
            self._users = {upn: u for users in by_file.values() for upn, u in users.items()}
        return self._users

    def __getitem__(self, upn: str) -> UserRecord:
        return self._read()[upn]

    def __iter__(self) -> Iterator[str]:
        return iter(self._read())

    def __len__(self) -> int:
        return len(self._read())


def save_plan(plan: Plan, path: Path) -> None:
    """Write a saved plan: the plan as shown plus the configuration it was made from, and the
    lineage and serial it was made against. It holds no PIN (PINs exist only at apply).

    Written a batch of users at a time into a temporary file beside ``path``, renamed into
    place once complete: a 300,000-user plan is never one string, and a plan file is never
    half-written."""
    try:
        with tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", delete=False
        ) as file:
            try:
                file.writelines(_saved_chunks(plan))
                os.chmod(file.name, 0o666 & ~_umask())  # as an ordinary new file would be
                file.flush()
                os.fsync(file.fileno())
                os.replace(file.name, path)
            except BaseException:
                os.unlink(file.name)
                raise
    except OSError as exc:
        raise UserError(f"cannot write saved plan {path}: {exc.strerror or exc}") from None


def _saved_chunks(plan: Plan) -> Iterator[str]:
    yield f'{{"kind":{_json(SAVED_PLAN_KIND)},"format_version":{_json(FORMAT_VERSION)},"plan":'
    yield from json_output.chunks(plan)
    yield ',"configs":{'
    tenants = [t for t in plan.tenants if t.config is not None]
    for number, t in enumerate(tenants):
        config = t.config
        assert config is not None
        head = {
            "lineage": t.lineage,
            "serial": t.serial,
            "tenant": config.tenant,
            "files": config.files,
        }
        yield "," * bool(number) + f"{_json(t.name)}:" + _json(head)[:-1] + ',"users":{'
        for n, batch in enumerate(batched(config.users.items(), json_output.BATCH)):
            yield "," * bool(n) + _json(dict(batch))[1:-1]  # members, a batch at a time
        yield "}}"
    yield "}}"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_saved_plan(
    path: Path,
) -> tuple[dict[str, Any], dict[str, TenantConfig], dict[str, tuple[str | None, int]]]:
    """The saved plan's JSON plan, its configs and the (lineage, serial) each was made against.

    A plan file is data from outside, perhaps edited: it must match the ``saved_plan`` schema
    (``schemas/plan.schema.json``) and its records must pass the configuration's own checks
    before anything in it is used; otherwise a one-line refusal ``<planfile>: …``, and nothing
    is written.
    """
    document = _saved_document(path)
    if not isinstance(document, dict) or document.get("kind") != SAVED_PLAN_KIND:
        raise UserError(f"{path}: not a saved plan (make one with `reconciler plan --out`)")
    if document.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"{path}: plan format {document.get('format_version')!r}; this "
            f"reconciler reads format {FORMAT_VERSION!r}"
        )
    findings = schema.check(document, "plan.schema.json", str(path), definition="saved_plan")
    problems = [".".join(map(str, f.path)) + ": " * bool(f.path) + f.message for f in findings]
    for name, saved in ({} if findings else document["configs"]).items():
        problems.extend(
            saved_config_problems(name, saved["tenant"], saved["users"], saved["files"])
        )
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UserError(
            f"{path}: not a valid saved plan, was it edited? {problems[0]}{more}; "
            "make a new one with `reconciler plan --out`"
        )
    configs, expected = {}, {}
    for name, saved in document["configs"].items():
        configs[name] = TenantConfig(name, saved["tenant"], saved["users"], {}, saved["files"])
        expected[name] = (saved["lineage"], saved["serial"])
    return document["plan"], configs, expected


def _saved_document(path: Path) -> Any:
    """The JSON in a plan file, read only if it is a regular file of a sane size."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # before opening: a FIFO would block
            raise ValueError("not a regular file")
        with path.open("rb") as file:
            if (
                os.fstat(file.fileno()).st_size > MAX_SAVED_PLAN_BYTES
                or len(data := file.read(MAX_SAVED_PLAN_BYTES + 1)) > MAX_SAVED_PLAN_BYTES
            ):
                raise ValueError(f"larger than {MAX_SAVED_PLAN_BYTES // 2**20} MiB")
        return json.loads(data)
    except (OSError, ValueError, RecursionError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        if isinstance(exc, RecursionError):
            reason = "nested too deeply"
        raise UserError(f"{path}: cannot read this saved plan: {reason}") from None
