"""Adopting a configuration without emails: ``import`` records it as the applied state.

For a tenant whose users already have Audio Conferencing (``init`` from an export, or YAML
written by hand): after the import, ``plan`` compares against what the users really have, and
only real changes send email. Importing over a tenant's existing state would forget what was
applied, so it is refused unless forced — checked once before locking and again under the lock,
in case an apply got in between.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from reconciler.errors import UserError
from reconciler.manager import Manager
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
