"""Adopting a tenant without emails: ``init`` writes its folder from a live export, and
``import`` records a configuration as the applied state.

For a tenant whose users already have Audio Conferencing (``init`` from an export, or YAML
written by hand): after the import, ``plan`` compares against what the users really have, and
only real changes send email. Importing over a tenant's existing state would forget what was
applied, so it is refused unless forced — checked once before locking and again under the lock,
in case an apply got in between.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from reconciler.config import export, export_reader, tenant_findings
from reconciler.errors import UserError
from reconciler.manager import Manager
from reconciler.model import tenant_name_problem
from reconciler.state import Commit, StaleState


@dataclass(frozen=True)
class Imported:
    tenant: str
    users: int
    serial: int


def run_import(manager: Manager, force: bool = False) -> list[Imported]:
    """Record every configured tenant as applied, sending nothing; one transaction each."""
    loaded = manager.load()
    store = manager.store
    _refuse_overwrite([n for n in loaded.tenants if store.load(n, users=False) is not None], force)
    done = []
    for name, config in sorted(loaded.tenants.items()):
        with manager.locked([name]):
            applied = store.load(name, users=False)
            _refuse_overwrite([name] if applied is not None else [], force)
            expected = (applied.lineage, applied.serial) if applied else (None, 0)
            change = Commit(
                config.tenant,
                config.users,
                [],
                config.files,
                [],
                uuid.uuid4().hex,
                kind="import",
                replace=True,
                sources=config.source_files(),
            )
            try:
                _, serial = store.commit(name, expected, change)
            except StaleState as exc:
                raise UserError(str(exc)) from None
        done.append(Imported(name, len(config.users), serial))
    return done


def _refuse_overwrite(existing: list[str], force: bool) -> None:
    if existing and not force:
        raise UserError(
            f"{', '.join(existing)} already has applied state; importing would "
            "overwrite it (pass --force to do so on purpose)"
        )


@dataclass
class Initialised:
    """What ``init`` found in the export and wrote (nothing when ``problems``)."""

    notes: list[str]
    problems: list[export_reader.ExportProblem]
    summary: str = ""
    files: int = 0
    users: int = 0


def run_init(
    config: Path,
    name: str,
    exports: tuple[Path, Path | None, Path | None],
    default_number: str | None,
    users_per_file: int,
) -> Initialised:
    """Write tenant ``name``'s folder under ``config`` from a live export (users, bridge,
    settings): written in a staging folder and checked there like any tenant, then renamed into
    place, so a tenant with problems leaves nothing behind. Never overwrites a tenant."""
    if why := tenant_name_problem(name):
        raise UserError(f"tenant {name!r} {why}")
    if (config / name).exists():
        raise UserError(f"{config / name} already exists; init never overwrites a tenant")
    users, bridge, settings = exports
    documents = export.tenant_folder(
        export_reader.read_export(users),
        export_reader.read_export(bridge) if bridge else None,
        export_reader.read_export(settings) if settings else None,
        default_number,
    )
    done = Initialised(list(documents.notes), [])
    try:
        config.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".init-", dir=config))
    except OSError as exc:
        raise UserError(f"cannot write under {config} ({exc.strerror or exc})") from None
    try:
        folder = staging / name
        try:
            for relative, text in documents.files(users_per_file):
                path = folder / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
                done.files += 1
            done.problems = documents.all_problems(*tenant_findings(staging, name))
            if not done.problems:
                folder.rename(config / name)
        except OSError as exc:
            raise UserError(
                f"cannot write the tenant folder {config / name} ({exc.strerror or exc}); "
                "nothing was written"
            ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    done.summary, done.users = documents.summary(), len(documents.users)
    return done
