"""What each email type may show: the types, and the template variables of one email.

:func:`build_context` is the one place that decides which facts an email type carries, so a PIN
or a conference ID can never reach a template that must not show it; :func:`sample_context` makes
realistic ones with made-up values, to check templates and show them to reviewers.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from reconciler.model import DEFAULT_PIN_SELF_SERVICE_URL, EMAIL_TYPES

TEST_MESSAGE: Final = "test-message"
"""The template type of ``reconciler test-email``: a real message to an administrator, with
sample details marked as such. Not one of SPEC §4's email types, so no plan ever sends it."""
TEMPLATE_TYPES: tuple[str, ...] = (*EMAIL_TYPES, TEST_MESSAGE)
"""Every type a locale folder has templates for."""
PIN_TYPES = frozenset({"enabled", "pin-reset"})
"""The only email types that carry the PIN (SPEC §4), unless Microsoft owns it (SPEC §8)."""
SELF_SERVICE_TYPES = PIN_TYPES | {"conference-info"}
"""Types that point a user at Microsoft's PIN self-service page when the tenant is in PIN
self-service mode: to get a PIN (``enabled``), reset it (``pin-reset``) or recover a forgotten
one (``conference-info``)."""
DETAIL_TYPES = frozenset(TEMPLATE_TYPES) - {"disabled"}
"""Types that show the conference ID and dial-in numbers."""


@dataclass(frozen=True)
class PhoneNumber:
    """A bridge number as templates show it: ``display`` for people, ``e164`` for ``tel:``."""

    e164: str
    display: str
    location: str | None = None

    @property
    def groups(self) -> tuple[str, ...]:
        """``display`` in the pieces a narrow screen may break it into: digit groups, each after
        the first keeping the space before it or the hyphen after it (``+1 425-555-0100`` →
        ``+1``, `` 425-``, ``555-``, ``0100``), so the pieces join back into ``display``.

        For a custom template that lets a number wrap between its groups; the shipped ones keep
        a number whole (``white-space:nowrap``): split over two lines it is misdialled.
        """
        return tuple(_GROUP.findall(self.display)) or (self.display,)


_GROUP = re.compile(r"\s*[^\s-]+-?")


def build_context(
    email_type: str,
    *,
    display_name: str | None,
    upn: str,
    email: str,
    meeting_update_tool_url: str,
    unique_conference_ids: bool,
    preview: bool,
    conference_id: str | None = None,
    dial_in: PhoneNumber | None = None,
    toll_free: PhoneNumber | None = None,
    pin: str | None = None,
    pin_self_service_url: str | None = None,
) -> dict[str, Any]:
    """The template variables of one email, holding exactly what SPEC §4 lets that type show.

    Facts that wording depends on are computed here, not in templates (which are data and may
    not run code): ``number_count`` (1 or 2 numbers listed) lets every language choose singular
    or plural ("the number below" / "one of the numbers below"), and ``pin_self_service``
    whether the tenant's users get their PIN from Microsoft (SPEC §8): given
    ``pin_self_service_url``, no context has a ``pin``, and the types of
    :data:`SELF_SERVICE_TYPES` have the URL instead.

    Raises ValueError when the caller offers a PIN to a type that must never contain one or to
    a tenant in PIN self-service mode, omits it where it is the point of the email, or omits the
    conference details a type shows.
    """
    if email_type not in TEMPLATE_TYPES:
        raise ValueError(f"unknown email type {email_type!r}")
    self_service = pin_self_service_url is not None
    context: dict[str, Any] = {
        "preview": preview,
        "display_name": display_name,
        "upn": upn,
        "email": email,
        "meeting_update_tool_url": meeting_update_tool_url,
        "unique_conference_ids": unique_conference_ids,
        "pin_self_service": self_service,
    }
    if self_service:
        if pin is not None:
            raise ValueError("a tenant in PIN self-service mode must never email a PIN")
        if email_type in SELF_SERVICE_TYPES:
            context["pin_self_service_url"] = pin_self_service_url
    elif email_type in PIN_TYPES:
        if not pin:
            raise ValueError(f"a {email_type!r} email needs the PIN")
        context["pin"] = pin
    elif pin is not None:
        raise ValueError(f"a {email_type!r} email must never contain the PIN")
    if email_type in DETAIL_TYPES:
        if not conference_id or dial_in is None:
            raise ValueError(f"a {email_type!r} email needs the conference ID and dial-in number")
        context.update(
            conference_id=conference_id,
            dial_in=dial_in,
            toll_free=toll_free,
            number_count=1 if toll_free is None else 2,
        )
    return context


SAMPLE_DIAL_IN = PhoneNumber("+14255550100", "+1 425-555-0100", "Redmond, WA")
SAMPLE_TOLL_FREE = PhoneNumber("+18005550199", "+1 800-555-0199", None)


def sample_context(
    email_type: str,
    *,
    toll_free: bool = True,
    unique_conference_ids: bool = True,
    display_name: str | None = "Alice Martin",
    preview: bool = False,
    pin_self_service: bool = False,
) -> dict[str, Any]:
    """A realistic context of ``email_type`` with made-up values, for checking templates and
    showing them to reviewers: every branch a template takes can be chosen here. In PIN
    self-service mode it has Microsoft's self-service page and no PIN, masked or not."""
    details = email_type in DETAIL_TYPES
    pin = None
    if email_type in PIN_TYPES and not pin_self_service:
        pin = "••••••" if preview else "48151"
    return build_context(
        email_type,
        display_name=display_name,
        upn="alice@contoso.com",
        email="alice@contoso.com",
        meeting_update_tool_url="https://aka.ms/meetingupdatetool",
        unique_conference_ids=unique_conference_ids,
        preview=preview,
        conference_id="8412345" if details else None,
        dial_in=SAMPLE_DIAL_IN if details else None,
        toll_free=SAMPLE_TOLL_FREE if details and toll_free else None,
        pin=pin,
        pin_self_service_url=DEFAULT_PIN_SELF_SERVICE_URL if pin_self_service else None,
    )


def sample_contexts(email_type: str) -> Iterator[dict[str, Any]]:
    """Contexts for ``email_type`` over every combination templates branch on."""
    for toll_free, unique_ids, display_name, preview, self_service in itertools.product(
        (True, False), (True, False), ("Alice Martin", None), (False, True), (False, True)
    ):
        yield sample_context(
            email_type,
            toll_free=toll_free,
            unique_conference_ids=unique_ids,
            display_name=display_name,
            preview=preview,
            pin_self_service=self_service,
        )
