"""The emails of SPEC §4: PIN generation, localized templates and MIME composition."""

from reconciler.emails.compose import (
    DEFAULT_DISPLAY_NAME,
    Sender,
    compose,
    compose_test_message,
    message_id,
    parse_default_sender,
    sender_for,
)
from reconciler.emails.context import (
    DETAIL_TYPES,
    PIN_TYPES,
    SELF_SERVICE_TYPES,
    TEMPLATE_TYPES,
    TEST_MESSAGE,
    PhoneNumber,
    build_context,
    sample_context,
)
from reconciler.emails.pins import generate_pin, is_trivial
from reconciler.emails.templates import TemplateSet, check_templates

__all__ = [
    "DEFAULT_DISPLAY_NAME",
    "DETAIL_TYPES",
    "PIN_TYPES",
    "SELF_SERVICE_TYPES",
    "TEMPLATE_TYPES",
    "TEST_MESSAGE",
    "PhoneNumber",
    "Sender",
    "TemplateSet",
    "build_context",
    "check_templates",
    "compose",
    "compose_test_message",
    "generate_pin",
    "is_trivial",
    "message_id",
    "parse_default_sender",
    "sample_context",
    "sender_for",
]
