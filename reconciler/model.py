"""The domain's vocabulary: effective records compared by the planner and kept in the state.

Records are plain JSON-able dicts so the same value is planned, saved in a plan file, stored in
the state and compared with ``==`` without conversion layers (a 100k-user tenant is held once).

Part of the core with ``transitions``, ``plan`` and ``errors``: standard library only, so the
rules can be read, tested and reused without YAML, JSON Schema, templates or a database.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypedDict, runtime_checkable

from reconciler.views import KeyedView

EmailType = Literal["enabled", "details-changed", "pin-reset", "conference-info", "disabled"]
MessageType = EmailType | Literal["test-message"]
"""What a message delivered by the reconciler can be: a planned email, or ``test-email``'s."""
EMAIL_TYPES: tuple[EmailType, ...] = (
    "enabled",
    "details-changed",
    "pin-reset",
    "conference-info",
    "disabled",
)
PROVIDERS = ("Microsoft", "ThirdParty", "None")
DEFAULT_MEETING_UPDATE_TOOL_URL = "https://aka.ms/meetingupdatetool"
PinMode = Literal["generated", "self_service"]
PIN_MODES: tuple[PinMode, ...] = ("generated", "self_service")
"""Who gives users their PIN (``email.pin``): the reconciler, which generates one and emails it
(where it is the PIN's system of record, such as Skype for Business Server), or Microsoft,
whose self-service page is the only place a Teams Online user can get one."""
DEFAULT_PIN_SELF_SERVICE_URL = "https://dialin.teams.microsoft.com/usp"
"""Microsoft's page where Teams users reset their own audio conferencing PIN."""

_TENANT_NAME = re.compile(r"[a-z0-9-]{1,63}")


def tenant_name_problem(name: str) -> str | None:
    """Why ``name`` is not a tenant name, or None. Tenant names are names, never paths: they
    become folder names (suppressed mail), state keys and headers, so one rule is checked
    wherever a name enters (tenant folders, ``--tenant``, saved plans)."""
    if _TENANT_NAME.fullmatch(name):
        return None
    return "must be 1-63 lowercase letters, digits or '-'"


_INVISIBLE = frozenset({"Cc", "Cf", "Zl", "Zp"})
_JOINERS = frozenset("\u200c\u200d")
"""ZWNJ and ZWJ (format characters) spell Persian and Indic names and emoji; nothing else
invisible is allowed: bidi overrides, BOMs and controls disguise text or break lines."""
_ENCODED_WORD = re.compile(r"=\?.*\?=", re.DOTALL)


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be shown to people as written (emails, PR comments, terminals)."""
    for char in value:
        if unicodedata.category(char) in _INVISIBLE and char not in _JOINERS:
            return (
                f"must not contain control or invisible characters such as line breaks "
                f"or bidi overrides (found U+{ord(char):04X})"
            )
    return None


def has_encoded_word(value: str) -> bool:
    """Whether ``value`` holds an RFC 2047 encoded word (``=?utf-8?q?...?=``): mail parsers
    decode one in a header into text the validator never saw, line breaks included, so neither
    a display name nor an email subject may hold one."""
    return _ENCODED_WORD.search(value) is not None


def header_text_problem(value: str) -> str | None:
    """Why ``value`` cannot be a display name in an email header: besides :func:`text_problem`,
    an encoded word (:func:`has_encoded_word`)."""
    if has_encoded_word(value):
        return "must not contain an encoded word ('=?...?='); write the name as plain text"
    return text_problem(value)


# Set-CsOnlineDialInConferencingTenantSettings, with its documented defaults.
SETTINGS_DEFAULTS: dict[str, Any] = {
    "automatically_send_emails_to_users": True,
    "send_email_from_override": False,
    "send_email_from_address": None,
    "send_email_from_display_name": None,
    "pin_length": 5,
    "use_unique_conference_ids": False,
    "allow_pstn_only_meetings_by_default": False,
    "automatically_migrate_user_meetings": True,
    "automatically_replace_acp_provider": False,
    "enable_dial_out_join_confirmation": False,
    "enable_entry_exit_notifications": True,
    "enable_name_recording": True,
    "entry_exit_announcements_type": "UseNames",
    "mask_pstn_numbers_type": "MaskedForExternalUsers",
    "migrate_service_numbers_on_cross_forest_move": False,
}


class UserRecord(TypedDict):
    """A user's effective values (defaults applied), keyed elsewhere by the lower-cased UPN."""

    upn: str
    display_name: str | None
    license: bool
    provider: str
    conference_id: str | None
    dial_in_number: str | None
    toll_free_number: str | None
    email: str
    locale: str
    pin_reset: str | None
    send_conference_info: str | None


class TenantRecord(TypedDict):
    """A tenant's effective configuration, everything but its users."""

    settings: dict[str, Any]
    bridge: dict[str, Any]
    email: dict[str, Any]


def pin_self_service_url(tenant: TenantRecord) -> str | None:
    """Where the tenant's users get their PIN when Microsoft owns it (``email.pin:
    self_service``), else None. In Teams Online an administrator can neither choose a PIN nor
    read one back, so a PIN generated here would not work: such a tenant's emails carry none,
    and nothing generates, stores or previews one."""
    email = tenant["email"]
    if email.get("pin") != "self_service":  # a record read before the setting existed: generated
        return None
    return str(email.get("pin_self_service_url") or DEFAULT_PIN_SELF_SERVICE_URL)


def is_enabled(user: UserRecord | None) -> bool:
    """SPEC §4: licensed and on Microsoft's bridge; an absent user is not enabled."""
    return user is not None and user.get("license") is True and user.get("provider") == "Microsoft"


@dataclass
class TenantConfig:
    """One tenant as configured: its effective records plus where each user was written.

    ``sources`` maps each user read from its file this time (not those the loader took from the
    applied state, their files unchanged since) to (file, key as written), so later checks
    (plan-time request errors) can point at the right ``file:line:column``, and the state
    records which file defines whom.
    """

    name: str
    tenant: TenantRecord
    users: Mapping[str, UserRecord]
    """Every user; those of files unchanged since the last apply may be that state's, read
    from it only if something asks (a saved plan)."""
    sources: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    """Relative path of every file read → content hash (recorded with the state)."""

    def source_files(self) -> Mapping[str, str]:
        """User → the file that defines it, for the users read from their file this time (the
        state already records it for the others)."""
        sources = self.sources
        return KeyedView(
            sources,
            lambda upn: sources[upn][0],
            lambda: ((upn, file) for upn, (file, _) in sources.items()),
            checked=False,
        )


@runtime_checkable
class AppliedUsers(Protocol):
    """Applied users that can tell an unchanged record without reading it: the state's
    ``StoredUsers`` compares a digest of the stored text, so a plan of a 100k-user tenant where
    1% changed parses only that 1%. Any other mapping of applied users is compared record by
    record."""

    def same(self, upn: str, record: UserRecord) -> bool:
        """Whether ``record`` is exactly the applied record of ``upn``."""
        ...


Version = tuple[str, int]
"""A tenant's applied state as (lineage, serial): one apply of one lineage."""


@dataclass
class Applied:
    """A tenant's last applied state, as the state backends load it and the planner reads it."""

    lineage: str
    serial: int
    tenant: TenantRecord
    users: Mapping[str, UserRecord]
    """Usually also :class:`AppliedUsers`: records kept as their stored text until one is
    needed."""
    files: dict[str, str] = field(default_factory=dict)
    """Content hashes of the config files this state was applied from."""

    @property
    def version(self) -> Version:
        """Which state this is: a serial alone starts again at 1 once ``state forget`` has
        dropped a tenant, a lineage is new each time."""
        return self.lineage, self.serial
