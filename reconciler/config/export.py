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
"""

from __future__ import annotations

import csv
import functools
import itertools
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import phonenumbers

from reconciler.config import fmt
from reconciler.config.export_text import (
    CHANGED,
    MAX_EXPORT_BYTES,
    MAX_JSON_DEPTH,
    ExportText,
    TooDeep,
    json_entries,
    lines,
)
from reconciler.errors import DataPath, Finding, Problem
from reconciler.model import PROVIDERS, SETTINGS_DEFAULTS

USER_COLUMNS = {
    "upn": ("userprincipalname", "sipaddress", "upn", "identity"),
    "display_name": ("displayname",),
    "conference_id": ("conferenceid",),
    "dial_in_number": ("servicenumber", "tollnumber"),
    "toll_free_number": ("tollfreeservicenumber", "tollfreenumber"),
    "license": ("license", "licensed", "audioconferencing"),
    "provider": ("provider", "audioconferencingprovider"),
    "email": ("sendemailtoaddress", "email"),
    "locale": ("locale",),
    "location": ("location", "city"),
    "toll_free_location": ("tollfreelocation", "tollfreecity"),
}
"""Our field → the column or property names that hold it (case-insensitive). ``location`` is
that of the ServiceNumber (also read inside a number object, and a bridge export's entries)."""

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


@dataclass(frozen=True, order=True)
class Place:
    """Where a value came from: line ``index`` of a CSV export, entry ``index`` of a JSON one,
    or (``index`` 0) a whole file or a command-line option. Places sort by file, then line."""

    file: str
    index: int = 0
    entry: bool = False

    def __str__(self) -> str:
        if not self.index:
            return self.file
        return f"{self.file}:{'entry ' if self.entry else ''}{self.index}"


@dataclass(frozen=True)
class ExportProblem:
    """One line for the admin, ``place: message``, named in the exports' terms."""

    place: Place
    message: str

    def __str__(self) -> str:
        return f"{self.place}: {self.message}"


@dataclass
class Export:
    """Rows read from a file: ``(place, {lower-case column: value})``, and the columns it has
    (a CSV's header, every key of a JSON export's objects)."""

    file: str
    rows: list[tuple[Place, dict[str, Any]]] = field(default_factory=list)
    columns: set[str] = field(default_factory=set)
    problems: list[ExportProblem] = field(default_factory=list)

    def has(self, name: str) -> bool:
        """Whether the export has a column for our field ``name`` (even one empty in every
        row: then the column still says what it says, and nothing is assumed)."""
        return not self.columns.isdisjoint(USER_COLUMNS[name])


Row = tuple[Place, dict[str, Any]]
"""One row of an export: where it is, and its values by lower-case column name."""


def read_export(path: Path) -> Export:
    """Every row of an export at once (:func:`open_export`), for ``init``, which writes them
    all."""
    result, rows = open_export(path)
    result.rows.extend(rows)
    return result


def open_export(path: Path) -> tuple[Export, Iterator[Row]]:
    """An export's columns, and its rows one at a time: a CSV (``#TYPE`` line, BOM and CRLF
    accepted) or JSON export (an array of objects, or one object), in UTF-8 (with or without a
    BOM) or, after its BOM, UTF-16 or UTF-32 (what Windows PowerShell 5's ``>`` writes); a file
    that cannot be read is a problem of the file, never a traceback. The file is read a piece
    at a time (``export_text.py``): 300,000 users are never in memory at once, as text or as
    rows. Problems are added to the returned ``Export`` as the rows are read."""
    result = Export(str(path))
    text = ExportText(path, MAX_EXPORT_BYTES)
    if text.problem:
        _text_problem(text, result)
        return result, iter(())
    if path.suffix.lower() == ".json" or text.starts_like_json():
        return result, _json_rows(text, result)
    return result, _csv_rows(text, result)


def _text_problem(text: ExportText, export: Export) -> None:
    if text.problem:
        line, message = text.problem
        export.problems.append(ExportProblem(Place(export.file, line), message))


def _json_rows(text: ExportText, export: Export) -> Iterator[Row]:
    """Reads the document once now, an entry at a time and keeping none, for its columns and
    any problem (syntax, depth, text that is not text); then reads it again, the rows decoded
    as they are asked for."""
    unreadable: list[int] = []
    try:
        for index, item in enumerate(json_entries(iter(text)), start=1):
            if isinstance(item, dict):
                export.columns.update(map(_column, item))
            if not _is_text(item):
                unreadable.append(index)
    except (ValueError, RecursionError, TooDeep) as exc:
        if not text.problem:  # else what JSON saw is a consequence of the text stopping
            export.problems.append(_json_problem(export, exc))
    if text.problem:
        _text_problem(text, export)
    export.problems.extend(
        ExportProblem(Place(export.file, n, entry=True), "holds text that is not Unicode text")
        for n in unreadable
    )
    if export.problems:
        return iter(())
    return _json_objects(text, export)


def _json_problem(export: Export, exc: Exception) -> ExportProblem:
    if isinstance(exc, ValueError):
        return ExportProblem(Place(export.file, getattr(exc, "lineno", 1)), f"not JSON ({exc})")
    return ExportProblem(
        Place(export.file), f"nested too deeply (more than {MAX_JSON_DEPTH} levels)"
    )


def _is_text(item: Any) -> bool:
    """Whether every text in ``item`` can be written as UTF-8 (JSON may spell a lone surrogate,
    ``"\\ud800"``, which no YAML file or email can hold)."""
    try:
        json.dumps(item, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_objects(text: ExportText, export: Export) -> Iterator[Row]:
    try:
        entries = enumerate(json_entries(iter(text), check_depth=False), start=1)
        for index, item in entries:
            place = Place(export.file, index, entry=True)
            if isinstance(item, dict):
                yield place, _lower_keys(item)
            else:
                export.problems.append(ExportProblem(place, "expected an object"))
    except (ValueError, RecursionError, TooDeep):  # read fine once: changed since
        if not text.problem:
            text.problem = (0, CHANGED)
    _text_problem(text, export)


def _csv_rows(text: ExportText, export: Export) -> Iterator[Row]:
    """Reads the header now (its columns); the rows as they are asked for."""
    rows = lines(text)
    first = next(rows, "")
    skipped = 1 if first.startswith("#TYPE") else 0
    reader = csv.DictReader(rows if skipped else itertools.chain([first], rows))
    try:
        export.columns.update(map(_column, reader.fieldnames or ()))
    except csv.Error as exc:
        _csv_problem(exc, reader, skipped, export)
        return iter(())
    return _csv_records(reader, skipped, text, export)


def _csv_records(
    reader: csv.DictReader[str], skipped: int, text: ExportText, export: Export
) -> Iterator[Row]:
    try:
        for row in reader:
            place = Place(export.file, reader.line_num + skipped)
            yield place, _lower_keys({k: v for k, v in row.items() if k is not None})
    except csv.Error as exc:
        _csv_problem(exc, reader, skipped, export)
    _text_problem(text, export)


def _csv_problem(exc: csv.Error, reader: csv.DictReader[str], skipped: int, export: Export) -> None:
    # DictReader counts a line once it is read: its reader's count
    place = Place(export.file, reader.reader.line_num + skipped)
    limit = csv.field_size_limit()
    why = (
        f"a field is longer than {limit:,} characters (a quote left open?)"
        if "field limit" in str(exc)
        else f"not CSV ({exc})"
    )
    export.problems.append(ExportProblem(place, why))


def _column(name: Any) -> str:
    return str(name).strip().lower()


def _lower_keys(item: Mapping[str, Any]) -> dict[str, Any]:
    return {_column(k): v for k, v in item.items()}


def e164(value: Any) -> str | None:
    """A number in any form the Teams cmdlets accept (``14255550100``, ``+1 425…``,
    ``tel:+1…``, or an object with ``Number``) as E.164; None if it is not a valid number."""
    if isinstance(value, dict):
        value = _lower_keys(value).get("number")
    return _e164(str(value or ""))


@functools.lru_cache(maxsize=4096)
def _e164(value: str) -> str | None:
    """:func:`e164` of a text; cached: an export repeats its bridge's few numbers on every
    row, and parsing one is most of the time a row takes."""
    text = value.strip().removeprefix("tel:").removeprefix("TEL:").strip()
    if not text:
        return None
    if not text.startswith("+"):
        text = "+" + text
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _field(row: Mapping[str, Any], name: str) -> Any:
    for column in USER_COLUMNS[name]:
        value = row.get(column)
        if value not in (None, ""):
            return value
    return None


def _truth(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value or "").strip().lower()
    if text in ("true", "yes", "1", "$true"):
        return True
    if text in ("false", "no", "0", "$false", ""):
        return False
    return True if "audioconferencing" in text.replace(" ", "") else None


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
    upn = str(_field(row, "upn") or "").strip()
    upn = upn[4:] if upn.lower().startswith("sip:") else upn
    if "@" not in upn:
        problems.append("no UserPrincipalName (or SipAddress)")
    elif len(upn) > fmt.MAX_KEY:  # no sign-in address is; YAML cannot write it as a key
        problems.append(f"UserPrincipalName is longer than {fmt.MAX_KEY} characters")
    license_ = licensed or _truth(_field(row, "license"))
    if license_ is None:
        problems.append("License must be true or false (or list AudioConferencing)")
    user: dict[str, Any] = {"license": bool(license_)}
    provider = str(_field(row, "provider") or "Microsoft").strip()
    match = _named(provider, PROVIDERS)
    if match is None:
        problems.append(f"Provider {provider!r} is not one of {', '.join(PROVIDERS)}")
    elif match != "Microsoft":
        user["provider"] = match
    if (name := _field(row, "display_name")) is not None:
        user["display_name"] = str(name).strip()
    if (conference := _field(row, "conference_id")) is not None:
        user["conference_id"] = str(conference).strip()
    numbers = []
    for name, kind, where in (
        ("dial_in_number", "toll", "location"),
        ("toll_free_number", "toll_free", "toll_free_location"),
    ):
        raw = _field(row, name)
        if raw is None:
            continue
        number = e164(raw)
        if number is None:
            problems.append(f"{raw!r} is not a valid phone number")
            continue
        user[name] = number
        inside = _field(_lower_keys(raw), "location") if isinstance(raw, dict) else None
        numbers.append((number, kind, _text(inside or _field(row, where))))
    key = upn.lower()
    if (email := _field(row, "email")) is not None and str(email).lower() != key:
        user["email"] = str(email).strip()
    if (locale := _field(row, "locale")) is not None:
        user["locale"] = str(locale).strip()
    return key, user, numbers, problems


def _named(text: str, names: Iterable[str]) -> str | None:
    """``text`` as one of ``names``, whatever its case (PowerShell's comparisons ignore it)."""
    return next((name for name in names if name.lower() == text.lower()), None)


def _text(value: Any) -> str | None:
    return (str(value).strip() or None) if value is not None else None


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
        entry = _lower_keys(item) if isinstance(item, dict) else {"number": item}
        number = e164(entry.get("number"))
        if number is None:
            problems.append(
                ExportProblem(
                    place, f"service number {entry.get('number')!r} is not a valid phone number"
                )
            )
            continue
        kind = str(entry.get("type") or entry.get("numbertype") or "").lower()
        location = _text(_field(entry, "location"))
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
        truth = _truth(value)
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
    return _named(text, members)


@dataclass
class Adoption:
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
        yield "tenant.yaml", fmt.dump(self.tenant, "tenant", 0)
        ordered = sorted(self.users)
        chunks = [ordered[i : i + per_file] for i in range(0, len(ordered), per_file)] or [[]]
        for number, chunk in enumerate(chunks, start=1):
            users = {"users": {upn: self.users[upn] for upn in chunk}}
            yield f"users/users-{number:03d}.yaml", fmt.dump(users, "users", 1)

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


def adopt(
    users: Export, bridge: Export | None, settings: Export | None, default_number: str | None
) -> Adoption:
    """The tenant folder's documents from the exports read (``bridge`` and ``settings``
    optional), with where each value came from."""
    read = users_from(users)
    bridge_doc, origins, problems = bridge_from(read, bridge, default_number, users.file)
    settings_doc, more, most = settings_from(settings)
    origins.update(more)
    origins[()] = Place(users.file)
    origins.update({("users", upn): place for upn, place in read.places.items()})
    return Adoption(
        {"settings": settings_doc, "bridge": bridge_doc},
        read.documents,
        origins,
        read.problems + problems + most,
        read.notes,
        frozenset() if bridge_doc["numbers"] else frozenset({("bridge", "numbers")}),
    )
