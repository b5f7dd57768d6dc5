"""A tenant folder from a Teams export: what ``reconciler init`` reads and writes.

Admins adopt an existing tenant from what PowerShell gives them (``Export-Csv``, with Windows
PowerShell 5's ``#TYPE`` line, or ``ConvertTo-Json``): one row per user with the cmdlets'
property names, numbers in any form the cmdlets accept, and optionally the bridge
(``Get-CsOnlineDialInConferencingBridge``) and the tenant settings
(``Get-CsOnlineDialInConferencingTenantSettings``). This module turns rows into the documents of
a tenant folder, remembering which row or file each value came from: the admin knows the export,
not the YAML checked on its behalf, so every problem — a row's, or one the configuration checks
find in what would be written — is named by its ``FILE:LINE`` (JSON: ``FILE:entry N``), all at
once.

Reading an export is ``export_reader.py`` (its text, a piece at a time, ``export_text.py``), a
value in it ``export_values.py``; the users come from ``export_users.py``, the bridge and the
settings from ``export_tenant.py``; this module puts their documents together as a tenant folder.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from reconciler.config import fmt_layout
from reconciler.config.export_reader import Export, ExportProblem, Place
from reconciler.config.export_tenant import Origins, bridge_from, settings_from
from reconciler.config.export_users import users_from
from reconciler.errors import DataPath, Finding, Problem


@dataclass
class TenantFolder:
    """A tenant folder's documents from the exports, where each value came from, and the
    problems the exports have on their own (a row's, a bridge number's, a setting's)."""

    tenant: dict[str, Any]
    users: dict[str, dict[str, Any]]
    origins: Origins
    problems: list[ExportProblem]
    notes: list[str]
    """What was assumed for the columns an export does not have."""
    said: frozenset[DataPath] = frozenset()
    """Paths whose problem is already among ``problems``, in the exports' terms."""

    def summary(self) -> str:
        """How many users init takes as what: the decision an admin checks before import."""
        kinds = Counter(
            ("Microsoft" if user.get("provider") is None else "other") if user["license"] else "no"
            for user in self.users.values()
        )
        return (
            f"{len(self.users)} user(s): {kinds['Microsoft']} licensed with Microsoft as "
            f"provider, {kinds['other']} licensed with another provider or none, "
            f"{kinds['no']} not licensed"
        )

    def files(self, per_file: int) -> Iterator[tuple[str, str]]:
        """The tenant folder's files, (path in the folder, text), as ``fmt`` lays them out:
        ``tenant.yaml``, then the users in UPN order, ``per_file`` to a file."""
        yield "tenant.yaml", fmt_layout.dump(self.tenant, "tenant", 0)
        ordered = sorted(self.users)
        chunks = [ordered[i : i + per_file] for i in range(0, len(ordered), per_file)] or [[]]
        for number, chunk in enumerate(chunks, start=1):
            users = {"users": {upn: self.users[upn] for upn in chunk}}
            yield f"users/users-{number:03d}.yaml", fmt_layout.dump(users, "users", 1)

    def all_problems(
        self, findings: Iterable[Finding], located: Iterable[Problem]
    ) -> list[ExportProblem]:
        """Every problem, sorted by file and line: the exports' own, and those the
        configuration checks found in the folder written from them (``findings`` by data path,
        ``located`` in a file), each named by the row or file its value came from — the folder
        is never kept, so its files would mean nothing to the admin."""
        found = list(self.problems)
        for finding in findings:
            if finding.path in self.said:
                continue
            path = finding.path
            while path not in self.origins:
                path = path[:-1]
            found.append(ExportProblem(self.origins[path], finding.message))
        whole = self.origins[()]
        found.extend(
            ExportProblem(whole, f"cannot be written as a tenant folder: {problem.message}")
            for problem in located
        )
        return sorted(found, key=lambda problem: problem.place)


def tenant_folder(
    users: Export, bridge: Export | None, settings: Export | None, default_number: str | None
) -> TenantFolder:
    """The tenant folder's documents from the exports read (``bridge`` and ``settings``
    optional), with where each value came from."""
    read = users_from(users)
    bridge_doc, origins, problems = bridge_from(read, bridge, default_number, users.file)
    settings_doc, more, most = settings_from(settings)
    origins.update(more)
    origins[()] = Place(users.file)
    origins.update({("users", upn): place for upn, place in read.places.items()})
    return TenantFolder(
        {"settings": settings_doc, "bridge": bridge_doc},
        read.documents,
        origins,
        read.problems + problems + most,
        read.notes,
        frozenset() if bridge_doc["numbers"] else frozenset({("bridge", "numbers")}),
    )
