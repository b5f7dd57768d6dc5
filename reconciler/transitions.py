"""SPEC §4: which emails a user gets when their applied record ("before") becomes the configured
record ("after"). Pure functions of two effective user records; ``None`` is an absent user.

| Before → after                                  | Email             |
|-------------------------------------------------|-------------------|
| not enabled → enabled                           | enabled           |
| enabled → enabled, conference ID/number changed | details-changed   |
| enabled → enabled, new pin_reset                | pin-reset         |
| enabled → enabled, new send_conference_info     | conference-info   |
| enabled → not enabled                           | disabled          |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from reconciler.model import EmailType, UserRecord, is_enabled

DetailField = Literal["conference_id", "dial_in_number"]
RequestField = Literal["pin_reset", "send_conference_info"]
DETAILS: dict[DetailField, str] = {
    "conference_id": "conference ID changed",
    "dial_in_number": "default dial-in number changed",
}
REQUESTS: tuple[RequestField, ...] = ("pin_reset", "send_conference_info")


class Quoting(str):
    """A reason that quotes a configured value (a request's text): ``words (value)`` wherever
    it is read as text, with its two parts kept for an output that must show the value as a
    value: markdown puts it in a code span, where no forge links a ``GH-12`` or a commit SHA
    written in a pull request."""

    words: str
    value: str

    def __new__(cls, words: str, value: str) -> Quoting:
        reason = super().__new__(cls, f"{words} ({value})")
        reason.words, reason.value = words, value
        return reason


@dataclass(frozen=True)
class Email:
    type: EmailType
    reasons: tuple[str, ...]


def emails_for(before: UserRecord | None, after: UserRecord | None) -> list[Email]:
    """The emails one user gets, in send order."""
    was, now = is_enabled(before), is_enabled(after)
    if not was and not now:
        return []
    if now and not was:
        # Carries the details and a fresh PIN, so same-change requests are satisfied by it.
        return [Email("enabled", _why_enabled(before, after))]
    if was and not now:
        return [Email("disabled", _why_disabled(before, after))]
    assert before is not None and after is not None
    emails = []
    details = tuple(why for key, why in DETAILS.items() if before[key] != after[key])
    if details:
        emails.append(Email("details-changed", details))
    pin, info = after["pin_reset"], after["send_conference_info"]
    if pin is not None and is_new_request(before, after, "pin_reset"):
        emails.append(Email("pin-reset", (Quoting("PIN reset requested", pin),)))
    if info is not None and is_new_request(before, after, "send_conference_info") and not details:
        emails.append(Email("conference-info", (Quoting("conference info requested", info),)))
    return emails


def silence(before: UserRecord | None, after: UserRecord | None) -> str:
    """Why a change to a user sends no email (SPEC §4: nothing but the table does), for a
    change :func:`emails_for` gives none: the user is enabled neither before nor after, or only
    fields that send nothing changed (``display_name``, ``locale``, ``email``,
    ``toll_free_number``, a request cleared)."""
    if not (is_enabled(before) or is_enabled(after)):
        user = after or before
        assert user is not None, "a change has a user before or after"
        if not user["license"]:
            return "not licensed"
        return f"provider is {user['provider']}"
    assert before is not None and after is not None, "enabled before and after"
    old, new = dict(before), dict(after)
    return ", ".join(
        f"{key} cleared" if key in REQUESTS and new[key] is None else f"{key} changed"
        for key in sorted(new)
        if old.get(key) != new[key]
    )


def is_new_request(before: UserRecord | None, after: UserRecord, field: RequestField) -> bool:
    """A request is a value different from the one last applied (clearing it asks nothing)."""
    value = after[field]
    return value is not None and value != (before[field] if before else None)


def refused_requests(before: UserRecord | None, after: UserRecord | None) -> list[str]:
    """New requests that cannot be met because the user is not enabled after the change."""
    if after is None or is_enabled(after):
        return []
    return [field for field in REQUESTS if is_new_request(before, after, field)]


def _why_enabled(before: UserRecord | None, after: UserRecord | None) -> tuple[str, ...]:
    if before is None:
        return ("new user with Audio Conferencing",)
    reasons = []
    if not before["license"]:
        reasons.append("license assigned")
    if before["provider"] != "Microsoft":
        reasons.append(f"provider changed from {before['provider']} to Microsoft")
    return tuple(reasons)


def _why_disabled(before: UserRecord | None, after: UserRecord | None) -> tuple[str, ...]:
    if after is None:
        return ("user removed from the configuration",)
    reasons = []
    if not after["license"]:
        reasons.append("license removed")
    if after["provider"] != "Microsoft":
        reasons.append(f"provider changed from Microsoft to {after['provider']}")
    return tuple(reasons)
