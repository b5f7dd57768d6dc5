"""The loader: tenant folders into effective records, or every problem they have.

``load_config`` reads each tenant folder (``tenant.yaml``, ``users.yaml``, ``users/**/*.yaml``),
checks shape (JSON Schema) and meaning (``semantic``), and returns effective records. Problems are
gathered as findings by data path and located to ``file:line:column`` once, at the end, by
re-reading only the files that have them.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections import ChainMap, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from reconciler import __version__
from reconciler.config import schema, semantic
from reconciler.config.parsed import ParsedUsers
from reconciler.config.yamlload import YAMLProblem, load, locate
from reconciler.errors import ConfigError, Finding, Problem
from reconciler.model import (
    TenantConfig,
    TenantRecord,
    UserRecord,
    tenant_name_problem,
    text_problem,
)

MAX_FILE_BYTES = 64 * 1024 * 1024
"""Larger YAML files are refused: 100,000 users take about 15 MB."""
USERS_PATTERN = "*.y*ml"
LEAVES_CONFIG = "cannot use this folder: a symbolic link that leaves the configuration folder"
CACHE_KEY = "(reconciler)"
"""Entry of ``TenantConfig.files`` naming what effective records depend on besides the files."""
RECORDS_VERSION = 2
"""The shape of effective records (:mod:`reconciler.config.semantic`), recorded under
:data:`CACHE_KEY` with the package version: adding a default (2: ``email.pin`` and
``email.pin_self_service_url``) makes a state applied before it differ from its unchanged files,
so such a tenant is read and planned in full once (the new defaults show as setting changes),
never taken as unchanged."""


class UsersCache(Protocol):
    """The last applied state of one tenant, as the loader may reuse it: a users file whose
    bytes (and ``tenant.yaml``'s, and the reconciler's) are unchanged since it was applied
    yields the same effective users, so they are taken from the state instead of parsed."""

    @property
    def version(self) -> tuple[str, int]:
        """Which apply of which lineage the last one was (a serial alone starts again at 1
        after ``state forget``)."""

    @property
    def files(self) -> Mapping[str, str]:
        """What ``TenantConfig.files`` was at the last apply."""

    def users(self, files: Collection[str]) -> Mapping[str, UserRecord] | None:
        """The applied users of ``files``, read from the state only if something asks for them
        (a plan never does); None if the state cannot give them by file."""

    def clashes(
        self, files: Collection[str], upns: Collection[str], conference_ids: Collection[str]
    ) -> bool | None:
        """Whether a user of ``files`` has one of these UPNs or conference IDs (then the
        tenant is read in full, to find and locate the duplicates); None if the state cannot
        tell (moved meanwhile, or an older schema)."""


@dataclass(frozen=True)
class Reused:
    """What loading a tenant took from its applied state instead of parsing: the users of
    ``files``, unchanged since the apply ``version`` (lineage, serial), are that state's."""

    version: tuple[str, int]
    files: frozenset[str]
    parsed: Mapping[str, UserRecord]
    """The users of the other files, parsed now: the only ones that can differ from that
    state (none when no file changed)."""
    whole: bool
    """No file changed since that apply: the tenant is exactly that state."""


@dataclass
class LoadedConfig:
    root: Path
    tenants: dict[str, TenantConfig]
    missing: list[str] = field(default_factory=list)
    """Tenants asked for by name that have no folder."""
    reused: dict[str, Reused] = field(default_factory=dict)
    """The tenants some of whose users were taken from their applied state."""


def tenant_names(root: Path) -> list[str]:
    """Every tenant folder under the config root (hidden folders ignored)."""
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def nothing_to_read(root: Path) -> str:
    """Where the configuration was looked for and how to point at it: the first thing a
    newcomer sees when running outside the configuration repository."""
    where = root.absolute()
    found = f"no tenant folders in {where}" if root.is_dir() else f"no folder {where}"
    return (
        f"{found} (a tenant is <config>/<tenant>/tenant.yaml); run reconciler in the folder "
        "that holds tenants/, or pass --config DIR (env RECONCILER_CONFIG)"
    )


def inside(path: Path, root: Path) -> bool:
    """Whether ``path`` is inside ``root`` as the filesystem knows them (symbolic links
    followed): a folder under the configuration folder that is not leads out of it, so nothing
    in it is read, nor rewritten by fmt."""
    return _resolved(path).is_relative_to(_resolved(root))


def tenant_files(root: Path, name: str) -> tuple[list[str], list[Problem]]:
    """The YAML files of a tenant folder, as ``load_config`` finds them (relative to ``root``),
    and the located problems of entries it could not use: none in a folder that leaves
    ``root``, which is such a problem itself."""
    reader = _TenantReader(root, name)
    if not reader.contained():
        return [], reader.located
    tenant = f"{name}/tenant.yaml"
    files = ([tenant] if os.path.lexists(root / tenant) else []) + reader._user_files()
    return files, reader.located


def file_hashes(root: Path, name: str) -> dict[str, str] | None:
    """The content hash of every file of a tenant folder, keyed as ``TenantConfig.files``
    records them, without parsing anything: what a saved plan is bound to. None when the
    folder holds a file ``load_config`` could not use (it would refuse the folder)."""
    reader = _TenantReader(root, name)
    files, problems = tenant_files(root, name)
    for file in [] if problems else files:
        data = reader._bytes(file)
        if not isinstance(data, bytes):
            return None
        reader.hashes[file] = hashlib.sha256(data).hexdigest()
    return None if problems else reader.hashes


def load_config(
    root: Path,
    only: Sequence[str] | None = None,
    caches: Mapping[str, UsersCache] | None = None,
) -> LoadedConfig:
    """Load the tenants under ``root`` (or only the named ones); raise ConfigError with every
    problem of every tenant.

    ``caches`` (by tenant) lets unchanged users files be taken from the applied state. Only a
    tenant without any problem keeps that shortcut: otherwise it is read again in full, so
    every problem is found and located exactly as without a cache.
    """
    names = list(only) if only else tenant_names(root)
    if not only and not names:
        raise ConfigError([Problem(str(root), 1, 1, nothing_to_read(root))])
    result = LoadedConfig(root, {})
    problems: list[Problem] = []
    for name in names:
        if not (root / name).is_dir():
            result.missing.append(name)
            continue
        cache = (caches or {}).get(name)
        reader = _TenantReader(root, name, cache)
        config = reader.read()
        if reader.cached and (reader.findings or reader.located or reader.clash):
            reader = _TenantReader(root, name, None)
            config = reader.read()
        problems.extend(reader.problems())
        if config is not None:
            result.tenants[name] = config
        if reader.reused is not None:
            result.reused[name] = reader.reused
    if problems:
        raise ConfigError(problems)
    return result


def tenant_findings(root: Path, name: str) -> tuple[list[Finding], list[Problem]]:
    """Every problem :func:`load_config` finds in one tenant folder, those about a value still
    by its data path: ``init`` names the export row each value came from, not the YAML it
    writes only to check it."""
    reader = _TenantReader(root, name)
    reader.read()
    return reader.findings, reader.located


def locate_findings(root: Path, findings: Iterable[Finding]) -> list[Problem]:
    """Locate findings made after loading (plan-time checks) in their files."""
    by_file: dict[str, list[Finding]] = defaultdict(list)
    for finding in findings:
        by_file[finding.file].append(finding)
    problems = []
    for file, group in by_file.items():
        problems.extend(locate((root / file).read_bytes(), group))
    return problems


def is_tenant_file(name: str, file: str) -> bool:
    """``file`` could be a configuration file of tenant ``name``, as the loader names them."""
    head, *parts = file.split("/")
    return (
        head == name
        and PurePosixPath(file).match(USERS_PATTERN)
        and text_problem(file) is None
        and all(part not in ("", ".", "..") and "\\" not in part for part in parts)
    )


class _TenantReader:
    """Reads one tenant folder, collecting findings instead of stopping at the first."""

    def __init__(self, root: Path, name: str, cache: UsersCache | None = None):
        self.root, self.name, self.cache = root, name, cache
        self.folder = _resolved(root / name)
        """The tenant folder as the filesystem knows it: every file read must lie inside."""
        self.hashes: dict[str, str] = {CACHE_KEY: f"{__version__} records {RECORDS_VERSION}"}
        """Content hash of every file read; the bytes are not kept (re-read to locate errors)."""
        self.cached: set[str] = set()
        """Users files whose users came from the state, not from parsing."""
        self.reused: Reused | None = None
        self.clash = False
        """A user parsed may duplicate one taken from the state (or the state cannot tell):
        the tenant must be read again in full."""
        self.findings: list[Finding] = []
        self.located: list[Problem] = []

    def problems(self) -> list[Problem]:
        by_file: dict[str, list[Finding]] = defaultdict(list)
        for finding in self.findings:
            by_file[finding.file].append(finding)
        located = list(self.located)
        for file, group in by_file.items():
            located.extend(locate((self.root / file).read_bytes(), group))
        return located

    def read(self) -> TenantConfig | None:
        tenant_file = f"{self.name}/tenant.yaml"
        if why := tenant_name_problem(self.name):
            self.located.append(
                Problem(tenant_file, 1, 1, f"tenant folder name {self.name!r} {why}")
            )
        if not self.contained():
            return None
        doc = self._read(tenant_file, "tenant.schema.json")
        if doc is _MISSING:
            self.located.append(
                Problem(
                    tenant_file,
                    1,
                    1,
                    "missing tenant.yaml: every tenant folder needs one (settings and bridge)",
                )
            )
        tenant_ok = isinstance(doc, dict) and not self.findings and not self.located
        tenant = semantic.effective_tenant(doc if tenant_ok else {})
        if tenant_ok:
            self.findings.extend(semantic.check_tenant(tenant, tenant_file))
        users, sources = self._read_users(tenant, check_numbers=tenant_ok)
        if self.findings or self.located:
            return None
        return TenantConfig(self.name, tenant, users, sources, self.hashes)

    def contained(self) -> bool:
        """Whether the tenant folder is inside the configuration folder; if not, that is its
        one problem and nothing in it is read."""
        if inside(self.folder, self.root):
            return True
        self.located.append(Problem(self.name, 1, 1, LEAVES_CONFIG))
        return False

    def _read(self, file: str, schema_name: str) -> Any:
        text = self._bytes(file)
        if not isinstance(text, bytes):
            return text
        self.hashes[file] = hashlib.sha256(text).hexdigest()
        try:
            data = load(text, file, self.located)
        except YAMLProblem as exc:
            self.located.append(exc.problem)
            return _INVALID
        if data is None:
            data = {}
        if schema_name == "users.schema.json" and isinstance(data, dict):
            return self._check_users_file(data, file)
        found = schema.check(data, schema_name, file)
        self.findings.extend(found)
        return _INVALID if found else data

    def _bytes(self, file: str) -> bytes | object:
        """The bytes of a configuration file, ``_MISSING``, or ``_INVALID`` with a located
        problem: a file that is not a regular file inside the tenant folder (a symbolic link out
        of it could show a secret file's keys in an error), too large, or unreadable."""
        path = self.root / file
        try:
            target = path.resolve(strict=True)
        except FileNotFoundError:
            if not path.is_symlink():
                return _MISSING
            return self._unusable(file, "a broken symbolic link (its target does not exist)")
        except (RuntimeError, OSError) as exc:  # a symlink loop: RuntimeError up to 3.12
            return self._unusable(file, f"unreadable: {_reason(exc)}")
        if not target.is_relative_to(self.folder):
            return self._unusable(file, "a symbolic link that leaves the tenant folder")
        try:
            if not stat.S_ISREG(target.stat().st_mode):  # before opening: a FIFO would block
                return self._unusable(file, "not a regular file")
            with open(target, "rb") as handle:
                text = handle.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            return self._unusable(file, f"unreadable: {_reason(exc)}")
        if len(text) > MAX_FILE_BYTES:
            return self._unusable(file, f"larger than {MAX_FILE_BYTES // 2**20} MiB")
        return text

    def _unusable(self, file: str, why: str, what: str = "file") -> object:
        self.located.append(Problem(file, 1, 1, f"cannot use this {what}: {why}"))
        return _INVALID

    def _check_users_file(self, data: dict[str, Any], file: str) -> Any:
        """Check the file's frame, then each user record on its own, so one bad user does not
        hide the others and good users are still checked for meaning."""
        frame = {k: (v if k != "users" or not isinstance(v, dict) else {}) for k, v in data.items()}
        found = schema.check(frame, "users.schema.json", file)
        self.findings.extend(found)
        users = data.get("users")
        if not isinstance(users, dict):  # missing, null or not a mapping (reported above)
            return _INVALID if found else {}
        valid = {}
        for key, raw in users.items():
            problems = schema.check(raw, "users.schema.json", file, ("users", key), "user")
            if problems:
                self.findings.extend(problems)
            else:
                valid[key] = raw
        return valid

    def _user_files(self) -> list[str]:
        """``users.yaml`` and every users file under ``users/``, in a stable order. An entry
        that would be skipped silently (a symlinked folder, an unreadable folder) is a located
        problem instead, so no user goes missing without a word; files are checked on reading."""
        folder = self.root / self.name
        files = [f"{self.name}/users.yaml"] if os.path.lexists(folder / "users.yaml") else []
        pending = [folder / "users"] if (folder / "users").is_dir() else []
        self._misnamed(folder)
        found = []
        while pending:
            current = pending.pop()
            relative = current.relative_to(self.root).as_posix()
            if current.is_symlink():
                self._unusable(
                    relative, "a symbolic link (users folders must be real folders)", "folder"
                )
                continue
            try:
                entries = list(os.scandir(current))
            except OSError as exc:
                self._unusable(relative, f"unreadable: {_reason(exc)}", "folder")
                continue
            for entry in entries:
                path = Path(entry.path)
                if entry.is_dir(follow_symlinks=False) or (entry.is_symlink() and path.is_dir()):
                    pending.append(path)
                elif path.match(USERS_PATTERN):
                    found.append(path.relative_to(self.root).as_posix())
                elif meant := _meant(entry.name):
                    self._unusable(
                        path.relative_to(self.root).as_posix(),
                        "users files are read only when named *.yaml or *.yml exactly (lower "
                        f"case, no whitespace around the name); rename it to {meant!r}",
                    )
        return files + sorted(found)

    def _misnamed(self, folder: Path) -> None:
        """An entry of the tenant folder meant as ``users.yaml`` or ``users/`` but named
        otherwise (``Users.yaml``, ``users.yml``, ``users ``) is a located problem: it would
        not be read, and its users would be planned as removed."""
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return  # reading tenant.yaml reports the folder
        for entry in entries:
            what = "folder" if entry.is_dir() else "file"
            meant = "users" if what == "folder" else "users.yaml"
            if entry.name != meant and entry.name.strip().lower() in (meant, "users.yml"):
                self._unusable(
                    f"{self.name}/{entry.name}",
                    f"users are read from a {what} named {meant!r} exactly; rename it to {meant!r}",
                    what,
                )

    def _read_users(
        self, tenant: TenantRecord, check_numbers: bool
    ) -> tuple[Mapping[str, UserRecord], Mapping[str, tuple[str, str]]]:
        # With a broken tenant.yaml the bridge is unknown: its numbers are not checked against,
        # but everything else about each user still is, so all problems show in one run.
        numbers = semantic.bridge_numbers(tenant) if check_numbers else None
        files = self._user_files()
        reused = self._reusable(files) if check_numbers else None
        if reused is not None and self.reused is not None:
            return reused, {}  # checked when they were applied; not even read
        users = ParsedUsers()
        for file in files:
            if file in self.cached:
                continue
            raws = self._read(file, "users.schema.json")
            if not isinstance(raws, dict):
                continue
            read = []
            for key, raw in raws.items():
                user = semantic.effective_user(semantic.lower(key), raw, tenant)
                self.findings.extend(semantic.check_user(user, raw, key, file, tenant, numbers))
                read.append(((file, key), user))
            users.add(read)  # a file at a time: the tenant's users are never all in memory
        self.findings.extend(semantic.check_unique(users.repeated("upn"), "user"))
        self.findings.extend(
            semantic.check_unique(
                users.repeated("conference_id"), "conference_id", ("conference_id",)
            )
        )
        if reused is None:
            return users, users.sources
        assert self.cache is not None
        clash = self.cache.clashes(self.cached, list(users), users.conference_ids())
        self.clash = clash is not False
        self.reused = Reused(self.cache.version, frozenset(self.cached), users, whole=False)
        return ChainMap(users, reused), users.sources  # type: ignore[arg-type]

    def _reusable(self, files: list[str]) -> Mapping[str, UserRecord] | None:
        """The users of the files unchanged since the last apply, read from the state only if
        something asks (``cached`` names those files; ``reused`` is set when they are exactly
        the files of the last apply); None when nothing can be reused."""
        recorded = self.cache.files if self.cache is not None else {}
        tenant_file = f"{self.name}/tenant.yaml"
        if not recorded or any(
            recorded.get(k) != self.hashes.get(k) for k in (CACHE_KEY, tenant_file)
        ):
            return None
        unchanged = []
        for file in files:
            text = self._bytes(file)
            if not isinstance(text, bytes):
                return None
            digest = hashlib.sha256(text).hexdigest()
            if recorded.get(file) == digest:
                self.hashes[file] = digest
                unchanged.append(file)
        assert self.cache is not None
        found = self.cache.users(unchanged) if unchanged else None
        if found is None:
            return None
        self.cached.update(unchanged)
        if unchanged == files and set(files) == recorded.keys() - {CACHE_KEY, tenant_file}:
            self.reused = Reused(self.cache.version, frozenset(unchanged), {}, whole=True)
        return found


def _meant(name: str) -> str | None:
    """The users file name ``name`` differs from only in case or whitespace around it
    (``Sales.YAML``, ``sales.yaml `` → ``Sales.yaml``, ``sales.yaml``), or None."""
    stem, dot, suffix = name.strip().rpartition(".")
    if not (dot and stem and suffix.lower() in ("yaml", "yml")):
        return None
    return f"{stem}.{suffix.lower()}"


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (RuntimeError, OSError):
        return path.absolute()


def _reason(exc: Exception) -> str:
    """An OS error without its file name (already in the location), e.g. 'permission denied'."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return "symbolic link loop" if isinstance(exc, RuntimeError) else type(exc).__name__


_MISSING = object()
_INVALID = object()
