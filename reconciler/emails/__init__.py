"""The emails of SPEC §4: PIN generation, localized templates and MIME composition."""

from reconciler.emails.compose import (
    DEFAULT_DISPLAY_NAME,
    Sender,
    compose,
    message_id,
    parse_default_sender,
    sender_for,
)
from reconciler.emails.pins import generate_pin, is_trivial
from reconciler.emails.templates import (
    DETAIL_TYPES,
    PIN_TYPES,
    PhoneNumber,
    TemplateSet,
    build_context,
    check_templates,
)

__all__ = [
    "DEFAULT_DISPLAY_NAME",
    "DETAIL_TYPES",
    "PIN_TYPES",
    "PhoneNumber",
    "Sender",
    "TemplateSet",
    "build_context",
    "check_templates",
    "compose",
    "generate_pin",
    "is_trivial",
    "message_id",
    "parse_default_sender",
    "sender_for",
]
