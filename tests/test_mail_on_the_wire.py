"""Every email type in every shipped language as it leaves: encoded lines within RFC 2045's 76
characters, and the same message whether it goes through SMTP (CRLF) or into a Maildir (LF,
the local line ending its readers expect) — the same headers and bodies once parsed."""

from __future__ import annotations

import email
import email.policy
import mailbox
from email.message import EmailMessage
from pathlib import Path

import pytest

from reconciler.delivery import MaildirTransport, deliver, open_transport
from reconciler.emails import TemplateSet
from reconciler.model import EMAIL_TYPES
from tests.fixtures.outbox import Outgoing
from tests.fixtures.smtp import SMTPTestServer
from tests.test_emails import LOCALES, SENDER, composed

LONG_NAME = "Zoë Äßmann-Łukasiewicz-Ørsted-Françoise-Nguyễn-Mönchengladbach"
"""Accents on every side of a fold, long enough to wrap a quoted-printable line twice."""


@pytest.fixture(scope="module")
def every_message() -> list[Outgoing]:
    templates = TemplateSet()
    messages = []
    for locale in LOCALES:
        for email_type in EMAIL_TYPES:
            mid = f"<{email_type}.{locale}@reconciler.invalid>"
            message = composed(
                templates, email_type, locale=locale, message_id=mid, display_name=LONG_NAME
            )
            data = message.as_bytes(policy=email.policy.SMTP)  # as the outbox keeps it
            messages.append(Outgoing(mid, SENDER.address, ["alice.m@contoso.com"], data))
    return messages


def long_lines(data: bytes, line_ending: bytes) -> list[bytes]:
    """Body lines over 76 characters, header lines over 78 (RFC 2045 §6.7, RFC 5322 §2.1.1)."""
    head, _, body = data.partition(line_ending * 2)
    return [line for line in head.split(line_ending) if len(line) > 78] + [
        line for line in body.split(line_ending) if len(line) > 76
    ]


def test_every_encoded_line_fits_rfc_2045(every_message: list[Outgoing]) -> None:
    assert len(every_message) == len(LOCALES) * len(EMAIL_TYPES)
    assert {m.message_id: long_lines(m.data, b"\r\n") for m in every_message} == {
        m.message_id: [] for m in every_message
    }
    assert any(b"=\r\n" in m.data for m in every_message), "soft line breaks were needed"


def test_smtp_and_maildir_carry_the_same_message_with_their_line_endings(
    every_message: list[Outgoing], smtp_server: SMTPTestServer, tmp_path: Path
) -> None:
    with open_transport(smtp_server.url, default_from=SENDER.address) as smtp:
        sent = deliver(every_message, smtp, on_delivered=lambda m: None, on_failed=print)
    with MaildirTransport(tmp_path / "mail") as maildir:
        kept = deliver(every_message, maildir, on_delivered=lambda m: None, on_failed=print)
    assert sent.delivered == kept.delivered == len(every_message)

    over_smtp = {
        email.message_from_bytes(r.data)["Message-ID"]: r.data for r in smtp_server.received
    }
    box = mailbox.Maildir(tmp_path / "mail", factory=None, create=False)
    in_maildir = {
        email.message_from_bytes(data)["Message-ID"]: data
        for data in (box.get_bytes(key) for key in box.iterkeys())
    }
    assert set(over_smtp) == set(in_maildir) == {m.message_id for m in every_message}
    for mid, wire in over_smtp.items():
        local = in_maildir[mid]
        assert b"\r" not in local and wire.replace(b"\r\n", b"\n") == local, mid
        assert long_lines(wire, b"\r\n") == long_lines(local, b"\n") == [], mid
        assert parsed(wire) == parsed(local), mid


def parsed(data: bytes) -> tuple[list[tuple[str, str]], list[str]]:
    """The headers and decoded bodies a mail client shows (its lines, whatever ends them)."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    bodies = [
        part.get_content().replace("\r\n", "\n")
        for part in message.walk()
        if not part.is_multipart()
    ]
    return [(name, str(value)) for name, value in message.items()], bodies
