"""The users of a users export: each row as the users document ``init`` writes, or every
problem of the row.

A row is read alone (``drift`` compares each and lets it go); what a row cannot tell on its own
— a UPN or conference ID already on another row — is found by :func:`users_from`, which keeps
them all for ``init``. A column the export lacks means what the cmdlet's own export means
(:data:`ASSUMED`), and ``init`` says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.config.export_reader import (
    Export,
    ExportProblem,
    Place,
    Row,
    field_value,
    lower_keys,
)
from reconciler.config.export_values import boolean, e164, named, stripped
from reconciler.config.fmt_layout import MAX_KEY
from reconciler.model import PROVIDERS

CMDLET = "Get-CsOnlineDialInConferencingUser"
ASSUMED = {
    "license": ("License", "every user is taken as licensed", "with Audio Conferencing"),
    "provider": (
        "Provider",
        "every user is taken to have Microsoft as provider",
        "whose provider is Microsoft",
    ),
}
"""What a users export without the column means: the cmdlet lists only the users who have
Audio Conferencing with Microsoft as provider, so its plain export has neither column."""


Number = tuple[str, str, str | None, Place]
"""A bridge number as an export gives it: (E.164, ``toll`` or ``toll_free``, location, place)."""


@dataclass
class Users:
    """What a users export gives: the users of the rows without a problem, by UPN
    (lower-cased), the row of each, every row's problems, and what was assumed for a column
    the export does not have."""

    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    places: dict[str, Place] = field(default_factory=dict)
    problems: list[ExportProblem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    numbers: list[Number] = field(default_factory=list)
    """The valid numbers of every row, in row order: a row's other problem does not hide the
    bridge number it shows."""


def users_from(export: Export) -> Users:
    """Every row as a user, or every problem of the row: a row with a problem is left out.

    Without a License column every row is licensed, without a Provider column its provider is
    Microsoft: a column the export has always wins."""
    result = Users(problems=list(export.problems), notes=assumed(export))
    upns: dict[str, Place] = {}
    conference_ids: dict[str, Place] = {}
    for place, (key, user, numbers, problems) in user_rows(export, export.rows):
        if "@" in key and (first := _claim(upns, key, place)):
            problems.append(f"{key} is also on {first}")
        conference = user.get("conference_id")
        if conference and (first := _claim(conference_ids, conference, place)):
            problems.append(f"conference ID {conference!r} is also on {first}")
        result.numbers.extend((*number, place) for number in numbers)
        if problems:
            result.problems.extend(ExportProblem(place, problem) for problem in problems)
        else:
            result.documents[key] = user
            result.places[key] = place
    return result


def assumed(export: Export) -> list[str]:
    """What is assumed for each of the License and Provider columns the users export lacks."""
    return [
        f"{export.file}: no {column} column: {meaning} ({CMDLET} lists only users {listed})"
        for name, (column, meaning, listed) in ASSUMED.items()
        if not export.has(name)
    ]


UserRow = tuple[str, dict[str, Any], list[tuple[str, str, str | None]], list[str]]
"""A users export row read: UPN (lower-cased), users document (as ``init`` writes it: what
equals the default left out), numbers (E.164, type, location), problems."""


def user_rows(export: Export, rows: Iterable[Row]) -> Iterator[tuple[Place, UserRow]]:
    """Each row of a users export read as a user, one at a time (``init`` keeps them, ``drift``
    compares each and lets it go); without a License column every row is licensed."""
    licensed = not export.has("license")
    for place, row in rows:
        yield place, _user(row, licensed)


def _claim(claimed: dict[str, Place], value: str, place: Place) -> Place | None:
    """The place that already has ``value``, or None after claiming it for ``place``."""
    first = claimed.setdefault(value, place)
    return None if first == place else first


def _user(row: Mapping[str, Any], licensed: bool) -> UserRow:
    """One row: its UPN (lower-cased), its users document, its numbers (E.164, type,
    location), and every problem it has; ``licensed``: the export has no License column."""
    problems: list[str] = []
    upn = str(field_value(row, "upn") or "").strip()
    upn = upn[4:] if upn.lower().startswith("sip:") else upn
    if "@" not in upn:
        problems.append("no UserPrincipalName (or SipAddress)")
    elif len(upn) > MAX_KEY:  # no sign-in address is; YAML cannot write it as a key
        problems.append(f"UserPrincipalName is longer than {MAX_KEY} characters")
    license_ = licensed or boolean(field_value(row, "license"))
    if license_ is None:
        problems.append("License must be true or false (or list AudioConferencing)")
    user: dict[str, Any] = {"license": bool(license_)}
    provider = str(field_value(row, "provider") or "Microsoft").strip()
    match = named(provider, PROVIDERS)
    if match is None:
        problems.append(f"Provider {provider!r} is not one of {', '.join(PROVIDERS)}")
    elif match != "Microsoft":
        user["provider"] = match
    if (name := field_value(row, "display_name")) is not None:
        user["display_name"] = str(name).strip()
    if (conference := field_value(row, "conference_id")) is not None:
        user["conference_id"] = str(conference).strip()
    numbers = []
    for name, kind, where in (
        ("dial_in_number", "toll", "location"),
        ("toll_free_number", "toll_free", "toll_free_location"),
    ):
        raw = field_value(row, name)
        if raw is None:
            continue
        number = e164(raw)
        if number is None:
            problems.append(f"{raw!r} is not a valid phone number")
            continue
        user[name] = number
        inside = field_value(lower_keys(raw), "location") if isinstance(raw, dict) else None
        numbers.append((number, kind, stripped(inside or field_value(row, where))))
    key = upn.lower()
    if (email := field_value(row, "email")) is not None and str(email).lower() != key:
        user["email"] = str(email).strip()
    if (locale := field_value(row, "locale")) is not None:
        user["locale"] = str(locale).strip()
    return key, user, numbers, problems
