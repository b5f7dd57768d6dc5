"""Every email type in every shipped language, read the way its recipient reads it: the subject,
the plain text and the words the HTML part shows. Nothing here knows the wording of a language,
so a new locale is checked as soon as its folder exists.

Each message must carry exactly what SPEC §4 lets its type carry (conference ID and numbers
where allowed, the PIN only in ``enabled`` and ``pin-reset`` and only in the body, the Meeting
Update Tool link where instructions are due, the dynamic-ID note where the setting asks for it),
and read as finished text: no template syntax left, no label without its value, and — outside
``en`` — no English sentence left behind (product names aside).
"""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest

from reconciler.config.semantic import effective_tenant, effective_user
from reconciler.emails import (
    DETAIL_TYPES,
    PIN_TYPES,
    TEMPLATE_TYPES,
    TEST_MESSAGE,
    Sender,
    TemplateSet,
    compose,
    compose_test_message,
)
from reconciler.emails.compose import SAMPLE_CONFERENCE_ID
from reconciler.locales import SHIPPED_LOCALES
from tests.helpers.mail import visible_text
from tests.helpers.tenants import MEETING_UPDATE_TOOL_URL, tenant_doc, user_doc

PIN = "48151"
CONFERENCE_ID = "8412345"
DIAL_IN = "+1 425-555-0100"
TOLL_FREE = "+1 800-555-0199"
UPDATE_TOOL_TYPES = frozenset({"enabled", "details-changed", "disabled"})
"""SPEC §4: Meeting Update Tool instructions and link."""
DYNAMIC_NOTE_TYPES = frozenset({"enabled", "details-changed", "pin-reset"})
ENGLISH = frozenset(
    {
        "the",
        "your",
        "you",
        "yours",
        "hello",
        "please",
        "note",
        "meeting",
        "meetings",
        "conference",
        "number",
        "numbers",
        "dial-in",
        "toll-free",
        "details",
        "update",
        "review",
        "select",
        "install",
        "sign",
        "sample",
        "automated",
        "organization",
        "organize",
        "organizer",
        "phone",
        "schedule",
        "scheduled",
        "reply",
        "questions",
        "now",
        "turned",
        "reset",
        "new",
        "private",
        "keep",
        "people",
        "join",
        "call",
        "enter",
        "below",
        "changed",
        "previous",
        "these",
        "those",
        "them",
        "their",
        "they",
        "with",
        "from",
        "this",
        "that",
        "have",
        "has",
        "been",
        "will",
        "can",
        "may",
        "not",
        "don't",
        "didn't",
        "aren't",
        "existing",
        "here",
        "and",
        "for",
        "preview",
    }
)
"""Words of the English templates that no other language writes (short words and words other
languages spell the same, like "a", "to", the Italian "account", the French "message", the Dutch
"contact" or the Brazilian "emails", are left out)."""
WORD = re.compile(r"[^\W\d_]+(?:['\u2019-][^\W\d_]+)*")
"""A word in any script (so "téléphone" is one word, not "t", "l" and "phone")."""
PRODUCT_NAMES = re.compile(r"Microsoft Teams|Microsoft|Teams|PIN|IT|ID|IDs|Skype for Business")
TEMPLATE_SYNTAX = ("{{", "}}", "{%", "%}", "{#", "#}")
COLONS = ":\uff1a"  # ASCII and full-width (ja, zh-CN)
ENDS_WITH_COLON = re.compile(rf"[{COLONS}]\s*$")


def read(message: EmailMessage) -> tuple[str, str, str]:
    """``(subject, text, html)`` as a mail client shows them (the HTML part as its words)."""
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    text, html = (parsed.get_body(preferencelist=(kind,)) for kind in ("plain", "html"))
    assert text is not None and html is not None
    return str(parsed["Subject"]), text.get_content(), visible_text(html.get_content())


def written(email_type: str, locale: str, *, unique_ids: bool = True) -> EmailMessage:
    """The message a user with a toll-free number and this ``locale`` gets, as apply writes it
    (effective records built from YAML documents, as the loader builds them)."""
    tenant: Any = effective_tenant(tenant_doc(locale=locale, unique_ids=unique_ids))
    sender = Sender("Office 365", "noreply@contoso.com")
    common: dict[str, Any] = {
        "tenant_name": "contoso",
        "tenant": tenant,
        "sender": sender,
        "message_id": "<1@reconciler.invalid>",
        "date": datetime(2026, 12, 3, tzinfo=UTC),
        "templates": TemplateSet(),
    }
    if email_type == TEST_MESSAGE:
        return compose_test_message(to="admin@contoso.com", **common)
    user = effective_user(
        "alice@contoso.com",
        user_doc(CONFERENCE_ID, display_name="Alice Martin", toll_free_number="+18005550199"),
        tenant,
    )
    return compose(
        user=user,
        email_type=email_type,
        locale=common["templates"].resolve_locale(user["locale"], tenant["email"]["locale"]),
        pin=PIN if email_type in PIN_TYPES else None,
        **common,
    )


CASES = [(email_type, locale) for locale in SHIPPED_LOCALES for email_type in TEMPLATE_TYPES]


@pytest.fixture(scope="module", params=CASES, ids=[f"{t}-{loc}" for t, loc in CASES])
def reading(request: pytest.FixtureRequest) -> tuple[str, str, str, str, str]:
    email_type, locale = request.param
    return (email_type, locale, *read(written(email_type, locale)))


def test_it_carries_exactly_what_its_type_may_show(reading: tuple[str, ...]) -> None:
    email_type, _, subject, text, html = reading
    conference_id = SAMPLE_CONFERENCE_ID if email_type == TEST_MESSAGE else CONFERENCE_ID
    for body in (text, html):
        shows_details = email_type in DETAIL_TYPES
        assert (conference_id in body) == shows_details
        assert (DIAL_IN in body) == shows_details
        assert (TOLL_FREE in body) == shows_details, "toll-free shown wherever numbers are"
        assert body.count(PIN) == (1 if email_type in PIN_TYPES else 0)
    assert PIN not in subject and conference_id not in subject
    if email_type in UPDATE_TOOL_TYPES:
        assert any(line.strip() == MEETING_UPDATE_TOOL_URL for line in text.splitlines()), (
            "the link, alone on its line"
        )


@pytest.mark.parametrize("locale", SHIPPED_LOCALES)
@pytest.mark.parametrize("email_type", TEMPLATE_TYPES)
def test_the_dynamic_conference_id_note_is_where_the_setting_puts_it(
    email_type: str, locale: str
) -> None:
    with_note, without = (
        read(written(email_type, locale, unique_ids=flag)) for flag in (True, False)
    )
    assert (with_note != without) == (email_type in DYNAMIC_NOTE_TYPES)


def test_no_template_syntax_is_left(reading: tuple[str, ...]) -> None:
    for part in reading[2:]:
        assert not [token for token in TEMPLATE_SYNTAX if token in part]


def test_no_label_is_left_without_its_value(reading: tuple[str, ...]) -> None:
    """A line that ends with a colon introduces what follows: a details box, a list, or (in a
    list item) its link on the next line; the greeting may end with one too ("Hola, Alice:").
    A "Label:" with nothing after it inside the details box, or alone before a paragraph of
    prose, is a value that went missing."""
    email_type, _, _, text, _ = reading
    paragraphs = [p.splitlines() for p in re.split(r"\n\s*\n", text.strip())]
    values = (CONFERENCE_ID, SAMPLE_CONFERENCE_ID, DIAL_IN, TOLL_FREE, PIN)
    for index, lines in enumerate(paragraphs):
        is_details = any(value in line for line in lines for value in values)
        for number, line in enumerate(lines):
            if index == 0 or not ENDS_WITH_COLON.search(line):  # 0: the greeting
                continue
            assert not is_details, f"{email_type}: a label without its value: {line!r}"
            if number < len(lines) - 1:
                assert lines[number + 1].startswith(" "), f"{email_type}: {line!r}"
                continue
            following = paragraphs[index + 1] if index + 1 < len(paragraphs) else []
            introduces = bool(following) and (
                re.match(r"\d+\. ", following[0]) is not None
                or any(value in line for line in following for value in values)
            )
            assert introduces, f"{email_type}: {line!r} introduces nothing"
    for value in (v for v in values if v in text):
        for line in (line for line in text.splitlines() if value in line):
            label = re.split(f"[{COLONS}]", line.split(value)[0])[0].strip()
            assert label, f"{email_type}: {value} without a label: {line!r}"


@pytest.mark.parametrize("locale", [loc for loc in SHIPPED_LOCALES if loc != "en"])
def test_no_english_is_left_in_another_language(locale: str) -> None:
    for email_type in TEMPLATE_TYPES:
        for part in read(written(email_type, locale)):
            words = PRODUCT_NAMES.sub(" ", _without_user_data(part))
            english = {w for w in WORD.findall(words) if w.lower() in ENGLISH}
            assert not english, f"{locale} {email_type}: English words {sorted(english)}"


def _without_user_data(text: str) -> str:
    """``text`` without what the configuration wrote (names, places, links), which stays as
    written in every language."""
    for value in ("Alice Martin", "Redmond, WA", "United States", MEETING_UPDATE_TOOL_URL):
        text = text.replace(value, " ")
    return text


def test_the_english_check_can_fail() -> None:
    """The word list catches what an untranslated paragraph would leave."""
    _, text, _ = read(written("enabled", "en"))
    found = {w for w in WORD.findall(PRODUCT_NAMES.sub(" ", text)) if w.lower() in ENGLISH}
    assert {"the", "your", "meetings", "Hello"} <= found
