"""``reconciler drift``: a live Teams export against the YAML and the applied state, read-only.

The export is read with the reader ``init`` uses (``config/export_reader.py``), its users one
row at a time: each is compared as it is read and let go, so a 300,000-user export is never
300,000 dicts (a JSON export is parsed whole; a CSV one streams). The YAML users are the loader's
(kept on disk, :mod:`reconciler.config.parsed`), the applied ones the state's digests, a record
read only when a value differs. When no file changed since the last apply, the YAML *is* the
applied state and only the state is read.

Nothing is written: the state is opened read-only (a missing one is an empty state, never
created), no lock is taken, no email is composed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.config import load_config
from reconciler.config.export_reader import (
    USER_COLUMNS,
    Export,
    ExportProblem,
    Place,
    open_export,
    read_export,
)
from reconciler.config.export_tenant import bridge_numbers, live_settings
from reconciler.config.export_users import user_rows
from reconciler.drift import (
    USER_FIELDS,
    Drifted,
    DriftReport,
    bridge_findings,
    live_user,
    settings_findings,
    user_findings,
)
from reconciler.errors import UserError
from reconciler.manager import Manager
from reconciler.model import SETTINGS_DEFAULTS, Applied, TenantConfig, UserRecord, is_enabled


class ExportProblems(Exception):
    """Rows or files of the export that cannot be read: every one, sorted, ``FILE:LINE``."""

    def __init__(self, problems: list[ExportProblem]):
        self.problems = sorted(problems, key=lambda problem: problem.place)
        super().__init__("\n".join(map(str, self.problems)))


@dataclass(frozen=True)
class LiveExport:
    """The files of one live export: users (required), bridge and settings (optional)."""

    users: Path
    bridge: Path | None = None
    settings: Path | None = None


def run_drift(manager: Manager, tenant: str, live: LiveExport) -> DriftReport:
    """The drift of ``tenant``; :class:`ExportProblems` when the export has bad rows (no
    partial report: a row left out would read as a user only in git)."""
    sides = _sides(manager, tenant)
    applied = sides.applied
    report = DriftReport(
        tenant,
        (applied.lineage, applied.serial) if applied else (None, 0),
        git_users=len(sides.git_users),
    )
    if applied is None:
        report.notes.append(
            f"{tenant} has no applied state: every difference is taken as in git, not yet in "
            "Teams (`reconciler import` records the YAML as applied without emails)"
        )
    problems: list[ExportProblem] = []
    bridge = read_export(live.bridge) if live.bridge else None
    settings = read_export(live.settings) if live.settings else None
    tenant_record = sides.config.tenant
    live_default = _compare_tenant(report, tenant_record, applied, bridge, settings, problems)
    users, rows = open_export(live.users)
    compared = [name for name in USER_FIELDS if users.has(name)]
    _name_missing_columns(report, users, compared)
    default = live_default or tenant_record["bridge"].get("default_number")
    seen: set[str] = set()
    for place, (upn, document, _, row_problems) in user_rows(users, rows):
        if "@" in upn and upn in seen:
            row_problems.append(f"{upn} is also on an earlier row")
        if row_problems:
            problems.extend(ExportProblem(place, problem) for problem in row_problems)
            continue
        seen.add(upn)
        values = live_user(document, upn, compared, default)
        report.findings.extend(sides.findings(upn, values, compared, str(place)))
    problems.extend(users.problems)
    if not seen and not problems and any(map(is_enabled, sides.git_users.values())):
        problems.append(
            ExportProblem(
                Place(users.file),
                "no user in this export while the YAML enables some: the wrong file, or an "
                "export that failed? Every one of them would be reported as only in git",
            )
        )
    if problems:
        raise ExportProblems(problems)
    report.live_users = len(seen)
    for upn in sorted(upn for upn in sides.git_users if upn not in seen):
        report.findings.extend(sides.findings(upn, None, compared))
    return report


@dataclass(frozen=True)
class _Sides:
    """The git and applied sides of one tenant, as drift compares a live user with them."""

    config: TenantConfig
    applied: Applied | None
    git_users: Mapping[str, UserRecord]
    fast: bool
    """Nothing changed in git since the last apply: the state's users are the git side."""

    def findings(
        self,
        upn: str,
        live: Mapping[str, Any] | None,
        compared: list[str],
        place: str | None = None,
    ) -> list[Drifted]:
        """``upn``'s drift, its live values ``live`` (None: not in the export)."""
        applied_users: Mapping[str, UserRecord] = self.applied.users if self.applied else {}
        same = getattr(applied_users, "same", None)
        git = self.git_users.get(upn)
        before = _applied_of(upn, git, applied_users, same, self.fast)
        return user_findings(upn, live, git, before, compared, self.applied is not None, place)


def _sides(manager: Manager, tenant: str) -> _Sides:
    """The YAML (in full, or the state's users when no file changed since the last apply) and
    the applied state, read-only."""
    manager.read_only = True
    loaded = manager.load(reuse_state=True)
    config = loaded.tenants.get(tenant)
    if config is None:
        raise UserError(f"no tenant folder {tenant} under {manager.options.config}")
    applied = manager.reader.load(tenant)
    reused = loaded.reused.get(tenant)
    fast = (
        applied is not None
        and reused is not None
        and reused.whole
        and reused.version == applied.version
    )
    if not fast and reused is not None:
        config = load_config(loaded.root, [tenant]).tenants[tenant]  # every user, parsed
    git_users = applied.users if fast and applied is not None else config.users
    return _Sides(config, applied, git_users, fast)


def _applied_of(
    upn: str,
    git: UserRecord | None,
    applied: Mapping[str, UserRecord],
    same: Callable[[str, UserRecord], bool] | None,
    fast: bool,
) -> Callable[[], UserRecord | None]:
    """The applied record of ``upn``, read only when asked: the YAML record itself when the
    state holds exactly it (its digest), else the state's."""

    def read() -> UserRecord | None:
        if git is not None and (fast or (same is not None and same(upn, git))):
            return git
        return applied.get(upn)

    return read


def _compare_tenant(
    report: DriftReport,
    tenant: Mapping[str, object],
    applied: object,
    bridge: Export | None,
    settings: Export | None,
    problems: list[ExportProblem],
) -> str | None:
    """Settings and bridge findings into ``report``; the live default number, if given."""
    before = getattr(applied, "tenant", None)
    git_settings = tenant["settings"]
    git_bridge = tenant["bridge"]
    assert isinstance(git_settings, dict) and isinstance(git_bridge, dict)
    if settings is None:
        report.not_compared.append(
            "tenant settings, and whether Teams sends its own emails "
            "(AutomaticallySendEmailsToUsers): no --settings export given"
        )
    else:
        values, place, more = live_settings(settings)
        problems.extend(more)
        missing = [key for key in SETTINGS_DEFAULTS if key not in values]
        if missing:
            report.not_compared.append(
                f"settings {', '.join(missing)}: not in {settings.file} (or empty there)"
            )
        report.findings.extend(
            settings_findings(
                values, git_settings, before["settings"] if before else None, str(place)
            )
        )
    if bridge is None:
        report.not_compared.append("the bridge's numbers: no --bridge export given")
        return None
    offered, default, _, more = bridge_numbers(bridge)
    problems.extend(more)
    numbers: dict[str, tuple[str, str | None]] = {}
    for number, kind, location, _place in offered:
        numbers.setdefault(number, (kind, location))
    if default is None:
        report.not_compared.append(
            f"the bridge's default number: no DefaultServiceNumber in {bridge.file}"
        )
    report.findings.extend(
        bridge_findings(
            numbers, default, git_bridge, before["bridge"] if before else None, bridge.file
        )
    )
    return default


COLUMN_NAMES = {
    "license": "License",
    "provider": "Provider",
    "display_name": "DisplayName",
    "conference_id": "ConferenceId",
    "dial_in_number": "ServiceNumber",
    "toll_free_number": "TollFreeServiceNumber",
    "email": "SendEmailToAddress",
    "locale": "Locale",
}
"""The column a user field is read from, as the admin knows it (:data:`USER_COLUMNS` lists
every spelling accepted)."""


def _name_missing_columns(report: DriftReport, users: Export, compared: list[str]) -> None:
    """Each user field the export has no column for, named, never guessed."""
    missing = [name for name in USER_FIELDS if name not in compared]
    assert set(COLUMN_NAMES) == set(USER_FIELDS) and set(USER_FIELDS) <= set(USER_COLUMNS)
    if "license" in missing and "provider" in missing:
        report.notes.append(
            f"{users.file} has no License or Provider column, as "
            "Get-CsOnlineDialInConferencingUser lists only users with Audio Conferencing "
            "from Microsoft: a listed user is compared as enabled, and a YAML user "
            "who is not enabled is not expected in it"
        )
    for name in missing:
        report.not_compared.append(
            f"{name} of each user: {users.file} has no {COLUMN_NAMES[name]} column"
        )
