"""Turning one planned email into an RFC 5322 message (SPEC §4 "Every message").

Headers are set through :mod:`email.headerregistry` objects under ``email.policy.default``, which
refuses CR/LF in any header value. That is not enough on its own: the header parser decodes an
RFC 2047 encoded word in a display name, so ``=?utf-8?q?Bob=0D=0A...?=`` would come out as a line
break. Validation refuses such names (:func:`reconciler.model.header_text_problem`), and
:func:`compose` checks them again and checks every folded header line, whatever got past
validation, so no value can ever become a header line of its own.

Bodies are quoted-printable UTF-8 so the message survives any relay, including one without
8BITMIME, and stays readable when an operator opens a suppressed ``.eml``; their encoded lines
are at most 76 characters, as RFC 2045 §6.7 requires (``email.policy.default`` writes 78).
"""

from __future__ import annotations

import email.errors
import email.policy
import hashlib
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import phonenumbers

from reconciler.emails.context import DETAIL_TYPES, TEST_MESSAGE, PhoneNumber, build_context
from reconciler.emails.templates import TemplateSet
from reconciler.model import TenantRecord, UserRecord, header_text_problem, pin_self_service_url

DEFAULT_DISPLAY_NAME = "Office 365"
"""Microsoft's sender name when SendEmailFromOverride is off."""
MESSAGE_ID_DOMAIN = "reconciler.invalid"
_POLICY = email.policy.default.clone(max_line_length=76)
"""Headers still go out folded at 78 (``as_bytes(policy=email.policy.SMTP)``); the bodies,
encoded when set, keep their 76."""
SAMPLE_CONFERENCE_ID = "0000000"
"""The conference ID of ``test-email``'s sample details: obviously not anyone's."""
SAMPLE_NUMBER = "+14255550100"
"""A fictional (555) number for the sample when the bridge has no toll number yet."""


@dataclass(frozen=True)
class Sender:
    """The From of a message."""

    display_name: str
    address: str


def sender_for(settings: dict[str, Any], default: Sender) -> Sender:
    """The tenant's own sender when ``send_email_from_override`` is on, else the deployment's."""
    if settings.get("send_email_from_override") is not True:
        return default
    address = settings.get("send_email_from_address")
    display_name = settings.get("send_email_from_display_name")
    if not address or not display_name:
        raise ValueError(
            "send_email_from_override is true but send_email_from_address or "
            "send_email_from_display_name is not set"
        )
    return Sender(display_name, address)


def parse_default_sender(value: str) -> Sender:
    """``noreply@x`` → ``Sender("Office 365", "noreply@x")``; ``Name <a@b>`` → ``Sender("Name",
    "a@b")``. Raises ValueError unless ``value`` is exactly one well-formed mailbox."""
    if "\r" in value or "\n" in value:
        raise ValueError("the default sender must not contain line breaks")
    try:
        header = email.policy.default.header_factory("From", value)
    # The stdlib parser raises IndexError rather than HeaderParseError on some inputs ("a@").
    except (email.errors.HeaderParseError, IndexError) as error:
        raise ValueError(f"invalid default sender {value!r}") from error
    mailboxes = header.addresses
    if (
        header.defects
        or len(mailboxes) != 1
        or any(group.display_name is not None for group in header.groups)
        or not mailboxes[0].username
        or not mailboxes[0].domain
    ):
        raise ValueError(f"invalid default sender {value!r}: use 'address' or 'Name <address>'")
    return Sender(mailboxes[0].display_name or DEFAULT_DISPLAY_NAME, mailboxes[0].addr_spec)


def message_id(tenant: str, lineage: str, serial: int, upn: str, email_type: str) -> str:
    """A Message-ID derived from what identifies one logical email, so a resend after a crash
    carries the same id and downstream systems can recognise the duplicate.

    The UPN is case-folded because users are keyed by their lower-cased UPN; the parts are joined
    with NUL so no two different tuples can hash the same text.
    """
    key = "\0".join((tenant, lineage, str(serial), upn.lower(), email_type))
    return f"<{hashlib.sha256(key.encode('utf-8')).hexdigest()}@{MESSAGE_ID_DOMAIN}>"


def compose(
    *,
    tenant_name: str,
    tenant: TenantRecord,
    user: UserRecord,
    email_type: str,
    locale: str,
    pin: str | None,
    sender: Sender,
    message_id: str,
    date: datetime,
    templates: TemplateSet,
    preview: bool = False,
) -> EmailMessage:
    """One multipart/alternative message (text/plain + text/html, UTF-8) for ``user``, in the
    locale folder ``locale``: the one the plan resolved and showed for this email
    (``PlannedEmail.locale``), never resolved again here, so the email is in the language the
    reviewer saw.

    Raises ValueError when ``pin`` is given to a type or tenant that must not email one
    (:func:`reconciler.model.pin_self_service_url`) or missing where it is required, and when a
    header value would contain a line break.
    """
    details = email_type in DETAIL_TYPES
    bridge = tenant["bridge"]
    context = build_context(
        email_type,
        display_name=user["display_name"],
        upn=user["upn"],
        email=user["email"],
        meeting_update_tool_url=tenant["email"]["meeting_update_tool_url"],
        unique_conference_ids=bool(tenant["settings"]["use_unique_conference_ids"]),
        preview=preview,
        conference_id=user["conference_id"] if details else None,
        dial_in=(
            _phone_number(user["dial_in_number"] or bridge["default_number"], bridge)
            if details
            else None
        ),
        toll_free=(
            _phone_number(user["toll_free_number"], bridge)
            if details and user["toll_free_number"]
            else None
        ),
        pin=pin,
        pin_self_service_url=pin_self_service_url(tenant),
    )
    subject, text, html = templates.render(locale, email_type, context)

    message = EmailMessage(policy=_POLICY)
    message["From"] = Address(_display_name(sender.display_name), addr_spec=sender.address)
    message["To"] = Address(_display_name(user["display_name"] or ""), addr_spec=user["email"])
    message["Subject"] = subject
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id
    # RFC 3834: a notification, so vacation responders and ticket systems must not answer it.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Reconciler-Tenant"] = tenant_name
    message["X-Reconciler-Email-Type"] = email_type
    _check_header_lines(message)
    message.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    # add_alternative() builds the HTML part as a whole EmailMessage, which gives it a
    # MIME-Version of its own; RFC 2045 wants one, at the top only.
    for part in message.iter_parts():
        del part["MIME-Version"]
    # Set after the body: making the message multipart moves Content-* headers into its first part.
    message["Content-Language"] = locale
    return message


def compose_test_message(
    *,
    tenant_name: str,
    tenant: TenantRecord,
    to: str,
    sender: Sender,
    message_id: str,
    date: datetime,
    templates: TemplateSet,
) -> EmailMessage:
    """The message ``reconciler test-email`` sends: a real message (no preview banner) in the
    tenant's language and From settings, which says it is a test and shows sample details,
    labelled as samples, laid out as users see them. No PIN: none exists outside apply.

    The sample lists the bridge's default toll number and its first toll-free number, so the
    administrator sees how the tenant's real numbers are formatted. Raises ValueError when
    ``to`` cannot be a header.
    """
    bridge = tenant["bridge"]
    numbers = {
        kind: [n["number"] for n in bridge["numbers"] if n["type"] == kind]
        for kind in ("toll", "toll_free")
    }
    dial_in = bridge["default_number"] or next(iter(numbers["toll"]), SAMPLE_NUMBER)
    user = UserRecord(
        upn=to,
        display_name=None,
        license=True,
        provider="Microsoft",
        conference_id=SAMPLE_CONFERENCE_ID,
        dial_in_number=dial_in,
        toll_free_number=next(iter(numbers["toll_free"]), None),
        email=to,
        locale=tenant["email"]["locale"],
        pin_reset=None,
        send_conference_info=None,
    )
    return compose(
        tenant_name=tenant_name,
        tenant=tenant,
        user=user,
        email_type=TEST_MESSAGE,
        locale=templates.resolve_locale(tenant["email"]["locale"]),
        pin=None,
        sender=sender,
        message_id=message_id,
        date=date,
        templates=templates,
    )


def _display_name(value: str) -> str:
    if value and (why := header_text_problem(value)):
        raise ValueError(f"a display name {why}")
    return value


def _check_header_lines(message: EmailMessage) -> None:
    """Each header must serialize as one header line plus folded continuation lines."""
    for name, value in message.items():
        first, *rest = email.policy.SMTP.fold(name, value).removesuffix("\r\n").split("\r\n")
        if (
            not first.startswith(f"{name}:")
            or any(not line.startswith((" ", "\t")) for line in rest)
            or any(char in line for line in (first, *rest) for char in "\r\n\0")
        ):
            raise ValueError(f"the {name} header would not be one header line")


def _phone_number(number: str, bridge: dict[str, Any]) -> PhoneNumber:
    """``number`` in international format (``+1 425-555-0100``) with its bridge location."""
    location = next(
        (entry.get("location") for entry in bridge["numbers"] if entry["number"] == number), None
    )
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        display = number  # validated E.164 upstream; never fail an email over formatting
    else:
        display = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    return PhoneNumber(e164=number, display=display, location=location)
