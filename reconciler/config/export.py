"""A tenant folder from a Teams export: what ``reconciler init`` reads and writes.

Admins adopt an existing tenant from what PowerShell gives them (``Export-Csv``, with Windows
PowerShell 5's ``#TYPE`` line, or ``ConvertTo-Json``): one row per user with the cmdlets'
property names, numbers in any form the cmdlets accept, and optionally the bridge
(``Get-CsOnlineDialInConferencingBridge``) and the tenant settings
(``Get-CsOnlineDialInConferencingTenantSettings``). This module turns rows into the documents of
a tenant folder, or every problem with its ``FILE:LINE`` (JSON: ``FILE:entry N``), all at once.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import phonenumbers

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
}
"""Our field → the column or property names that hold it (case-insensitive)."""


@dataclass
class Export:
    """Rows read from a file: ``(place, {lower-case column: value})``."""

    rows: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def read_export(path: Path) -> Export:
    """Rows of a CSV (``#TYPE`` line, BOM and CRLF accepted) or JSON export (an array of
    objects, or one object)."""
    result = Export()
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        result.problems.append(f"{path}:1: cannot read: {getattr(exc, 'strerror', None) or exc}")
        return result
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
        try:
            data = json.loads(text)
        except ValueError as exc:
            result.problems.append(f"{path}:{getattr(exc, 'lineno', 1)}: not JSON ({exc})")
            return result
        items = data if isinstance(data, list) else [data]
        for index, item in enumerate(items, start=1):
            if isinstance(item, dict):
                result.rows.append((f"{path}:entry {index}", _lower_keys(item)))
            else:
                result.problems.append(f"{path}:entry {index}: expected an object")
        return result
    lines = text.splitlines(keepends=True)
    skipped = 1 if lines and lines[0].startswith("#TYPE") else 0
    reader = csv.DictReader(io.StringIO("".join(lines[skipped:])))
    for row in reader:
        place = f"{path}:{reader.line_num + skipped}"
        result.rows.append((place, _lower_keys({k: v for k, v in row.items() if k is not None})))
    return result


def _lower_keys(item: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).strip().lower(): v for k, v in item.items()}


def e164(value: Any) -> str | None:
    """A number in any form the Teams cmdlets accept (``14255550100``, ``+1 425…``,
    ``tel:+1…``, or an object with ``Number``) as E.164; None if it is not a valid number."""
    if isinstance(value, dict):
        value = _lower_keys(value).get("number")
    text = str(value or "").strip().removeprefix("tel:").removeprefix("TEL:").strip()
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


def users_from(export: Export) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Users documents by UPN (lower-cased), and every row's problem."""
    users: dict[str, dict[str, Any]] = {}
    problems = list(export.problems)
    seen: dict[str, str] = {}
    for place, row in export.rows:
        upn = str(_field(row, "upn") or "").strip()
        upn = upn[4:] if upn.lower().startswith("sip:") else upn
        if "@" not in upn:
            problems.append(f"{place}: no UserPrincipalName (or SipAddress)")
            continue
        key = upn.lower()
        if key in seen:
            problems.append(f"{place}: {key} is also on {seen[key]}")
            continue
        seen[key] = place
        license_ = _truth(_field(row, "license"))
        if license_ is None:
            problems.append(f"{place}: License must be true or false (or list AudioConferencing)")
            continue
        user: dict[str, Any] = {"license": license_}
        provider = str(_field(row, "provider") or "Microsoft").strip()
        match = next((p for p in PROVIDERS if p.lower() == provider.lower()), None)
        if match is None:
            problems.append(f"{place}: Provider {provider!r} is not one of {', '.join(PROVIDERS)}")
            continue
        if match != "Microsoft":
            user["provider"] = match
        if (name := _field(row, "display_name")) is not None:
            user["display_name"] = str(name).strip()
        if (conference := _field(row, "conference_id")) is not None:
            user["conference_id"] = str(conference).strip()
        bad = False
        for name in ("dial_in_number", "toll_free_number"):
            raw = _field(row, name)
            if raw is None:
                continue
            number = e164(raw)
            if number is None:
                problems.append(f"{place}: {raw!r} is not a valid phone number")
                bad = True
            else:
                user[name] = number
        if bad:
            continue
        if (email := _field(row, "email")) is not None and str(email).lower() != key:
            user["email"] = str(email).strip()
        if (locale := _field(row, "locale")) is not None:
            user["locale"] = str(locale).strip()
        users[key] = user
    return users, problems


def bridge_from(
    users: Mapping[str, Mapping[str, Any]], bridge: Export | None, default_number: str | None
) -> tuple[dict[str, Any], list[str]]:
    """The ``bridge`` section: from a bridge export, else from the numbers the users have."""
    problems: list[str] = []
    numbers: dict[str, str] = {}
    default = e164(default_number) if default_number else None
    if default_number and default is None:
        problems.append(f"--default-number {default_number!r} is not a valid phone number")
    if bridge is not None:
        problems.extend(bridge.problems)
        for place, row in bridge.rows:
            for entry in _as_list(row.get("servicenumbers")):
                entry = _lower_keys(entry) if isinstance(entry, dict) else {"number": entry}
                number = e164(entry.get("number"))
                if number is None:
                    problems.append(
                        f"{place}: service number {entry.get('number')!r} is not "
                        "a valid phone number"
                    )
                    continue
                kind = str(entry.get("type") or entry.get("numbertype") or "").lower()
                numbers[number] = "toll_free" if "free" in kind else "toll"
            default = default or e164(row.get("defaultservicenumber"))
    for user in users.values():
        for name, kind in (("dial_in_number", "toll"), ("toll_free_number", "toll_free")):
            if name in user:
                numbers.setdefault(user[name], kind)
    if not numbers and default:
        numbers[default] = "toll"
    if not numbers:
        problems.append(
            "no bridge number: give --bridge FILE or --default-number, or "
            "ServiceNumber values in the users"
        )
    if default is None:
        tolls = Counter(u["dial_in_number"] for u in users.values() if "dial_in_number" in u)
        default = tolls.most_common(1)[0][0] if tolls else None
    section: dict[str, Any] = {
        "numbers": [{"number": n, "type": t} for n, t in sorted(numbers.items())]
    }
    if default:
        section["default_number"] = default
    return section, problems


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        return [v for v in value.replace(";", ",").split(",") if v.strip()]
    return [] if value in (None, "") else [value]


def settings_from(export: Export | None) -> tuple[dict[str, Any], list[str]]:
    """Tenant settings that differ from the documented defaults, from a settings export."""
    if export is None:
        return {}, []
    problems = list(export.problems)
    found: dict[str, Any] = {}
    names = {key.replace("_", ""): key for key in SETTINGS_DEFAULTS}
    for place, row in export.rows[:1]:
        for column, value in row.items():
            key = names.get(column)
            if key is None or value in (None, ""):
                continue
            default = SETTINGS_DEFAULTS[key]
            if isinstance(default, bool) or key in ("send_email_from_override",):
                parsed = _truth(value)
                if parsed is None:
                    problems.append(f"{place}: {column} must be true or false")
                    continue
                value = parsed
            elif key == "pin_length":
                try:
                    value = int(value)
                except (TypeError, ValueError):
                    problems.append(f"{place}: PinLength must be a number")
                    continue
            else:
                value = str(value)
            if value != default:
                found[key] = value
    return {key: found[key] for key in SETTINGS_DEFAULTS if key in found}, problems


def users_files(users: Mapping[str, Mapping[str, Any]], per_file: int) -> list[dict[str, Any]]:
    """Users in UPN order, ``per_file`` to a file."""
    ordered = sorted(users)
    return [
        {upn: users[upn] for upn in ordered[i : i + per_file]}
        for i in range(0, len(ordered), per_file)
    ] or [{}]
