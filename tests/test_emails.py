"""The emails of SPEC §4: what each type carries, never carries, and how the message is built."""

from __future__ import annotations

import email
import email.policy
import re
import shutil
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.emails import (
    PIN_TYPES,
    TEMPLATE_TYPES,
    PhoneNumber,
    Sender,
    TemplateSet,
    build_context,
    check_templates,
    compose,
    compose_test_message,
    message_id,
    parse_default_sender,
    sample_context,
    sender_for,
)
from reconciler.emails.compose import SAMPLE_CONFERENCE_ID
from reconciler.emails.plaintext import columns
from reconciler.locales import SHIPPED_LOCALES
from reconciler.model import EMAIL_TYPES, SETTINGS_DEFAULTS
from reconciler.resources import default_templates
from tests.helpers.mail import visible_text

LOCALES = SHIPPED_LOCALES
APOSTROPHE = "\u2019"  # French typography, as in the shipped templates
PIN = "48151"
CONFERENCE_ID = "8412345"
DATE = datetime(2026, 11, 29, 9, 30, tzinfo=UTC)
MESSAGE_ID = "<0123abcd@reconciler.invalid>"
SENDER = Sender("Office 365", "noreply@contoso.com")
FW_OPEN, FW_CLOSE, FW_COLON = "\uff08", "\uff09", "\uff1a"  # fullwidth ( ) : of ja and zh-CN
DYNAMIC_ID_NOTE = {
    "en": "dynamic conference IDs",
    "fr": "ID de conférence dynamiques",
    "de": "dynamische Konferenz-IDs",
    "es": "identificadores de conferencia dinámicos",
    "it": "ID conferenza dinamici",
    "nl": "dynamische conferentie-id",
    "pt-BR": "IDs de conferência dinâmicos",
    "ja": "動的な会議 ID",
    "zh-CN": "动态会议 ID",
    "pl": "dynamicznych identyfikatorów konferencji",
}
DASH = "\u2013"  # the en dash of most banners
PREVIEW_BANNER = {
    "en": "PREVIEW — not sent",
    "fr": "APERÇU — non envoyé",
    "de": f"VORSCHAU {DASH} nicht gesendet",
    "es": "VISTA PREVIA: no enviado",
    "it": f"ANTEPRIMA {DASH} non inviato",
    "nl": f"VOORBEELD {DASH} niet verzonden",
    "pt-BR": f"VISUALIZAÇÃO {DASH} não enviado",
    "ja": "プレビュー — 未送信",
    "zh-CN": "预览 — 未发送",
    "pl": f"PODGLĄD {DASH} nie wysłano",
}


def squeezed(text: str) -> str:
    """``text`` without any whitespace: wrapping moved line breaks, and Japanese or Chinese
    lines break between any two characters."""
    return re.sub(r"\s+", "", text)


PIN_TYPES_ORDERED = [t for t in EMAIL_TYPES if t in PIN_TYPES]
PINLESS_TYPES = [t for t in EMAIL_TYPES if t not in PIN_TYPES]
DETAIL_TYPES = [t for t in EMAIL_TYPES if t != "disabled"]
UPDATE_TOOL_TYPES = ["enabled", "details-changed", "disabled"]


def tenant_record(*, unique_ids: bool = False, locale: str = "en") -> dict[str, Any]:
    return {
        "settings": {**SETTINGS_DEFAULTS, "use_unique_conference_ids": unique_ids},
        "bridge": {
            "numbers": [
                {"number": "+14255550100", "type": "toll", "location": "Redmond, WA"},
                {"number": "+18005550199", "type": "toll_free", "location": None},
            ],
            "default_number": "+14255550100",
        },
        "email": {"locale": locale, "meeting_update_tool_url": "https://example.com/mut?a=1&b=2"},
    }


def user_record(**overrides: Any) -> dict[str, Any]:
    user = {
        "upn": "alice@contoso.com",
        "display_name": "Alice Martin",
        "license": True,
        "provider": "Microsoft",
        "conference_id": CONFERENCE_ID,
        "dial_in_number": "+14255550100",
        "toll_free_number": "+18005550199",
        "email": "alice.m@contoso.com",
        "locale": "en",
        "pin_reset": None,
        "send_conference_info": None,
    }
    user.update(overrides)
    return user


@pytest.fixture(scope="module")
def packaged() -> TemplateSet:
    return TemplateSet()


def composed(
    templates: TemplateSet,
    email_type: str,
    *,
    locale: str = "en",
    unique_ids: bool = False,
    preview: bool = False,
    pin: str | None = None,
    message_id: str = MESSAGE_ID,
    **user: Any,
) -> EmailMessage:
    """The message ``compose`` makes for Alice of :func:`user_record` (the PIN of the type
    unless ``pin`` says otherwise), as apply gets it."""
    return compose(
        tenant_name="contoso",
        tenant=tenant_record(unique_ids=unique_ids),
        user=user_record(locale=locale, **user),
        email_type=email_type,
        locale=templates.resolve_locale(locale),
        pin=pin if pin is not None else (PIN if email_type in PIN_TYPES else None),
        sender=SENDER,
        message_id=message_id,
        date=DATE,
        templates=templates,
        preview=preview,
    )


def build(templates: TemplateSet, email_type: str, **options: Any) -> EmailMessage:
    """Compose (:func:`composed`'s options), serialise and parse back, so assertions see what a
    mail client would."""
    message = composed(templates, email_type, **options)
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def bodies(message: EmailMessage) -> tuple[str, str]:
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    return plain.get_content(), html.get_content()


def readable(message: EmailMessage) -> tuple[str, str]:
    """The plain-text body and the text a reader sees in the HTML body."""
    text, html = bodies(message)
    return text, visible_text(html)


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("email_type", EMAIL_TYPES)
def test_message_structure_and_headers(packaged: TemplateSet, email_type: str, locale: str) -> None:
    message = build(packaged, email_type, locale=locale)
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    assert all(part.get_content_charset() == "utf-8" for part in parts)
    assert message["From"].addresses[0].display_name == "Office 365"
    assert message["From"].addresses[0].addr_spec == "noreply@contoso.com"
    to = message["To"].addresses
    assert [(a.display_name, a.addr_spec) for a in to] == [("Alice Martin", "alice.m@contoso.com")]
    assert message["Subject"].strip() and "\n" not in message["Subject"]
    assert message["Date"].datetime == DATE
    assert message["Message-ID"] == MESSAGE_ID
    assert message["X-Reconciler-Tenant"] == "contoso"
    assert message["X-Reconciler-Email-Type"] == email_type
    assert message["Content-Language"] == locale


def test_subjects_are_localized_and_distinct(packaged: TemplateSet) -> None:
    subjects = {
        (locale, t): build(packaged, t, locale=locale)["Subject"]
        for locale in LOCALES
        for t in EMAIL_TYPES
    }
    assert len(set(subjects.values())) == len(subjects)
    assert "audioconférence" in subjects[("fr", "conference-info")]


def subject_is_all_caps(subject: str) -> bool:
    """SpamAssassin's ``SUBJ_ALL_CAPS`` (Mail::SpamAssassin::Plugin::HeaderEval): a subject of
    more than one word and at least 10 characters whose Latin letters are all capitals — such
    as a Japanese subject whose only Latin word is "PIN", set apart by spaces."""
    subject = re.sub(r"^(?:(?:Re|Fw|Fwd|Aw|Antwort|Sv):\s*)+", "", subject.strip(), flags=re.I)
    if not re.search(r"\s", subject) or len(subject) < 10:
        return False
    letters = re.sub(r"[^a-zA-Z]", "", subject)
    return bool(letters) and letters == letters.upper()


def test_no_subject_scores_spamassassins_all_caps_rule(packaged: TemplateSet) -> None:
    assert subject_is_all_caps("電話会議の PIN がリセットされました")  # the rule, as it fired
    subjects = {
        (locale, email_type, self_service): packaged.render(
            locale, email_type, sample_context(email_type, pin_self_service=self_service)
        )[0]
        for locale in LOCALES
        for email_type in TEMPLATE_TYPES
        for self_service in (False, True)
    }
    assert {key: s for key, s in subjects.items() if subject_is_all_caps(s)} == {}


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("email_type", PIN_TYPES_ORDERED)
def test_pin_appears_once_in_each_part_of_pin_emails(
    packaged: TemplateSet, email_type: str, locale: str
) -> None:
    for body in bodies(build(packaged, email_type, locale=locale)):
        assert body.count(PIN) == 1


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("email_type", PINLESS_TYPES)
def test_pinless_emails_carry_no_pin_like_digits(
    packaged: TemplateSet, email_type: str, locale: str
) -> None:
    message = build(packaged, email_type, locale=locale)
    for body in (*readable(message), message["Subject"]):
        assert PIN not in body
        # Any standalone run of 4..12 digits would look like a PIN; only the conference ID may.
        # (Phone numbers and CSS colours are not standalone: "+1 425-555-0100", "#323130".)
        runs = set(re.findall(r"(?<![\d+#-])\d{4,12}(?![\d-])", body))
        assert runs <= {CONFERENCE_ID}


@pytest.mark.parametrize("email_type", PINLESS_TYPES)
def test_pin_refused_for_pinless_types(packaged: TemplateSet, email_type: str) -> None:
    with pytest.raises(ValueError, match="never contain the PIN"):
        build(packaged, email_type, pin=PIN)


@pytest.mark.parametrize("email_type", PIN_TYPES_ORDERED)
def test_pin_required_for_pin_types(packaged: TemplateSet, email_type: str) -> None:
    with pytest.raises(ValueError, match="needs the PIN"):
        compose(
            tenant_name="contoso",
            tenant=tenant_record(),
            user=user_record(),
            email_type=email_type,
            locale="en",
            pin=None,
            sender=SENDER,
            message_id=MESSAGE_ID,
            date=DATE,
            templates=packaged,
        )


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("email_type", DETAIL_TYPES)
def test_details_show_conference_id_and_formatted_numbers(
    packaged: TemplateSet, email_type: str, locale: str
) -> None:
    for body in readable(build(packaged, email_type, locale=locale)):
        assert CONFERENCE_ID in body
        assert "+1 425-555-0100" in body
        assert "Redmond, WA" in body
        assert "+1 800-555-0199" in body


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("email_type", DETAIL_TYPES)
def test_toll_free_absent_when_not_set(packaged: TemplateSet, email_type: str, locale: str) -> None:
    text, html = bodies(build(packaged, email_type, locale=locale, toll_free_number=None))
    for body in (text, visible_text(html)):
        assert "800-555-0199" not in body
        assert "+1 425-555-0100" in body
    assert "+18005550199" not in html


def test_dial_in_defaults_to_the_bridge_number(packaged: TemplateSet) -> None:
    text, _ = bodies(build(packaged, "conference-info", dial_in_number=None))
    assert "+1 425-555-0100 (Redmond, WA)" in text


@pytest.mark.parametrize("locale", LOCALES)
def test_disabled_never_shows_details(packaged: TemplateSet, locale: str) -> None:
    message = build(packaged, "disabled", locale=locale)
    for body in bodies(message):
        assert CONFERENCE_ID not in body
        assert "555" not in body  # no dial-in number either


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("email_type", UPDATE_TOOL_TYPES)
def test_meeting_update_tool_link(packaged: TemplateSet, email_type: str, locale: str) -> None:
    text, html = bodies(build(packaged, email_type, locale=locale))
    assert "https://example.com/mut?a=1&b=2" in text
    assert 'href="https://example.com/mut?a=1&amp;b=2"' in html


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("email_type", EMAIL_TYPES)
def test_dynamic_id_note(packaged: TemplateSet, email_type: str, locale: str) -> None:
    note = squeezed(DYNAMIC_ID_NOTE[locale])
    for body in bodies(build(packaged, email_type, locale=locale, unique_ids=False)):
        assert note not in squeezed(body)
    if email_type in ("enabled", "details-changed", "pin-reset"):
        for body in bodies(build(packaged, email_type, locale=locale, unique_ids=True)):
            assert note in squeezed(body)


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("email_type", EMAIL_TYPES)
def test_preview_banner(packaged: TemplateSet, email_type: str, locale: str) -> None:
    banner = PREVIEW_BANNER[locale]
    for body in bodies(build(packaged, email_type, locale=locale)):
        assert banner not in body
    pin = "••••••" if email_type in PIN_TYPES else None
    message = build(packaged, email_type, locale=locale, preview=True, pin=pin)
    for body in bodies(message):
        assert banner in body
    assert message["Subject"].startswith("[")


def test_html_is_autoescaped(packaged: TemplateSet) -> None:
    text, html = bodies(build(packaged, "enabled", display_name="<script>alert(1)</script>"))
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)</script>" in text  # plain text is not HTML


def test_missing_display_name_greets_without_a_name(packaged: TemplateSet) -> None:
    message = build(packaged, "conference-info", display_name=None)
    assert message["To"].addresses[0].display_name == ""
    text, _ = bodies(message)
    assert "Hello,\n" in text


def test_non_ascii_names_survive(packaged: TemplateSet) -> None:
    message = build(packaged, "enabled", locale="fr", display_name="Zoë Lefèvre-Müller")
    assert message["To"].addresses[0].display_name == "Zoë Lefèvre-Müller"
    text, html = bodies(message)
    assert "Bonjour Zoë Lefèvre-Müller," in text
    assert "Zoë Lefèvre-Müller" in html


@pytest.mark.parametrize(
    "field", [{"display_name": "Alice\r\nBcc: evil@example.com"}, {"email": "a@b\nBcc: e@x"}]
)
def test_line_breaks_cannot_inject_headers(packaged: TemplateSet, field: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        build(packaged, "conference-info", **field)


def test_line_breaks_in_sender_and_tenant_cannot_inject_headers(packaged: TemplateSet) -> None:
    common: dict[str, Any] = {
        "tenant": tenant_record(),
        "user": user_record(),
        "email_type": "conference-info",
        "locale": "en",
        "pin": None,
        "message_id": MESSAGE_ID,
        "date": DATE,
        "templates": packaged,
    }
    with pytest.raises(ValueError):
        compose(tenant_name="contoso", sender=Sender("X\nBcc: e@x", "a@b.c"), **common)
    with pytest.raises(ValueError):
        compose(tenant_name="contoso\r\nBcc: e@x", sender=SENDER, **common)


HEADER_NAMES = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Auto-Submitted",
    "X-Reconciler-Tenant",
    "X-Reconciler-Email-Type",
    "MIME-Version",
    "Content-Type",
    "Content-Language",
]
HOSTILE_NAMES = st.one_of(
    st.text(max_size=60),
    st.sampled_from(
        [
            "=?utf-8?q?Bob=0D=0AReply-To:_attacker@evil.example?=",
            "=?utf-8?b?Qm9iDQpCY2M6IHhAeQ==?=",
            'Bob" <x@evil.example>, "Eve',
            "Bob\r\nBcc: x@evil.example",
            "Bob\u2028Bcc: x@evil.example",
            "Bob\x00",
            "Bob, Eve <eve@evil.example>",
            "Bob; Bcc: x@y",
            "B\u202eob",
        ]
    ),
    st.lists(
        st.sampled_from(
            [
                "=?",
                "?=",
                "utf-8",
                "?q?",
                "=0A",
                "\r",
                "\n",
                "Bcc:",
                '"',
                "<",
                ">",
                "@",
                ",",
                ";",
                " ",
                "\\",
                "é",
            ]
        ),
        max_size=12,
    ).map("".join),
)


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(to_name=HOSTILE_NAMES, from_name=HOSTILE_NAMES)
def test_no_display_name_becomes_a_header_line_even_past_validation(
    packaged: TemplateSet, to_name: str, from_name: str
) -> None:
    """Belt and braces: whatever reaches compose, either it refuses or the message has exactly
    our headers, one recipient and one sender, with the names as given."""
    try:
        message = compose(
            tenant_name="contoso",
            tenant=tenant_record(),
            user=user_record(display_name=to_name),
            email_type="conference-info",
            locale="en",
            pin=None,
            sender=Sender(from_name, "conf@contoso.com"),
            message_id=MESSAGE_ID,
            date=DATE,
            templates=packaged,
        )
    except ValueError:
        return
    raw = message.as_bytes(policy=email.policy.SMTP)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert list(parsed.keys()) == HEADER_NAMES
    assert [a.addr_spec for a in parsed["To"].addresses] == ["alice.m@contoso.com"]
    assert [a.addr_spec for a in parsed["From"].addresses] == ["conf@contoso.com"]
    for header, name in (("To", to_name), ("From", from_name)):
        assert " ".join(parsed[header].addresses[0].display_name.split()) == " ".join(name.split())


def test_encoded_words_and_invisible_characters_are_refused_in_display_names(
    packaged: TemplateSet,
) -> None:
    for name in ("=?utf-8?q?Bob=0D=0AReply-To:_attacker@evil.example?=", "Bob\x00", "B\u202eob"):
        with pytest.raises(ValueError, match="a display name must not contain"):
            build(packaged, "conference-info", display_name=name)


def test_serialises_for_smtp(packaged: TemplateSet) -> None:
    message = compose(
        tenant_name="contoso",
        tenant=tenant_record(),
        user=user_record(locale="fr"),
        email_type="enabled",
        locale="fr",
        pin=PIN,
        sender=SENDER,
        message_id=MESSAGE_ID,
        date=DATE,
        templates=packaged,
    )
    raw = message.as_bytes(policy=email.policy.SMTP)
    assert b"\r\nBcc" not in raw
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert raw.isascii()  # quoted-printable bodies pass relays without 8BITMIME


def test_locale_falls_back_to_tenant_then_english(packaged: TemplateSet) -> None:
    def subject(user_locale: str, tenant_locale: str) -> str:
        return compose(
            tenant_name="contoso",
            tenant=tenant_record(locale=tenant_locale),
            user=user_record(locale=user_locale),
            email_type="conference-info",
            locale=packaged.resolve_locale(user_locale, tenant_locale),
            pin=None,
            sender=SENDER,
            message_id=MESSAGE_ID,
            date=DATE,
            templates=packaged,
        )["Subject"]

    french = f"Vos informations d{APOSTROPHE}audioconférence"
    assert subject("fr", "en") == french
    assert subject("fr-CA", "en") == french, "a region falls back to its language"
    assert subject("ko", "fr-BE") == french, "then the tenant's chain"
    assert subject("ko", "xx") == "Your audio conferencing details"
    assert subject("../fr", "..") == "Your audio conferencing details"


def test_message_id_is_deterministic() -> None:
    first = message_id("contoso", "lineage-1", 3, "alice@contoso.com", "enabled")
    assert re.fullmatch(r"<[0-9a-f]{64}@reconciler\.invalid>", first)
    assert first == message_id("contoso", "lineage-1", 3, "Alice@Contoso.com", "enabled")
    others = {
        message_id("fabrikam", "lineage-1", 3, "alice@contoso.com", "enabled"),
        message_id("contoso", "lineage-2", 3, "alice@contoso.com", "enabled"),
        message_id("contoso", "lineage-1", 4, "alice@contoso.com", "enabled"),
        message_id("contoso", "lineage-1", 3, "bob@contoso.com", "enabled"),
        message_id("contoso", "lineage-1", 3, "alice@contoso.com", "pin-reset"),
    }
    assert first not in others and len(others) == 5


def test_sender_for_override_and_default() -> None:
    default = Sender("Office 365", "noreply@localhost")
    settings = {
        **SETTINGS_DEFAULTS,
        "send_email_from_address": "conferencing@contoso.com",
        "send_email_from_display_name": "Conferencing Administrator",
    }
    assert sender_for(settings, default) == default
    assert sender_for({**settings, "send_email_from_override": True}, default) == Sender(
        "Conferencing Administrator", "conferencing@contoso.com"
    )
    with pytest.raises(ValueError, match="send_email_from_address"):
        sender_for({**SETTINGS_DEFAULTS, "send_email_from_override": True}, default)


def test_override_sender_is_the_from_header(packaged: TemplateSet) -> None:
    message = compose(
        tenant_name="contoso",
        tenant=tenant_record(),
        user=user_record(),
        email_type="disabled",
        locale="en",
        pin=None,
        sender=Sender("Équipe Conférences, Contoso", "conferencing@contoso.com"),
        message_id=MESSAGE_ID,
        date=DATE,
        templates=packaged,
    )
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    (address,) = parsed["From"].addresses
    assert (address.display_name, address.addr_spec) == (
        "Équipe Conférences, Contoso",
        "conferencing@contoso.com",
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("noreply@localhost", Sender("Office 365", "noreply@localhost")),
        ("Contoso IT <it@contoso.com>", Sender("Contoso IT", "it@contoso.com")),
        ('"Doe, Jane" <jane@contoso.com>', Sender("Doe, Jane", "jane@contoso.com")),
        ("<it@contoso.com>", Sender("Office 365", "it@contoso.com")),
    ],
)
def test_parse_default_sender(value: str, expected: Sender) -> None:
    assert parse_default_sender(value) == expected


@pytest.mark.parametrize(
    "value",
    ["", "garbage", "a@", "@b", "a@b, c@d", "Name <a@b", "Group: a@b;", "a@b\r\nBcc: c@d", "<>"],
)
def test_parse_default_sender_rejects_garbage(value: str) -> None:
    with pytest.raises(ValueError):
        parse_default_sender(value)


def test_build_context_only_carries_what_the_type_may_show() -> None:
    common: dict[str, Any] = {
        "display_name": None,
        "upn": "a@b.c",
        "email": "a@b.c",
        "meeting_update_tool_url": "https://x",
        "unique_conference_ids": False,
        "preview": False,
    }
    assert {"pin", "conference_id", "dial_in", "toll_free"}.isdisjoint(
        build_context("disabled", **common)
    )
    with pytest.raises(ValueError, match="conference ID"):
        build_context("conference-info", **common)
    with pytest.raises(ValueError, match="unknown email type"):
        build_context("welcome", **common)


# --- templates folder ---------------------------------------------------------------------------


@pytest.fixture
def copied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A full copy of the packaged templates as ``templates/`` in a fresh working directory."""
    shutil.copytree(default_templates(), tmp_path / "templates")
    monkeypatch.chdir(tmp_path)
    return Path("templates")


def insert_line(path: Path, line_number: int, text: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines.insert(line_number - 1, text + "\n")
    path.write_text("".join(lines), encoding="utf-8")


def test_shipped_templates_are_clean(copied: Path) -> None:
    assert check_templates(None) == []
    assert check_templates(copied) == []
    assert TemplateSet(copied).locales() == sorted(SHIPPED_LOCALES)


def test_check_reports_syntax_error_with_file_and_line(copied: Path) -> None:
    insert_line(copied / "fr" / "enabled.html", 4, "<p>{{ display_name | }}</p>")
    problems = check_templates(copied)
    assert [(p.file, p.line) for p in problems] == [("templates/fr/enabled.html", 4)]
    assert "expected token" in problems[0].message


def test_check_reports_undefined_variable_with_file_and_line(copied: Path) -> None:
    insert_line(copied / "en" / "details-changed.txt", 5, "Your manager: {{ manager_name }}")
    problems = check_templates(copied)
    assert [(p.file, p.line, p.column) for p in problems] == [
        ("templates/en/details-changed.txt", 5, 1)
    ]
    assert "manager_name" in problems[0].message


def test_check_locates_errors_in_shared_macros(copied: Path) -> None:
    macros = copied / "en" / "_macros.html"
    macros.write_text(
        macros.read_text(encoding="utf-8").replace("{{ phone.e164 }}", "{{ phone.nope }}"),
        encoding="utf-8",
    )
    line = 1 + next(
        i
        for i, text in enumerate(macros.read_text(encoding="utf-8").splitlines())
        if "phone.nope" in text
    )
    problems = check_templates(copied)
    assert {p.file for p in problems} == {"templates/en/_macros.html"}
    assert all(p.line == line and "nope" in p.message for p in problems)


def test_check_flags_pin_in_a_pinless_type(copied: Path) -> None:
    insert_line(
        copied / "en" / "conference-info.txt", 4, "{% if pin is defined %}{{ pin }}{% endif %}"
    )
    problems = check_templates(copied)
    assert [(p.file, p.line) for p in problems] == [("templates/en/conference-info.txt", 4)]
    assert "PIN" in problems[0].message


def test_check_flags_pin_in_a_partial_used_by_pinless_types(copied: Path) -> None:
    layout = copied / "fr" / "_layout.txt"
    insert_line(layout, 1, "{{ pin | default('') }}")
    flagged = {(p.file, p.line) for p in check_templates(copied) if "PIN" in p.message}
    assert flagged == {("templates/fr/_layout.txt", 1)}


def test_check_flags_missing_files_of_a_new_locale(copied: Path) -> None:
    (copied / "ko").mkdir()
    shutil.copy(copied / "en" / "enabled.subject.txt", copied / "ko" / "enabled.subject.txt")
    problems = check_templates(copied)
    missing = {p.file for p in problems}
    assert "templates/ko/enabled.txt" in missing
    assert "templates/ko/disabled.html" in missing
    assert "templates/ko/enabled.subject.txt" not in missing
    assert all(p.file.startswith("templates/ko/") for p in problems)


def test_check_flags_a_multiline_subject(copied: Path) -> None:
    (copied / "en" / "disabled.subject.txt").write_text("Line one\nLine two\n", encoding="utf-8")
    problems = check_templates(copied)
    assert [p.file for p in problems] == ["templates/en/disabled.subject.txt"]
    assert "one line" in problems[0].message


@pytest.mark.parametrize(
    "subject",
    ["=?utf-8?q?Hello=0D=0ABcc:_x@example.com?=", "Welcome =?utf-8?b?{{ upn }}?="],
    ids=["written", "around-a-value"],
)
def test_check_flags_an_encoded_word_in_a_subject(copied: Path, subject: str) -> None:
    """Mail programs decode it, so the header would say what no reviewer read."""
    (copied / "en" / "enabled.subject.txt").write_text(f"{subject}\n", encoding="utf-8")
    problems = check_templates(copied)
    assert [(p.file, p.line) for p in problems] == [("templates/en/enabled.subject.txt", 1)]
    assert "encoded word" in problems[0].message
    assert "alice" not in problems[0].message


def test_check_reports_a_missing_folder(tmp_path: Path) -> None:
    (problem,) = check_templates(tmp_path / "nowhere")
    assert "not found" in problem.message


def test_partial_override_falls_back_to_packaged_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    override = Path("custom")
    (override / "fr").mkdir(parents=True)
    (override / "fr" / "enabled.subject.txt").write_text(
        f"Bienvenue dans l{APOSTROPHE}audioconférence Contoso\n", encoding="utf-8"
    )
    templates = TemplateSet(override)
    assert check_templates(override) == []
    message = build(templates, "enabled", locale="fr")
    assert message["Subject"] == f"Bienvenue dans l{APOSTROPHE}audioconférence Contoso"
    text, _ = bodies(message)
    assert "Code confidentiel (PIN)" in text  # packaged French body
    assert build(templates, "enabled", locale="en")["Subject"] != message["Subject"]
    assert build(templates, "enabled", locale="ko")["Subject"] == (
        "Audio Conferencing is now set up for you"
    )


# --- wording, test message, MIME structure, plain text ------------------------------------------

ONE_NUMBER = {
    "en": "call the number below",
    "fr": "appeler le numéro ci-dessous",
    "de": "die unten stehende Nummer",
    "es": "al número que aparece a continuación",
    "it": "il numero indicato di seguito",
    "nl": "het onderstaande nummer",
    "pt-BR": "o número abaixo",
    "ja": "下記の番号",
    "zh-CN": "下方号码",
    "pl": "poniższy numer",
}
SEVERAL_NUMBERS = {
    "en": "call one of the numbers below",
    "fr": f"appeler l{APOSTROPHE}un des numéros ci-dessous",
    "de": "eine der unten stehenden Nummern",
    "es": "a uno de los números que aparecen a continuación",
    "it": "uno dei numeri indicati di seguito",
    "nl": "een van de onderstaande nummers",
    "pt-BR": "um dos números abaixo",
    "ja": "下記のいずれかの番号",
    "zh-CN": "下方任一号码",
    "pl": "jeden z poniższych numerów",
}
"""How the ``enabled`` email points at the numbers listed: one dial-in number, or dial-in and
toll-free."""


@pytest.mark.parametrize("locale", LOCALES)
def test_wording_is_singular_or_plural_by_the_numbers_listed(
    packaged: TemplateSet, locale: str
) -> None:
    one, several = squeezed(ONE_NUMBER[locale]), squeezed(SEVERAL_NUMBERS[locale])
    for body in readable(build(packaged, "enabled", locale=locale, toll_free_number=None)):
        assert one in squeezed(body) and several not in squeezed(body)
    for body in readable(build(packaged, "enabled", locale=locale)):
        assert several in squeezed(body) and one not in squeezed(body)


def test_templates_are_told_how_many_numbers_are_listed() -> None:
    common: dict[str, Any] = {
        "display_name": None,
        "upn": "a@b.c",
        "email": "a@b.c",
        "meeting_update_tool_url": "https://x",
        "unique_conference_ids": False,
        "preview": False,
        "conference_id": CONFERENCE_ID,
        "dial_in": PhoneNumber("+14255550100", "+1 425-555-0100"),
    }
    assert build_context("conference-info", **common)["number_count"] == 1
    both = build_context(
        "conference-info", **common, toll_free=PhoneNumber("+18005550199", "+1 800-555-0199")
    )
    assert both["number_count"] == 2
    assert "number_count" not in build_context(
        "disabled", **{k: v for k, v in common.items() if k not in ("conference_id", "dial_in")}
    )


@pytest.mark.parametrize("display", ["+1 425-555-0100", "+33 1 44 55 66 77", "+4930123"])
def test_phone_number_groups_join_back_into_the_number(display: str) -> None:
    groups = PhoneNumber("+10000000000", display).groups
    assert "".join(groups) == display
    assert all(group.strip() for group in groups)
    assert all(" " not in group.strip() for group in groups), "a group is digits, never two"


def test_a_phone_number_is_one_link_that_never_wraps(packaged: TemplateSet) -> None:
    """A number split over two lines (``+1 206-555-`` / ``0123``) is misdialled."""
    _, html = bodies(build(packaged, "conference-info"))
    assert (
        '<a href="tel:+14255550100" style="color:#0f6cbd; text-decoration:none; '
        'white-space:nowrap;">+1 425-555-0100</a>'
    ) in html
    assert html.count("white-space:nowrap") == 2, "the two numbers; nothing else"


TEST_SUBJECT = {
    "en": "Test message: your audio conferencing emails",
    "fr": f"Message de test : vos e-mails d{APOSTROPHE}audioconférence",
    "de": "Testnachricht: Ihre Audiokonferenz-E-Mails",
    "es": "Mensaje de prueba: sus correos de audioconferencia",
    "it": "Messaggio di prova: le e-mail di audioconferenza",
    "nl": "Testbericht: uw e-mails over audioconferenties",
    "pt-BR": "Mensagem de teste: seus emails de audioconferência",
    "ja": f"テスト メッセージ{FW_COLON}電話会議のメール",
    "zh-CN": f"测试邮件{FW_COLON}您的音频会议邮件",
    "pl": "Wiadomość testowa: e-maile o audiokonferencjach",
}
SAMPLE_MARK = {
    "en": "(sample)",
    "fr": "(exemple)",
    "de": "(Beispiel)",
    "es": "(ejemplo)",
    "it": "(esempio)",
    "nl": "(voorbeeld)",
    "pt-BR": "(exemplo)",
    "ja": f"{FW_OPEN}サンプル{FW_CLOSE}",
    "zh-CN": f"{FW_OPEN}示例{FW_CLOSE}",
    "pl": "(przykład)",
}


def sent_test_message(templates: TemplateSet, locale: str, **bridge: Any) -> EmailMessage:
    tenant = tenant_record(locale=locale)
    tenant["bridge"].update(bridge)
    message = compose_test_message(
        tenant_name="contoso",
        tenant=tenant,
        to="admin@contoso.com",
        sender=SENDER,
        message_id=MESSAGE_ID,
        date=DATE,
        templates=templates,
    )
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


@pytest.mark.parametrize("locale", LOCALES)
def test_the_test_message_says_it_is_a_test_with_marked_samples_and_no_preview_banner(
    packaged: TemplateSet, locale: str
) -> None:
    message = sent_test_message(packaged, locale)
    assert message["Subject"] == TEST_SUBJECT[locale]
    assert message["X-Reconciler-Email-Type"] == "test-message"
    text, html = readable(message)
    for body in (text, html):
        assert PREVIEW_BANNER[locale] not in body and "[" not in message["Subject"]
        assert SAMPLE_CONFERENCE_ID in body and "+1 425-555-0100" in body
        assert body.count(SAMPLE_MARK[locale]) == 3, "dial-in, toll-free and ID, each marked"
    for line in text.splitlines():
        if SAMPLE_CONFERENCE_ID in line or "555-01" in line:
            assert SAMPLE_MARK[locale] in line, line


def test_the_test_message_shows_a_sample_number_when_the_bridge_has_none(
    packaged: TemplateSet,
) -> None:
    text, _ = readable(sent_test_message(packaged, "en", numbers=[], default_number=None))
    assert "Dial-in number (sample): +1 425-555-0100\n" in text
    assert "Toll-free" not in text


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("email_type", EMAIL_TYPES)
def test_one_mime_version_header_in_the_whole_message(
    packaged: TemplateSet, email_type: str, locale: str
) -> None:
    raw = composed(packaged, email_type, locale=locale).as_bytes(policy=email.policy.SMTP)
    assert raw.count(b"MIME-Version:") == 1
    assert raw.startswith(b"From:") and b"\r\nMIME-Version: 1.0\r\n" in raw.split(b"\r\n\r\n")[0]


LINK = re.compile(r"https?://\S+")


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("email_type", EMAIL_TYPES)
def test_plain_text_is_wrapped_without_entities_and_links_stand_alone(
    packaged: TemplateSet, email_type: str, locale: str
) -> None:
    long_name = "Maximiliane Alexandra Konstantinopoulou-Vanderbergh de la Tour d'Auvergne"
    text, _ = bodies(
        build(packaged, email_type, locale=locale, display_name=long_name, unique_ids=True)
    )
    for line in text.splitlines():
        if LINK.search(line):
            assert LINK.fullmatch(line.strip()), f"a link shares its line: {line!r}"
        else:
            assert columns(line) <= 78, line
    assert not re.search(r"&(#\d+|#x[0-9a-f]+|[a-z]+);", text, re.IGNORECASE)
    assert "<" not in text.replace(long_name, "")
