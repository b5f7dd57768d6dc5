"""Reusing the users files unchanged since the last apply, in the one place that knows of it.

A users file whose bytes (and ``tenant.yaml``'s, and the reconciler's) are those of the last
apply yields the users that apply recorded, so a plan of a 300,000-user tenant where one file
changed parses that file alone. The loader matches the files (``config.UsersCache``), the
state answers by file (``state.FileIndex``); here the two meet. The planner is told only which
users to compare (``plan.Scope``): the core's records name no file and no cache.
"""

from __future__ import annotations

import functools
from collections import ChainMap
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Protocol

from reconciler.config import Reused, UsersCache
from reconciler.errors import UserError
from reconciler.model import Applied, TenantConfig, UserRecord, Version
from reconciler.plan import Scope
from reconciler.state import AppliedState, FileIndex
from reconciler.views import OnDemand


def users_caches(store: FileIndex, tenants: Collection[str]) -> dict[str, UsersCache]:
    """What the loader may reuse of each applied tenant: its files' hashes, and its users by
    file on demand."""
    return {
        name: _StateCache(store, name, *applied)
        for name in tenants
        if (applied := store.applied_files(name)) is not None
    }


class ReusedState(AppliedState, FileIndex, Protocol):
    """A store the plan reads both ways: the applied state, and its users by file."""


def applied_and_scope(
    store: ReusedState, config: TenantConfig, reused: Reused
) -> tuple[Applied, Scope] | None:
    """The applied state to plan ``config`` against, and the users the plan compares; None
    when another apply moved the state since the files were matched, and the tenant must be
    read in full.

    Every user the plan does not compare is also in the applied record it keeps, read from
    the state only if something asks (a saved plan)."""
    applied = store.load(config.name, users=False)
    if applied is None or applied.version != reused.version:
        return None
    if reused.whole:
        applied.users = config.users  # exactly that state's: the same view
        return applied, Scope({}, {})
    rest = store.users_except(config.name, reused.version, reused.files)
    if rest is None:
        return None
    kept = _StateCache(store, config.name, reused.version, applied.files).on_demand(reused.files)
    applied.users = ChainMap(rest.users, kept)  # type: ignore[arg-type]
    return applied, Scope(reused.parsed, rest.users, rest.held, rest.enabled)


@dataclass
class _StateCache:
    """One tenant's applied state offered to the config loader (``config.UsersCache``)."""

    store: FileIndex
    name: str
    version: Version
    files: dict[str, str]

    def users(self, files: Collection[str]) -> Mapping[str, UserRecord] | None:
        if not self.store.files_known(self.name, self.version):
            return None
        return self.on_demand(files)

    def on_demand(self, files: Collection[str]) -> Mapping[str, UserRecord]:
        """The applied users of ``files``, read when first asked for."""
        return OnDemand(functools.partial(self._read_users, tuple(files)))

    def _read_users(self, files: tuple[str, ...]) -> dict[str, UserRecord]:
        """The users of unchanged files, from the state (a saved plan, a comparison in a test
        asks; a plan never does)."""
        by_file = self.store.file_users(self.name, files, self.version)
        if by_file is None:
            raise UserError(
                f"{self.name}: the state changed while this command ran (another "
                "apply?); nothing was done: run it again"
            )
        return {upn: u for users in by_file.values() for upn, u in users.items()}

    def clashes(
        self, files: Collection[str], upns: Collection[str], conference_ids: Collection[str]
    ) -> bool | None:
        return self.store.clashes(self.name, self.version, files, upns, conference_ids)
