"""A value as PowerShell writes it, read the same way in a users, bridge or settings export:
a phone number in any form the Teams cmdlets accept, a boolean as ``Export-Csv`` or the admin
writes it, a name in any case (PowerShell's comparisons ignore it)."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import phonenumbers

from reconciler.config.export_reader import lower_keys


def e164(value: Any) -> str | None:
    """A number in any form the Teams cmdlets accept (``14255550100``, ``+1 425…``,
    ``tel:+1…``, or an object with ``Number``) as E.164; None if it is not a valid number."""
    if isinstance(value, dict):
        value = lower_keys(value).get("number")
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


def boolean(value: Any) -> bool | None:
    """A yes or no as an export writes it (``True``, ``$true``, ``yes``, ``1``; empty is no; a
    License column naming ``AudioConferencing`` is yes); None if it is neither."""
    if isinstance(value, bool):
        return value
    text = str(value or "").strip().lower()
    if text in ("true", "yes", "1", "$true"):
        return True
    if text in ("false", "no", "0", "$false", ""):
        return False
    return True if "audioconferencing" in text.replace(" ", "") else None


def named(text: str, names: Iterable[str]) -> str | None:
    """``text`` as one of ``names``, whatever its case (PowerShell's comparisons ignore it)."""
    return next((name for name in names if name.lower() == text.lower()), None)


def stripped(value: Any) -> str | None:
    """A value as text without the blanks around it; None for none (an empty cell says nothing)."""
    return (str(value).strip() or None) if value is not None else None
