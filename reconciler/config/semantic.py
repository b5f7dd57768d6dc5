"""Checks the schema cannot express, and the effective records they produce.

Everything here is pure: raw YAML data in, effective records and findings out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import phonenumbers

from reconciler.errors import Finding
from reconciler.model import (
    DEFAULT_MEETING_UPDATE_TOOL_URL,
    DEFAULT_PIN_SELF_SERVICE_URL,
    SETTINGS_DEFAULTS,
    TenantRecord,
    UserRecord,
    header_text_problem,
    is_enabled,
    text_problem,
)

# C0 and C1 controls (CR, LF, NEL...) and the Unicode line/paragraph separators: anything a
# header writer or mail client might take for a line break.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# A conservative subset of addresses that are certainly valid; anything else is asked of
# email-validator, so the verdict is always the library's while the common case stays cheap.
_PLAIN_ADDRESS = re.compile(
    r"^[a-z0-9_+-]+(?:\.[a-z0-9_+-]+)*@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$",
    re.IGNORECASE,
)


def address_problem(value: str) -> str | None:
    """Why ``value`` is not a usable email address, or None."""
    if _CONTROL.search(value):
        return "must not contain control characters such as line breaks"
    if not value.isascii():
        # Messages are written for plain SMTP (no SMTPUTF8): the standard library cannot put a
        # non-ASCII address in a To header, so apply would fail on it half-way.
        return "must be plain ASCII (internationalized addresses cannot be emailed)"
    if len(value) <= 254 and _PLAIN_ADDRESS.match(value) and len(value.split("@")[0]) <= 64:
        return None
    return _library_verdict(value)


@lru_cache(maxsize=1024)
def _library_verdict(value: str) -> str | None:
    from email_validator import EmailNotValidError, validate_email  # rarely needed: lazily

    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        return str(exc)
    return None


def e164_problem(number: str) -> str | None:
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException as exc:
        return f"is not a phone number ({exc})"
    if not phonenumbers.is_valid_number(parsed):
        return "is not a valid phone number for its country code"
    if phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) != number:
        return "must be written in E.164 form"
    return None


def lower(text: str) -> str:
    """Lower-cased text, reusing the object when it already is (a 100k-user tenant keeps one
    copy of each address, not three)."""
    lowered = text.lower()
    return text if lowered == text else lowered


def effective_tenant(doc: dict[str, Any]) -> TenantRecord:
    """Tenant values with every documented default filled in."""
    settings = {**SETTINGS_DEFAULTS, **(doc.get("settings") or {})}
    settings["pin_length"] = int(settings["pin_length"])
    bridge = doc.get("bridge") or {}
    email = doc.get("email") or {}
    return {
        "settings": settings,
        "bridge": {
            "numbers": [
                {"number": n["number"], "type": n["type"], "location": n.get("location")}
                for n in bridge.get("numbers") or []
            ],
            "default_number": bridge.get("default_number"),
        },
        "email": {
            "locale": email.get("locale") or "en",
            "meeting_update_tool_url": email.get("meeting_update_tool_url")
            or DEFAULT_MEETING_UPDATE_TOOL_URL,
            "pin": email.get("pin") or "generated",
            "pin_self_service_url": email.get("pin_self_service_url")
            or DEFAULT_PIN_SELF_SERVICE_URL,
        },
    }


def effective_user(upn: str, raw: dict[str, Any], tenant: TenantRecord) -> UserRecord:
    """A user's values after defaults: provider Microsoft, the bridge's default number, the UPN
    as recipient and the tenant's locale."""
    get = raw.get
    return {
        "upn": upn,
        "display_name": get("display_name"),
        "license": get("license") is True,
        "provider": get("provider") or "Microsoft",
        "conference_id": get("conference_id"),
        "dial_in_number": get("dial_in_number") or tenant["bridge"]["default_number"],
        "toll_free_number": get("toll_free_number"),
        "email": lower(get("email") or upn),
        "locale": get("locale") or tenant["email"]["locale"],
        "pin_reset": get("pin_reset"),
        "send_conference_info": get("send_conference_info"),
    }


def check_tenant(tenant: TenantRecord, file: str) -> Iterator[Finding]:
    settings, bridge = tenant["settings"], tenant["bridge"]
    seen: set[str] = set()
    for index, entry in enumerate(bridge["numbers"]):
        path = ("bridge", "numbers", index, "number")
        number = entry["number"]
        if (why := e164_problem(number)) is not None:
            yield Finding(file, path, f"bridge number {number!r} {why}")
        if number in seen:
            yield Finding(file, path, f"bridge number {number!r} is listed twice")
        seen.add(number)
        if entry.get("location") and (why := text_problem(entry["location"])):
            yield Finding(file, ("bridge", "numbers", index, "location"), f"location {why}")
    default = bridge["default_number"]
    if default is not None and default not in _numbers(tenant, "toll"):
        yield Finding(
            file,
            ("bridge", "default_number"),
            f"default_number {default!r} {_not_in_bridge(tenant, 'toll')}",
        )
    if settings["send_email_from_override"]:
        address = settings["send_email_from_address"]
        if not address:
            yield Finding(
                file,
                ("settings",),
                "send_email_from_override is true, so send_email_from_address is required",
                at_key=True,
            )
        if not settings["send_email_from_display_name"]:
            yield Finding(
                file,
                ("settings",),
                "send_email_from_override is true, so send_email_from_display_name is required",
                at_key=True,
            )
    for key in ("send_email_from_address", "send_email_from_display_name"):
        value = settings[key]
        if not value:
            continue
        why = (
            address_problem(value)
            if key == "send_email_from_address"
            else header_text_problem(value)
        )
        if why:
            yield Finding(file, ("settings", key), f"{key} {why}")


def check_user(
    user: UserRecord,
    raw: dict[str, Any],
    key: str,
    file: str,
    tenant: TenantRecord,
    numbers: dict[str, set[str]] | None,
) -> Iterator[Finding]:
    """Problems with one user on its own; uniqueness across users is :func:`check_unique`.

    ``numbers`` is :func:`bridge_numbers` of the tenant, computed once for all its users, or
    None when the tenant's bridge is invalid: then nothing that depends on it is checked.
    """
    here = ("users", key)
    if (why := address_problem(key)) is not None:
        yield Finding(
            file, here, f"user key {key!r} is not a valid sign-in address: {why}", at_key=True
        )
    if raw.get("email") and (why := address_problem(raw["email"])) is not None:
        yield Finding(file, (*here, "email"), f"email {why}")
    if raw.get("display_name") and (why := header_text_problem(raw["display_name"])):
        yield Finding(file, (*here, "display_name"), f"display_name {why}")
    for request in ("pin_reset", "send_conference_info"):
        if raw.get(request) and (why := text_problem(raw[request])):
            yield Finding(file, (*here, request), f"{request} {why}")
    if numbers is not None:
        number = raw.get("dial_in_number")
        if number is not None and number not in numbers["toll"]:
            yield Finding(
                file,
                (*here, "dial_in_number"),
                f"dial_in_number {number!r} {_not_in_bridge(tenant, 'toll')}",
            )
        number = raw.get("toll_free_number")
        if number is not None and number not in numbers["toll_free"]:
            yield Finding(
                file,
                (*here, "toll_free_number"),
                f"toll_free_number {number!r} {_not_in_bridge(tenant, 'toll_free')}",
            )
    if is_enabled(user):
        if user["conference_id"] is None:
            yield Finding(
                file,
                here,
                "an enabled user (license: true, provider: Microsoft) "
                "needs a conference_id (7 digits)",
                at_key=True,
            )
        if user["dial_in_number"] is None and numbers is not None:
            yield Finding(
                file,
                here,
                "an enabled user needs a dial_in_number, and the bridge has no default_number",
                at_key=True,
            )


def check_unique(
    places: dict[str, list[tuple[str, str]]], label: str, path_tail: tuple[str, ...] = ()
) -> Iterator[Finding]:
    """One finding at every place of a value that must be unique, naming the other places.

    ``places`` maps the value to its (file, user key) occurrences.
    """
    for value, where in places.items():
        if len(where) < 2:
            continue
        for file, key in where:
            others = ", ".join(sorted({f"{f} ({k})" for f, k in where if (f, k) != (file, key)}))
            yield Finding(
                file,
                ("users", key, *path_tail),
                f"{label} {value!r} is defined more than once: also in {others}",
                at_key=not path_tail,
            )


def bridge_numbers(tenant: TenantRecord) -> dict[str, set[str]]:
    """The bridge's numbers by type ("toll", "toll_free")."""
    numbers: dict[str, set[str]] = {"toll": set(), "toll_free": set()}
    for entry in tenant["bridge"]["numbers"]:
        numbers[entry["type"]].add(entry["number"])
    return numbers


def _numbers(tenant: TenantRecord, kind: str) -> set[str]:
    return bridge_numbers(tenant)[kind]


def _not_in_bridge(tenant: TenantRecord, kind: str) -> str:
    allowed = sorted(_numbers(tenant, kind))
    return f"is not a {kind} number of the bridge; allowed: {', '.join(allowed) or 'none'}"
