"""SPEC §4 on plain user records: one case per row of the table and per combination rule."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from reconciler.model import EMAIL_TYPES, UserRecord
from reconciler.transitions import emails_for, is_new_request, refused_requests

UPN = "alice@contoso.com"


def user(**changes: Any) -> UserRecord:
    """An enabled user's effective record; keyword arguments override single fields."""
    record: dict[str, Any] = {
        "upn": UPN,
        "display_name": "Alice Martin",
        "license": True,
        "provider": "Microsoft",
        "conference_id": "8412345",
        "dial_in_number": "+14255550100",
        "toll_free_number": None,
        "email": UPN,
        "locale": "en",
        "pin_reset": None,
        "send_conference_info": None,
    }
    unknown = changes.keys() - record.keys()
    assert not unknown, f"not a UserRecord field: {unknown}"
    record.update(changes)
    return record  # type: ignore[return-value]


PIN = "2026-11-29 #4411"
PIN2 = "2026-12-01 #4412"
INFO = "2026-11-29"
INFO2 = "2026-12-01"

# (id, before, after, [(type, reasons)]): reasons None means "not checked here".
ROWS = [
    # not enabled -> enabled
    ("enabled/license-assigned", user(license=False), user(), [("enabled", ("license assigned",))]),
    (
        "enabled/provider-from-ThirdParty",
        user(provider="ThirdParty"),
        user(),
        [("enabled", ("provider changed from ThirdParty to Microsoft",))],
    ),
    (
        "enabled/provider-from-None",
        user(provider="None"),
        user(),
        [("enabled", ("provider changed from None to Microsoft",))],
    ),
    (
        "enabled/license-and-provider",
        user(license=False, provider="None"),
        user(),
        [("enabled", ("license assigned", "provider changed from None to Microsoft"))],
    ),
    ("enabled/new-user", None, user(), [("enabled", ("new user with Audio Conferencing",))]),
    # enabled -> enabled, details changed
    (
        "details-changed/conference-id",
        user(),
        user(conference_id="8412346"),
        [("details-changed", ("conference ID changed",))],
    ),
    (
        "details-changed/dial-in-number",
        user(),
        user(dial_in_number="+12065550123"),
        [("details-changed", ("default dial-in number changed",))],
    ),
    (
        "details-changed/both",
        user(),
        user(conference_id="8412346", dial_in_number="+12065550123"),
        [("details-changed", ("conference ID changed", "default dial-in number changed"))],
    ),
    # enabled -> enabled, requests
    ("pin-reset", user(), user(pin_reset=PIN), [("pin-reset", None)]),
    ("conference-info", user(), user(send_conference_info=INFO), [("conference-info", None)]),
    # enabled -> not enabled
    ("disabled/license-removed", user(), user(license=False), [("disabled", ("license removed",))]),
    (
        "disabled/provider-ThirdParty",
        user(),
        user(provider="ThirdParty"),
        [("disabled", ("provider changed from Microsoft to ThirdParty",))],
    ),
    (
        "disabled/provider-None",
        user(),
        user(provider="None"),
        [("disabled", ("provider changed from Microsoft to None",))],
    ),
    (
        "disabled/user-removed",
        user(),
        None,
        [("disabled", ("user removed from the configuration",))],
    ),
]

COMBINATIONS = [
    # `enabled` alone: requests in the same change are satisfied by it
    (
        "enabled-alone/with-requests",
        user(license=False),
        user(pin_reset=PIN, send_conference_info=INFO),
        [("enabled", None)],
    ),
    (
        "enabled-alone/with-requests-and-new-details",
        user(provider="ThirdParty"),
        user(
            conference_id="8412346",
            dial_in_number="+12065550123",
            pin_reset=PIN,
            send_conference_info=INFO,
        ),
        [("enabled", None)],
    ),
    (
        "enabled-alone/new-user-with-requests",
        None,
        user(pin_reset=PIN, send_conference_info=INFO),
        [("enabled", None)],
    ),
    # `disabled` alone
    (
        "disabled-alone/with-new-request",
        user(),
        user(license=False, pin_reset=PIN, send_conference_info=INFO),
        [("disabled", None)],
    ),
    (
        "disabled-alone/with-details-change",
        user(),
        user(provider="None", conference_id="8412346"),
        [("disabled", None)],
    ),
    # otherwise: details-changed, then pin-reset, then conference-info
    (
        "details-changed-then-pin-reset",
        user(),
        user(conference_id="8412346", pin_reset=PIN),
        [("details-changed", ("conference ID changed",)), ("pin-reset", None)],
    ),
    (
        "pin-reset-then-conference-info",
        user(),
        user(pin_reset=PIN, send_conference_info=INFO),
        [("pin-reset", None), ("conference-info", None)],
    ),
    (
        "conference-info-suppressed-by-details-changed",
        user(),
        user(dial_in_number="+12065550123", send_conference_info=INFO),
        [("details-changed", ("default dial-in number changed",))],
    ),
    (
        "details-pin-info",
        user(),
        user(conference_id="8412346", pin_reset=PIN, send_conference_info=INFO),
        [("details-changed", None), ("pin-reset", None)],
    ),
    # nothing else sends an email
    ("nothing/display-name", user(), user(display_name="Alice M."), []),
    ("nothing/locale", user(), user(locale="fr"), []),
    ("nothing/email-override", user(), user(email="alice.m@contoso.com"), []),
    ("nothing/toll-free-added", user(), user(toll_free_number="+18005550199"), []),
    ("nothing/toll-free-removed", user(toll_free_number="+18005550199"), user(), []),
    (
        "nothing/all-non-email-fields",
        user(),
        user(display_name="A", locale="fr", email="a@contoso.com", toll_free_number="+18005550199"),
        [],
    ),
    ("nothing/unchanged", user(), user(), []),
    # a user who is not enabled before nor after
    (
        "not-enabled/unlicensed-conference-id",
        user(license=False),
        user(license=False, conference_id="8412346"),
        [],
    ),
    ("not-enabled/ThirdParty-to-None", user(provider="ThirdParty"), user(provider="None"), []),
    (
        "not-enabled/None-to-ThirdParty-unlicensed",
        user(provider="None"),
        user(provider="ThirdParty", license=False),
        [],
    ),
    ("not-enabled/new-unlicensed-user", None, user(license=False), []),
    ("not-enabled/new-ThirdParty-user", None, user(provider="ThirdParty"), []),
    ("not-enabled/unlicensed-removed", user(license=False), None, []),
    ("not-enabled/ThirdParty-removed", user(provider="ThirdParty"), None, []),
    ("not-enabled/absent-both", None, None, []),
    ("not-enabled/new-request", user(license=False), user(license=False, pin_reset=PIN), []),
    # requests: only a NEW value asks
    ("request/unchanged-pin-reset", user(pin_reset=PIN), user(pin_reset=PIN), []),
    (
        "request/unchanged-conference-info",
        user(send_conference_info=INFO),
        user(send_conference_info=INFO),
        [],
    ),
    ("request/cleared-pin-reset", user(pin_reset=PIN), user(), []),
    ("request/cleared-conference-info", user(send_conference_info=INFO), user(), []),
    ("request/changed-pin-reset", user(pin_reset=PIN), user(pin_reset=PIN2), [("pin-reset", None)]),
    (
        "request/changed-conference-info",
        user(send_conference_info=INFO),
        user(send_conference_info=INFO2),
        [("conference-info", None)],
    ),
    (
        "request/unchanged-with-details-change",
        user(pin_reset=PIN, send_conference_info=INFO),
        user(conference_id="8412346", pin_reset=PIN, send_conference_info=INFO),
        [("details-changed", None)],
    ),
]


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [pytest.param(b, a, e, id=i) for i, b, a, e in ROWS + COMBINATIONS],
)
def test_emails_for(
    before: UserRecord | None,
    after: UserRecord | None,
    expected: list[tuple[str, tuple[str, ...] | None]],
) -> None:
    emails = emails_for(before, after)
    assert [e.type for e in emails] == [t for t, _ in expected]
    for email, (_, reasons) in zip(emails, expected, strict=True):
        assert email.reasons, f"{email.type} must say why"
        if reasons is not None:
            assert email.reasons == reasons


def test_request_reasons_name_the_request_value() -> None:
    pin, info = emails_for(user(), user(pin_reset=PIN, send_conference_info=INFO))
    assert PIN in pin.reasons[0] and "PIN reset" in pin.reasons[0]
    assert INFO in info.reasons[0] and "conference info" in info.reasons[0]


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param(user(), user(license=False, pin_reset=PIN), ["pin_reset"], id="disabled+pin"),
        pytest.param(
            user(),
            user(provider="ThirdParty", send_conference_info=INFO),
            ["send_conference_info"],
            id="disabled+info",
        ),
        pytest.param(
            user(),
            user(provider="None", pin_reset=PIN, send_conference_info=INFO),
            ["pin_reset", "send_conference_info"],
            id="disabled+both",
        ),
        pytest.param(
            user(license=False),
            user(license=False, pin_reset=PIN),
            ["pin_reset"],
            id="unlicensed+pin",
        ),
        pytest.param(
            None,
            user(license=False, send_conference_info=INFO),
            ["send_conference_info"],
            id="new-unlicensed+info",
        ),
        pytest.param(
            user(license=False, pin_reset=PIN),
            user(license=False, pin_reset=PIN2),
            ["pin_reset"],
            id="changed-value",
        ),
        # only NEW values are refused
        pytest.param(
            user(pin_reset=PIN), user(license=False, pin_reset=PIN), [], id="disabled-with-old-pin"
        ),
        pytest.param(
            user(license=False, send_conference_info=INFO),
            user(license=False, send_conference_info=INFO),
            [],
            id="unchanged-value",
        ),
        pytest.param(user(license=False, pin_reset=PIN), user(license=False), [], id="cleared"),
        # enabled after: never refused
        pytest.param(
            user(license=False),
            user(pin_reset=PIN, send_conference_info=INFO),
            [],
            id="becomes-enabled",
        ),
        pytest.param(
            user(), user(pin_reset=PIN, send_conference_info=INFO), [], id="stays-enabled"
        ),
        pytest.param(None, user(pin_reset=PIN), [], id="new-enabled"),
        pytest.param(user(pin_reset=PIN), None, [], id="removed"),
    ],
)
def test_refused_requests(
    before: UserRecord | None, after: UserRecord | None, expected: list[str]
) -> None:
    assert refused_requests(before, after) == expected


@pytest.mark.parametrize(
    ("before", "after", "new"),
    [
        (None, user(pin_reset=PIN), True),
        (None, user(), False),
        (user(), user(pin_reset=PIN), True),
        (user(pin_reset=PIN), user(pin_reset=PIN), False),
        (user(pin_reset=PIN), user(pin_reset=PIN2), True),
        (user(pin_reset=PIN), user(), False),
    ],
)
def test_is_new_request(before: UserRecord | None, after: UserRecord, new: bool) -> None:
    assert is_new_request(before, after, "pin_reset") is new


# Every (before, after) over a grid of states: the invariants of the combination rules.
_STATES: list[UserRecord | None] = [
    None,
    *(
        user(
            license=lic,
            provider=prov,
            conference_id=cid,
            dial_in_number=num,
            pin_reset=pin,
            send_conference_info=info,
        )
        for lic, prov, cid, num, pin, info in itertools.product(
            (True, False),
            ("Microsoft", "ThirdParty", "None"),
            ("8412345", "8412346"),
            ("+14255550100", "+12065550123"),
            (None, PIN),
            (None, INFO),
        )
    ),
]


def test_combination_invariants_over_every_pair() -> None:
    order = {t: i for i, t in enumerate(EMAIL_TYPES)}
    checked = 0
    for before, after in itertools.product(_STATES, repeat=2):
        types = [e.type for e in emails_for(before, after)]
        assert types == sorted(types, key=order.__getitem__), (before, after)
        assert len(types) == len(set(types)), (before, after)
        if "enabled" in types or "disabled" in types:
            assert len(types) == 1, (before, after)
        assert not ("details-changed" in types and "conference-info" in types)
        was = before is not None and before["license"] and before["provider"] == "Microsoft"
        now = after is not None and after["license"] and after["provider"] == "Microsoft"
        if not was and not now:
            assert types == []
        elif was and not now:
            assert types == ["disabled"]
        elif now and not was:
            assert types == ["enabled"]
        checked += 1
    assert checked == len(_STATES) ** 2
