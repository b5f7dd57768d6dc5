"""Drift: which side moved, the live tenant (a Teams export) or git (the YAML), per value.

Part of the core: standard library and the vocabulary only. The flow (``drift_run.py``) reads
the export and the configuration and hands each user, setting and bridge number here with its
three values — live, git (the effective YAML) and applied (the state) — and this module says
what kind of drift it is and what to do about it. Git and the state agreeing means the
reconciler's side did not move, so a live value that differs was changed in Teams; git
differing from the state (or nothing applied yet) means the change is ours and Teams has not
caught up.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from reconciler.model import UserRecord, is_enabled

Kind = Literal[
    "changed_in_teams", "not_yet_in_teams", "only_in_teams", "only_in_git", "microsoft_emails"
]
KINDS: tuple[Kind, ...] = (
    "microsoft_emails",
    "changed_in_teams",
    "not_yet_in_teams",
    "only_in_teams",
    "only_in_git",
)
"""Every kind, in the order reports list them: the one that doubles users' emails first."""

TITLES: dict[Kind, str] = {
    "microsoft_emails": "Users also get Microsoft's email",
    "changed_in_teams": "Changed in Teams, not in git",
    "not_yet_in_teams": "In git, not yet in Teams",
    "only_in_teams": "Users only in Teams",
    "only_in_git": "Users only in git",
}
NEXT_STEPS: dict[Kind, str] = {
    "microsoft_emails": (
        "AutomaticallySendEmailsToUsers is on in Teams while the reconciler sends the emails, "
        "so users get Microsoft's email too for the same changes: turn it off in Teams "
        "(Set-CsOnlineDialInConferencingTenantSettings -AutomaticallySendEmailsToUsers $false)"
    ),
    "changed_in_teams": (
        "to keep the Teams value, write it in the YAML and, once `reconciler plan` shows no "
        "other change for the tenant (import adopts every change it has, without emails), "
        "record it (reconciler import --force --tenant {tenant}); to undo it, change it back "
        "in Teams"
    ),
    "not_yet_in_teams": (
        "make the Teams change the YAML asks for (Teams admin center or "
        "Set-CsOnlineDialInConferencingUser), or change the YAML back"
    ),
    "only_in_teams": (
        "add the user to the YAML and, once `reconciler plan` shows no other change for the "
        "tenant, record it without emails (reconciler import --force --tenant {tenant}), or "
        "remove their Audio Conferencing in Teams"
    ),
    "only_in_git": (
        "give the user Audio Conferencing in Teams (license, Microsoft as provider), or "
        "remove them from the YAML"
    ),
}


def next_step(kind: Kind, tenant: str) -> str:
    """What to do about findings of ``kind`` in ``tenant``."""
    return NEXT_STEPS[kind].replace("{tenant}", tenant)


USER_FIELDS = (
    "license",
    "provider",
    "display_name",
    "conference_id",
    "dial_in_number",
    "toll_free_number",
    "email",
    "locale",
)
"""What a users export can show of a user (the requests ``pin_reset`` and
``send_conference_info`` are ours alone)."""
DETAILS = frozenset({"conference_id", "dial_in_number", "toll_free_number"})
"""Compared only for a user enabled on both sides: Teams keeps no details of a user without
Audio Conferencing, and no email carries them."""
ENABLED = "enabled"
"""The field compared when the export has neither a License nor a Provider column: the cmdlet
lists only users with Audio Conferencing from Microsoft, so being listed is being enabled."""
EMAILS_SETTING = "automatically_send_emails_to_users"


@dataclass(frozen=True)
class Drifted:
    """One value that differs: ``subject`` (``user``, ``setting``, ``bridge``) ``name`` (a UPN,
    a setting, a bridge number), the ``field`` of a user or bridge number (None for a whole
    user or a setting), the three values, and the export row it was read from."""

    kind: Kind
    subject: Literal["user", "setting", "bridge"]
    name: str
    field: str | None
    live: Any
    git: Any
    applied: Any
    place: str | None = None


@dataclass
class DriftReport:
    """A tenant's drift: the findings, what could not be compared and why, and counts."""

    tenant: str
    state: tuple[str | None, int]
    """The applied state compared with: (lineage, serial); (None, 0) when there is none."""
    findings: list[Drifted] = field(default_factory=list)
    not_compared: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    live_users: int = 0
    git_users: int = 0

    @property
    def has_drift(self) -> bool:
        return bool(self.findings)

    def counts(self) -> dict[Kind, int]:
        counts = dict.fromkeys(KINDS, 0)
        for finding in self.findings:
            counts[finding.kind] += 1
        return counts

    def ordered(self) -> Iterator[Drifted]:
        """The findings by kind (:data:`KINDS`), then as found (export order, then names)."""
        for kind in KINDS:
            yield from (f for f in self.findings if f.kind == kind)


def side_moved(live: Any, git: Any, applied: Any, has_applied: bool) -> Kind | None:
    """Which side moved for one value, or None when Teams has what git says. Git equal to
    the applied state: ours did not move, Teams did. Otherwise the change is in git and
    Teams does not have it yet (or both moved: Teams must still be made to match git)."""
    if live == git:
        return None
    if has_applied and git == applied:
        return "changed_in_teams"
    return "not_yet_in_teams"


def live_user(
    document: Mapping[str, Any], upn: str, compared: Collection[str], default_number: str | None
) -> dict[str, Any]:
    """A users export row's document (as ``init`` writes it: defaults left out) as effective
    values, for the fields the export has a column for. An empty ServiceNumber is the bridge's
    default number, as for a YAML user without one."""
    defaults = {"provider": "Microsoft", "email": upn, "dial_in_number": default_number}
    return {name: document.get(name, defaults.get(name)) for name in compared}


def user_findings(
    upn: str,
    live: Mapping[str, Any] | None,
    git: UserRecord | None,
    applied: Callable[[], UserRecord | None],
    compared: Collection[str],
    has_applied: bool,
    place: str | None = None,
) -> list[Drifted]:
    """A user's drift: ``live`` its effective values in the export (None: not listed),
    ``git`` its YAML record (None: not in the YAML), ``applied`` its record in the state, asked
    only when something differs. ``compared``: the fields the export has columns for; with
    neither License nor Provider, being listed is being enabled (:data:`ENABLED`)."""
    by_presence = "license" not in compared and "provider" not in compared
    if live is None:
        if git is None or not is_enabled(git):
            return []  # absent from Teams is not enabled: so is this user in git
        return [Drifted("only_in_git", "user", upn, None, None, True, None, place)]
    live_enabled = by_presence or is_enabled(_with_defaults(live))
    if git is None:
        if not live_enabled:
            return []  # absent from the YAML is not enabled: so is this user
        return [Drifted("only_in_teams", "user", upn, None, True, None, None, place)]
    found: list[Drifted] = []
    before: list[UserRecord | None] = []

    def applied_value(name: str) -> Any:
        if not before:
            before.append(applied())
        record = before[0]
        if name == ENABLED:
            return is_enabled(record) if record is not None else None
        return record.get(name) if record is not None else None

    fields = [name for name in USER_FIELDS if name in compared]
    if by_presence:
        fields.insert(0, ENABLED)
    both_enabled = live_enabled and is_enabled(git)
    for name in fields:
        if name in DETAILS and not both_enabled:
            continue
        live_value = True if name == ENABLED else live.get(name)
        git_value = is_enabled(git) if name == ENABLED else git.get(name)
        if live_value == git_value:
            continue
        old = applied_value(name)
        kind = side_moved(live_value, git_value, old, has_applied)
        if kind is not None:
            found.append(Drifted(kind, "user", upn, name, live_value, git_value, old, place))
    return found


def _with_defaults(live: Mapping[str, Any]) -> UserRecord:
    """``live`` with license and provider taken as enabled where the export lacks them."""
    merged: dict[str, Any] = {"license": True, "provider": "Microsoft", **live}
    return merged  # type: ignore[return-value]


def settings_findings(
    live: Mapping[str, Any],
    git: Mapping[str, Any],
    applied: Mapping[str, Any] | None,
    place: str | None = None,
) -> list[Drifted]:
    """The tenant settings the export gives, against git's and the state's. A live
    ``AutomaticallySendEmailsToUsers`` on while git has the reconciler send the emails is not
    a setting to align but a finding of its own (users get two emails); the setting is never
    compared otherwise: in the YAML it says whether the reconciler sends, not what Teams does."""
    found: list[Drifted] = []
    for name, live_value in live.items():
        if name == EMAILS_SETTING:
            if live_value is True and git.get(name) is True:
                before = applied.get(name) if applied is not None else None
                found.append(
                    Drifted("microsoft_emails", "setting", name, None, True, True, before, place)
                )
            continue
        before = applied.get(name) if applied is not None else None
        kind = side_moved(live_value, git.get(name), before, applied is not None)
        if kind is not None:
            found.append(
                Drifted(kind, "setting", name, None, live_value, git.get(name), before, place)
            )
    return found


def bridge_findings(
    live_numbers: Mapping[str, tuple[str, str | None]],
    live_default: str | None,
    git: Mapping[str, Any],
    applied: Mapping[str, Any] | None,
    place: str | None = None,
) -> list[Drifted]:
    """The bridge's numbers (number → (type, location or None when the export gives none))
    and default number, against git's bridge and the state's. A number missing on one side has
    ``type`` None there; a location is compared only where the export gives one."""

    def numbers(bridge: Mapping[str, Any] | None) -> dict[str, tuple[str, str | None]]:
        entries = (bridge or {}).get("numbers") or []
        return {e["number"]: (e.get("type"), e.get("location")) for e in entries}

    ours, before = numbers(git), numbers(applied)
    has_applied = applied is not None
    found: list[Drifted] = []
    for number in sorted(set(live_numbers) | set(ours)):
        live_type, live_location = live_numbers.get(number, (None, None))
        git_type, git_location = ours.get(number, (None, None))
        old_type, old_location = before.get(number, (None, None))
        kind = side_moved(live_type, git_type, old_type, has_applied)
        if kind is not None:
            found.append(
                Drifted(kind, "bridge", number, "type", live_type, git_type, old_type, place)
            )
        elif live_location is not None and live_type is not None:
            kind = side_moved(live_location, git_location, old_location, has_applied)
            if kind is not None:
                found.append(
                    Drifted(
                        kind,
                        "bridge",
                        number,
                        "location",
                        live_location,
                        git_location,
                        old_location,
                        place,
                    )
                )
    if live_default is not None:
        old_default = (applied or {}).get("default_number")
        kind = side_moved(live_default, git.get("default_number"), old_default, has_applied)
        if kind is not None:
            found.append(
                Drifted(
                    kind,
                    "bridge",
                    "default_number",
                    None,
                    live_default,
                    git.get("default_number"),
                    old_default,
                    place,
                )
            )
    return found
