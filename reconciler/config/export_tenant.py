"""The ``tenant.yaml`` sections from the exports: the bridge (a bridge export's numbers and
those the users show, the default number) and the tenant settings that differ from their
defaults, each value with the place it came from."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from reconciler.config.export_reader import Export, ExportProblem, Place, field_value, lower_keys
from reconciler.config.export_users import Number, Users
from reconciler.config.export_values import boolean, e164, named, stripped
from reconciler.errors import DataPath
from reconciler.model import SETTINGS_DEFAULTS

ENUM_SETTINGS = {
    # ConvertTo-Json without -EnumsAsStrings writes a .NET enum as its number: the names are in
    # the order Microsoft's Set-CsOnlineDialInConferencingTenantSettings documentation lists them.
    "entry_exit_announcements_type": ("EntryExitAnnouncementsType", ("UseNames", "ToneOnly")),
    "mask_pstn_numbers_type": (
        "MaskPstnNumbersType",
        ("MaskedForExternalUsers", "MaskedForAllUsers", "NoMasking"),
    ),
}
"""Tenant settings that are .NET enums: our key → (PowerShell name, names by number)."""


Origins = dict[DataPath, Place]
"""Where the values of the written documents came from, by data path (``("users", upn)``,
``("bridge", "numbers", 0)``…); a value's place is that of its longest path listed here."""


def bridge_from(
    users: Users, bridge: Export | None, default_number: str | None, source: str
) -> tuple[dict[str, Any], Origins, list[ExportProblem]]:
    """The ``bridge`` section: the numbers of a bridge export and those the users have, each
    with the location either gives; the default number from ``--default-number``, else the
    bridge export, else the users' most common."""
    option = Place("--default-number")
    default = e164(default_number) if default_number else None
    default_at = option if default else None
    problems: list[ExportProblem] = []
    if default_number and default is None:
        problems.append(ExportProblem(option, f"{default_number!r} is not a valid phone number"))
    offered: list[Number] = []
    if bridge is not None:
        offered, live_default, live_at, more = bridge_numbers(bridge)
        problems.extend(more)
        if default is None and live_default is not None:
            default, default_at = live_default, live_at
    whole = Place(bridge.file if bridge is not None else source)
    if not offered and not users.numbers and default:
        offered.append((default, "toll", None, default_at or whole))
    numbers, origins = _numbers_section([*offered, *users.numbers], problems)
    if not numbers:
        problems.append(
            ExportProblem(
                whole,
                "no bridge number: give --bridge FILE or --default-number, or "
                "ServiceNumber values in the users",
            )
        )
    if default is None:
        tolls = Counter(number for number, kind, _, _ in users.numbers if kind == "toll")
        default, default_at = (tolls.most_common(1)[0][0], Place(source)) if tolls else (None, None)
    section: dict[str, Any] = {"numbers": numbers}
    if default:
        section["default_number"] = default
    origins.update({("bridge",): whole, ("bridge", "default_number"): default_at or whole})
    return section, origins, problems


def bridge_numbers(
    bridge: Export,
) -> tuple[list[Number], str | None, Place | None, list[ExportProblem]]:
    """A bridge export's numbers, its default number and the place of that default, and its
    problems (the file's, and each number that is not one)."""
    problems = list(bridge.problems)
    offered: list[Number] = []
    default: str | None = None
    default_at: Place | None = None
    for place, row in bridge.rows:
        offered.extend(_service_numbers(row.get("servicenumbers"), place, problems))
        if default is None and (default := e164(row.get("defaultservicenumber"))):
            default_at = place
    return offered, default, default_at, problems


def _service_numbers(value: Any, place: Place, problems: list[ExportProblem]) -> list[Number]:
    """A bridge export's ``ServiceNumbers``: objects with ``Number``, ``Type`` (or
    ``NumberType``) and a ``City`` or ``Location``, or bare numbers."""
    found: list[Number] = []
    for item in _as_list(value):
        entry = lower_keys(item) if isinstance(item, dict) else {"number": item}
        number = e164(entry.get("number"))
        if number is None:
            problems.append(
                ExportProblem(
                    place, f"service number {entry.get('number')!r} is not a valid phone number"
                )
            )
            continue
        kind = str(entry.get("type") or entry.get("numbertype") or "").lower()
        location = stripped(field_value(entry, "location"))
        found.append((number, "toll_free" if "free" in kind else "toll", location, place))
    return found


def _numbers_section(
    offered: Iterable[Number], problems: list[ExportProblem]
) -> tuple[list[dict[str, Any]], Origins]:
    """The bridge's ``numbers`` in number order, and where each entry and location came from.
    The first place to give a number its type and its location sets them; a different location
    later is a problem there (never a silent choice between two exports)."""
    entries: dict[str, dict[str, Any]] = {}
    where: dict[str, Place] = {}
    located_at: dict[str, Place] = {}
    for number, kind, location, place in offered:
        entry = entries.setdefault(number, {"number": number, "type": kind})
        where.setdefault(number, place)
        if location is None:
            continue
        if "location" not in entry:
            entry["location"] = location
            located_at[number] = place
        elif entry["location"] != location:
            problems.append(
                ExportProblem(
                    place,
                    f"location {location!r} of {number} differs from {entry['location']!r} "
                    f"on {located_at[number]}",
                )
            )
    ordered = sorted(entries)
    origins: Origins = {}
    for index, number in enumerate(ordered):
        origins[("bridge", "numbers", index)] = where[number]
        if number in located_at:
            origins[("bridge", "numbers", index, "location")] = located_at[number]
    return [entries[number] for number in ordered], origins


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        return [v for v in value.replace(";", ",").split(",") if v.strip()]
    return [] if value in (None, "") else [value]


def settings_from(export: Export | None) -> tuple[dict[str, Any], Origins, list[ExportProblem]]:
    """Tenant settings that differ from the documented defaults, from a settings export."""
    if export is None:
        return {}, {}, []
    found, place, problems = live_settings(export)
    origins: Origins = {("settings",): place}
    return (
        {key: value for key, value in found.items() if value != SETTINGS_DEFAULTS[key]},
        origins,
        problems,
    )


def live_settings(export: Export) -> tuple[dict[str, Any], Place, list[ExportProblem]]:
    """Every tenant setting a settings export gives (its first row: the cmdlet returns one
    object), as our YAML writes it, in our order; the row's place; the problems."""
    problems = list(export.problems)
    found: dict[str, Any] = {}
    names = {key.replace("_", ""): key for key in SETTINGS_DEFAULTS}
    where = Place(export.file)
    for place, row in export.rows[:1]:
        where = place
        for column, value in row.items():
            key = names.get(column)
            if key is None or value in (None, ""):
                continue
            value, problem = _setting(key, column, value)
            if problem:
                problems.append(ExportProblem(place, problem))
            else:
                found[key] = value
    return {key: found[key] for key in SETTINGS_DEFAULTS if key in found}, where, problems


def _setting(key: str, column: str, value: Any) -> tuple[Any, str | None]:
    """A setting as our YAML writes it, or why the export's value cannot be read."""
    if isinstance(SETTINGS_DEFAULTS[key], bool):
        truth = boolean(value)
        return truth, None if truth is not None else f"{column} must be true or false"
    if key == "pin_length":
        try:
            return int(value), None
        except (TypeError, ValueError):
            return None, "PinLength must be a number"
    if key in ENUM_SETTINGS:
        name, members = ENUM_SETTINGS[key]
        member = _member(value, members)
        allowed = ", ".join(f"{label} ({number})" for number, label in enumerate(members))
        return member, None if member else f"{name} {value!r} is not one of {allowed}"
    return str(value), None


def _member(value: Any, members: tuple[str, ...]) -> str | None:
    """A .NET enum value as its name: by number (``ConvertTo-Json``) or by name (CSV)."""
    text = str(value).strip()
    if text.isascii() and text.isdigit():
        return members[int(text)] if int(text) < len(members) else None
    return named(text, members)
