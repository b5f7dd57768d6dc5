"""``email.pin: self_service`` (issue 27, SPEC §8): Microsoft owns a Teams Online user's PIN, so
no email carries one; ``enabled`` and ``pin-reset`` say how to set or reset it at Microsoft's
self-service page, in every locale, and nothing generates, stores, previews or masks a PIN.
Who gets which email, and when, is the same as with ``generated``."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from reconciler.emails import SELF_SERVICE_TYPES, Sender, TemplateSet, compose
from reconciler.locales import SHIPPED_LOCALES
from reconciler.model import DEFAULT_PIN_SELF_SERVICE_URL, EMAIL_TYPES, SETTINGS_DEFAULTS
from tests.helpers.mail import visible_text
from tests.helpers.tenants import tenant_doc, user_doc, write_tenant
from tests.helpers.workspace import NewWorkspace, Workspace
from tests.test_emails import user_record

CONFERENCE_ID = "8412345"
URL = "https://pin.contoso.com/reset?a=1&b=2"
MASK = "•"
RESET_WORD = {  # each locale's own verb for resetting the PIN (whitespace removed: text wraps)
    "en": "reset",
    "fr": "réinitialis",
    "de": "zurück",
    "es": "restabl",
    "it": "reimpost",
    "nl": "opnieuwin",
    "pt-BR": "redefin",
    "ja": "リセット",
    "zh-CN": "重置",
    "pl": "zreset",
}
ENGLISH = ("Microsoft's PIN page", "reset your PIN", "work or school account", "How to reset")


def tenant_record(mode: str, url: str = URL) -> dict[str, Any]:
    return {
        "settings": dict(SETTINGS_DEFAULTS),
        "bridge": {
            "numbers": [
                {"number": "+14255550100", "type": "toll", "location": "Redmond, WA"},
                {"number": "+18005550199", "type": "toll_free", "location": None},
            ],
            "default_number": "+14255550100",
        },
        "email": {
            "locale": "en",
            "meeting_update_tool_url": "https://aka.ms/meetingupdatetool",
            "pin": mode,
            "pin_self_service_url": url,
        },
    }


def message(
    templates: TemplateSet, email_type: str, locale: str, *, pin: str | None = None
) -> EmailMessage:
    built = compose(
        tenant_name="contoso",
        tenant=tenant_record("self_service"),  # type: ignore[arg-type]
        user=user_record(locale=locale),  # type: ignore[arg-type]
        email_type=email_type,  # type: ignore[arg-type]
        locale=templates.resolve_locale(locale),
        pin=pin,
        sender=Sender("Office 365", "noreply@contoso.com"),
        message_id="<x@reconciler.invalid>",
        date=datetime(2026, 12, 7, tzinfo=UTC),
        templates=templates,
    )
    parsed = email.message_from_bytes(built.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def parts(mail: EmailMessage) -> tuple[str, str, str]:
    """Subject, plain text and the HTML source."""
    text = mail.get_body(preferencelist=("plain",))
    html = mail.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    return str(mail["Subject"]), text.get_content(), html.get_content()


def squeezed(text: str) -> str:
    """``text`` in lower case without whitespace: wrapping breaks Japanese and Chinese lines
    between any two characters."""
    return re.sub(r"\s+", "", text).lower()


def pin_like(text: str) -> set[str]:
    """Standalone runs of 4 to 12 digits (a PIN's shape) other than the conference ID; phone
    numbers and CSS colours are not standalone."""
    runs = set(re.findall(r"(?<![\d+#-])\d{4,12}(?![\d-])", text))
    return runs - {CONFERENCE_ID}


@pytest.fixture(scope="module")
def packaged() -> TemplateSet:
    return TemplateSet()


@pytest.mark.parametrize("locale", SHIPPED_LOCALES)
@pytest.mark.parametrize("email_type", EMAIL_TYPES)
def test_no_email_of_a_self_service_tenant_carries_a_pin(
    packaged: TemplateSet, email_type: str, locale: str
) -> None:
    subject, text, html = parts(message(packaged, email_type, locale))
    for body in (subject, text, visible_text(html)):
        assert not pin_like(body)
    assert MASK not in subject + text + html


@pytest.mark.parametrize("locale", SHIPPED_LOCALES)
@pytest.mark.parametrize("email_type", sorted(SELF_SERVICE_TYPES))
def test_self_service_emails_say_where_to_set_the_pin_in_the_users_language(
    packaged: TemplateSet, email_type: str, locale: str
) -> None:
    subject, text, html = parts(message(packaged, email_type, locale))
    seen = visible_text(html)
    for body in (text, seen):
        assert URL in body, "the page, readable in both parts"
        assert RESET_WORD[locale] in squeezed(body), "what to do there, in the user's language"
    assert f'href="{URL.replace("&", "&amp;")}"' in html
    if locale != "en":
        for body in (subject, text, seen):
            assert not any(english in body for english in ENGLISH), "no English leaks in"
    if email_type == "pin-reset":
        assert RESET_WORD[locale] in squeezed(subject)


def test_pin_reset_subjects_say_how_to_reset_not_that_it_was_reset(packaged: TemplateSet) -> None:
    subjects = {parts(message(packaged, "pin-reset", loc))[0] for loc in SHIPPED_LOCALES}
    assert len(subjects) == len(SHIPPED_LOCALES)
    assert "How to reset your audio conferencing PIN" in subjects
    assert "Your audio conferencing PIN has been reset" not in subjects


@pytest.mark.parametrize("email_type", EMAIL_TYPES)
def test_a_pin_is_refused_for_a_self_service_tenant(packaged: TemplateSet, email_type: str) -> None:
    with pytest.raises(ValueError, match="never"):
        message(packaged, email_type, "en", pin="48151")


def test_generated_tenants_still_get_their_pin() -> None:
    from reconciler.emails import sample_context

    for email_type in ("enabled", "pin-reset"):
        generated = sample_context(email_type)
        assert generated["pin"] == "48151" and generated["pin_self_service"] is False
        assert "pin_self_service_url" not in generated
        self_service = sample_context(email_type, pin_self_service=True)
        assert "pin" not in self_service
        assert self_service["pin_self_service_url"] == DEFAULT_PIN_SELF_SERVICE_URL


# --- end to end: nothing generates, stores, previews or masks a PIN ------------------------------


@pytest.fixture
def no_pin_generated(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(length: int) -> str:
        raise AssertionError("a PIN was generated for a self-service tenant")

    monkeypatch.setattr("reconciler.emails.plan_messages.generate_pin", refuse)


def users(changes: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Alice (German), Bob (Japanese) and Carol, enabled; ``changes``: fields by UPN."""
    base = {
        "alice@acme.com": user_doc("1000001", locale="de"),
        "bob@acme.com": user_doc("1000002", locale="ja"),
        "carol@acme.com": user_doc("1000003"),
    }
    return {upn: {**doc, **(changes or {}).get(upn, {})} for upn, doc in base.items()}


CONFERENCE_IDS = {"1000001", "1000002", "1000003"}


def assert_no_pin_in(files: dict[str, bytes]) -> None:
    """No mask in any file, and no PIN-like digits in the decoded parts of any message (a
    PIN is never generated: ``no_pin_generated`` makes that raise)."""
    for name, data in files.items():
        assert MASK.encode() not in data, name
        if name.endswith(".eml") or "/new/" in name:
            mail = email.message_from_bytes(data, policy=email.policy.default)
            assert isinstance(mail, EmailMessage)
            for part in mail.walk():
                if part.get_content_maintype() == "text":
                    body = part.get_content()
                    shown = visible_text(body) if part.get_content_subtype() == "html" else body
                    assert not pin_like(shown) - CONFERENCE_IDS, name


def test_a_self_service_tenant_end_to_end_has_no_pin_anywhere(
    new_workspace: NewWorkspace, no_pin_generated: None
) -> None:
    ws = new_workspace()
    write_tenant(ws.config, "acme", tenant_doc(pin="self_service"), users())
    ws.apply("--allow-new-state")
    first = ws.mails()
    assert sorted(m.type for m in first) == ["enabled"] * 3
    for mail in first:
        assert mail.pins == [] and DEFAULT_PIN_SELF_SERVICE_URL in mail.text
        assert DEFAULT_PIN_SELF_SERVICE_URL in mail.html
    write_tenant(
        ws.config,
        "acme",
        tenant_doc(pin="self_service"),
        users(
            {
                "alice@acme.com": {"pin_reset": "2026-12-07 #1"},
                "bob@acme.com": {"send_conference_info": "1"},
            }
        ),
    )
    out = ws.root / "plans"
    out.mkdir()
    for fmt in ("text", "markdown", "json"):
        assert ws.run("plan", "--format", fmt, "--out", str(out / f"plan.{fmt}")).code == 0
    assert ws.run("preview", "--out", str(ws.root / "preview")).code == 0
    ws.apply(str(out / "plan.json"))
    later = [m for m in ws.mails() if m.message_id not in {f.message_id for f in first}]
    assert sorted((m.to, m.type) for m in later) == [
        ("alice@acme.com", "pin-reset"),
        ("bob@acme.com", "conference-info"),
    ]
    assert all(DEFAULT_PIN_SELF_SERVICE_URL in m.text and m.pins == [] for m in later)
    files = {
        str(p): p.read_bytes()
        for folder in (ws.root / "state", ws.maildir, out, ws.root / "preview")
        for p in folder.rglob("*")
        if p.is_file()
    }
    assert any(name.endswith(".eml") for name in files) and any("state.db" in n for n in files)
    assert_no_pin_in(files)
    show = ws.run("state", "show")
    assert MASK not in show.stdout


def test_suppressed_messages_of_a_self_service_tenant_hold_no_pin(
    new_workspace: NewWorkspace, no_pin_generated: None
) -> None:
    ws = new_workspace()
    write_tenant(ws.config, "acme", tenant_doc(pin="self_service", send=False), users())
    ws.apply("--allow-new-state")
    kept = {str(p): p.read_bytes() for p in (ws.root / "state").rglob("*.eml")}
    assert len(kept) == 3 and not ws.mails()
    assert all(DEFAULT_PIN_SELF_SERVICE_URL.encode() in data for data in kept.values())
    assert_no_pin_in(kept)


def emails_planned(
    ws: Workspace, mode: str, changes: dict[str, dict[str, Any]] | None = None
) -> list[tuple[str, str]]:
    write_tenant(ws.config, "acme", tenant_doc(pin=mode), users(changes))
    return [(e["user"], e["type"]) for e in ws.plan_json()["tenants"][0]["emails"]]


def test_the_same_emails_go_out_at_the_same_transitions(
    new_workspace: NewWorkspace, tmp_path: Path
) -> None:
    changes: dict[str, dict[str, Any]] = {
        "alice@acme.com": {"pin_reset": "again"},
        "bob@acme.com": {"conference_id": "1000009", "send_conference_info": "x"},
        "carol@acme.com": {"license": False},
    }
    for mode in ("generated", "self_service"):
        ws = new_workspace(root=tmp_path / mode)
        assert emails_planned(ws, mode) == [(u, "enabled") for u in sorted(users())]
        ws.apply("--allow-new-state", "--allow-mass-email", "--allow-mass-disable")
        assert emails_planned(ws, mode, changes) == [
            ("alice@acme.com", "pin-reset"),
            ("bob@acme.com", "details-changed"),
            ("carol@acme.com", "disabled"),
        ]


def test_a_preview_of_self_service_tenants_masks_nothing(
    new_workspace: NewWorkspace, no_pin_generated: None
) -> None:
    ws = new_workspace()
    write_tenant(ws.config, "acme", tenant_doc(pin="self_service"), users())
    assert ws.run("preview", "--out", "out").code == 0
    out = ws.root / "out"
    for path in out.rglob("*"):
        if path.is_file():
            assert MASK not in path.read_text(encoding="utf-8"), path
    sample = (out / "_locales" / "fr" / "enabled.html").read_text(encoding="utf-8")
    assert DEFAULT_PIN_SELF_SERVICE_URL in sample


def test_a_preview_of_both_modes_shows_both_samples(new_workspace: NewWorkspace) -> None:
    ws = new_workspace()
    write_tenant(ws.config, "acme", tenant_doc(pin="self_service"), users())
    write_tenant(ws.config, "beta", tenant_doc(), {"dan@beta.com": user_doc("2000001")})
    assert ws.run("preview", "--out", "out").code == 0
    samples = Path(ws.root / "out" / "_locales" / "pl")
    assert "••••" in (samples / "enabled.html").read_text(encoding="utf-8")
    for email_type in SELF_SERVICE_TYPES:
        page = (samples / f"{email_type}.self-service.html").read_text(encoding="utf-8")
        assert DEFAULT_PIN_SELF_SERVICE_URL in page and MASK not in page
    index = (ws.root / "out" / "index.html").read_text(encoding="utf-8")
    assert "enabled (self_service)" in index
    assert 'href="_locales/pl/enabled.self-service.html"' in index
