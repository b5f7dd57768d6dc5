"""plan_tenant / plan_missing on TenantConfig objects (no files, no state database)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from reconciler.config.semantic import effective_tenant, effective_user
from reconciler.model import Applied, TenantConfig
from reconciler.plan import (
    Change,
    Plan,
    Scope,
    UnsafePlan,
    UserChange,
    plan_missing,
    plan_tenant,
)
from reconciler.state.base import StoredUsers, encode_record
from tests.helpers.tenants import TOLL, TOLL_2, TOLL_FREE, tenant_doc

DEFAULT, OTHER_TOLL = TOLL, TOLL_2


def enabled(cid: str, **extra: Any) -> dict[str, Any]:
    return {"license": True, "conference_id": cid, **extra}


def config(
    users: dict[str, dict[str, Any]], doc: dict[str, Any] | None = None, name: str = "contoso"
) -> TenantConfig:
    tenant = effective_tenant(doc if doc is not None else tenant_doc())
    records = {key.lower(): effective_user(key.lower(), raw, tenant) for key, raw in users.items()}
    sources = {key.lower(): (f"{name}/users.yaml", key) for key in users}
    return TenantConfig(name, tenant, records, sources)


def applied(cfg: TenantConfig, serial: int = 1) -> Applied:
    """The state after applying ``cfg`` (a deep copy, as a store would hand it back)."""
    return Applied("lineage-1", serial, copy.deepcopy(cfg.tenant), copy.deepcopy(cfg.users))


def plan_between(before: TenantConfig | None, after: TenantConfig):
    result, findings = plan_tenant(after, applied(before) if before else None)
    return result, findings


def emails(result) -> list[tuple[str, str, str]]:
    return [(e.user, e.to, e.type) for e in result.emails]


def test_emails_in_send_order_users_by_upn_then_spec_order() -> None:
    before = config(
        {
            "zed@contoso.com": enabled("1000001"),
            "bob@contoso.com": enabled("1000002"),
            "alice@contoso.com": enabled("1000003"),
            "carol@contoso.com": enabled("1000004"),
        }
    )
    after = config(
        {  # written out of order on purpose
            "zed@contoso.com": enabled("1000001", pin_reset="r1", send_conference_info="i1"),
            "dave@contoso.com": enabled("1000005"),
            "bob@contoso.com": enabled("1000009", pin_reset="r1", send_conference_info="i1"),
            "alice@contoso.com": enabled("1000003", send_conference_info="i1"),
        }
    )
    result, findings = plan_between(before, after)
    assert findings == []
    assert [(u, t) for u, _, t in emails(result)] == [
        ("alice@contoso.com", "conference-info"),
        ("bob@contoso.com", "details-changed"),
        ("bob@contoso.com", "pin-reset"),
        ("carol@contoso.com", "disabled"),
        ("dave@contoso.com", "enabled"),
        ("zed@contoso.com", "pin-reset"),
        ("zed@contoso.com", "conference-info"),
    ]


def test_upn_is_case_insensitive_and_sorted_lowercase() -> None:
    result, _ = plan_between(
        config({}),
        config({"Bob@Contoso.com": enabled("1000002"), "alice@contoso.com": enabled("1000003")}),
    )
    assert [e.user for e in result.emails] == ["alice@contoso.com", "bob@contoso.com"]


def test_to_is_the_recipient_override_else_the_upn() -> None:
    before = config(
        {
            "alice@contoso.com": enabled("1000001", email="alice.m@contoso.com"),
            "bob@contoso.com": enabled("1000002"),
        }
    )
    after = config(
        {
            "alice@contoso.com": enabled("1000009", email="alice.m@contoso.com"),
            "bob@contoso.com": enabled("1000008"),
        }
    )
    result, _ = plan_between(before, after)
    assert emails(result) == [
        ("alice@contoso.com", "alice.m@contoso.com", "details-changed"),
        ("bob@contoso.com", "bob@contoso.com", "details-changed"),
    ]


def test_removed_user_is_written_to_at_their_last_applied_address() -> None:
    before = config({"alice@contoso.com": enabled("1000001", email="alice.m@contoso.com")})
    result, _ = plan_between(before, config({}))
    assert emails(result) == [("alice@contoso.com", "alice.m@contoso.com", "disabled")]


def test_suppressed_when_automatic_emails_are_off() -> None:
    before = config(
        {"alice@contoso.com": enabled("1000001"), "bob@contoso.com": enabled("1000002")}
    )
    after = config(
        {
            "alice@contoso.com": enabled("1000009"),
            "bob@contoso.com": enabled("1000002", pin_reset="r1"),
        },
        tenant_doc(automatically_send_emails_to_users=False),
    )
    result, _ = plan_between(before, after)
    assert [e.suppressed for e in result.emails] == [True, True]
    assert any("suppressed" in w and "2 email" in w for w in result.warnings)
    assert Plan([result]).summary() == {
        "settings_changes": 1,
        "user_changes": 2,
        "emails": 2,
        "suppressed": 2,
    }


def test_not_suppressed_when_automatic_emails_are_on() -> None:
    before = config(
        {"alice@contoso.com": enabled("1000001")},
        tenant_doc(automatically_send_emails_to_users=False),
    )
    after = config({"alice@contoso.com": enabled("1000009")})
    result, _ = plan_between(before, after)
    assert [e.suppressed for e in result.emails] == [False]
    assert not any("suppressed" in w for w in result.warnings)


def test_no_suppression_warning_without_emails() -> None:
    cfg = config(
        {"alice@contoso.com": {"license": False}},
        tenant_doc(automatically_send_emails_to_users=False),
    )
    result, _ = plan_between(None, cfg)
    assert result.emails == [] and result.warnings == []


def test_default_number_change_reaches_only_users_on_the_default() -> None:
    users = {
        "alice@contoso.com": enabled("1000001"),  # uses the default
        "bob@contoso.com": enabled("1000002", dial_in_number=OTHER_TOLL),  # own number
        "carol@contoso.com": enabled("1000003", dial_in_number=DEFAULT),  # own = old default
        "dan@contoso.com": {"license": False},
    }  # not enabled
    doc = tenant_doc()
    doc["bridge"]["default_number"] = OTHER_TOLL
    result, _ = plan_between(config(users), config(users, doc))
    assert [(e.user, e.type, e.reasons) for e in result.emails] == [
        ("alice@contoso.com", "details-changed", ("default dial-in number changed",)),
    ]
    assert result.settings_changes == [Change("bridge.default_number", DEFAULT, OTHER_TOLL)]
    changed = {u.user: u for u in result.user_changes}
    assert set(changed) == {"alice@contoso.com", "dan@contoso.com"}
    assert changed["alice@contoso.com"].changes == (Change("dial_in_number", DEFAULT, OTHER_TOLL),)


def test_user_changes_create_update_delete() -> None:
    before = config(
        {
            "alice@contoso.com": enabled("1000001"),
            "bob@contoso.com": enabled("1000002", display_name="Bob"),
        }
    )
    after = config(
        {
            "alice@contoso.com": enabled("1000009", display_name="Alice"),
            "carol@contoso.com": enabled("1000003", toll_free_number=TOLL_FREE),
        }
    )
    result, _ = plan_between(before, after)
    by_user = {u.user: u for u in result.user_changes}
    assert [u.user for u in result.user_changes] == sorted(by_user)
    assert by_user["alice@contoso.com"].action == "update"
    assert by_user["alice@contoso.com"].changes == (
        Change("conference_id", "1000001", "1000009"),
        Change("display_name", None, "Alice"),
    )
    create = by_user["carol@contoso.com"]
    assert create.action == "create"
    assert {c.path: (c.before, c.after) for c in create.changes} == {
        "license": (None, True),
        "provider": (None, "Microsoft"),
        "conference_id": (None, "1000003"),
        "dial_in_number": (None, DEFAULT),
        "toll_free_number": (None, TOLL_FREE),
        "email": (None, "carol@contoso.com"),
        "locale": (None, "en"),
    }
    assert create.changes == tuple(create.changes) and len(create.changes) == 7
    assert create.changes[0] == Change("license", None, True)
    delete = by_user["bob@contoso.com"]
    assert delete.action == "delete"
    assert {c.path: (c.before, c.after) for c in delete.changes} == {
        "display_name": ("Bob", None),
        "license": (True, None),
        "provider": ("Microsoft", None),
        "conference_id": ("1000002", None),
        "dial_in_number": (DEFAULT, None),
        "email": ("bob@contoso.com", None),
        "locale": ("en", None),
    }


def test_settings_changes_have_dotted_paths_and_send_nothing() -> None:
    users = {"alice@contoso.com": enabled("1000001")}
    doc = tenant_doc(pin_length=6, use_unique_conference_ids=True)
    doc["bridge"]["numbers"][1]["location"] = "Seattle"
    doc["email"]["locale"] = "fr"
    result, _ = plan_between(config(users), config(users, doc))
    assert result.settings_changes == [
        Change("bridge.numbers[1].location", "Seattle, WA", "Seattle"),
        Change("email.locale", "en", "fr"),
        Change("settings.pin_length", 5, 6),
        Change("settings.use_unique_conference_ids", False, True),
    ]
    # users' effective locale follows the tenant's, which sends nothing either
    assert result.emails == []
    assert result.has_changes


def test_first_plan_lists_every_setting_from_null() -> None:
    result, _ = plan_between(None, config({}))
    assert (result.lineage, result.serial) == (None, 0)
    paths = {c.path: c for c in result.settings_changes}
    assert paths["settings.pin_length"] == Change("settings.pin_length", None, 5)
    assert paths["settings.automatically_send_emails_to_users"].after is True
    assert paths["bridge.default_number"] == Change("bridge.default_number", None, DEFAULT)
    assert paths["bridge.numbers[0]"].before is None
    assert all(c.before is None for c in result.settings_changes)
    assert result.has_changes


def test_lineage_and_serial_come_from_the_state() -> None:
    cfg = config({})
    result, _ = plan_tenant(cfg, applied(cfg, serial=7))
    assert (result.lineage, result.serial) == ("lineage-1", 7)


def test_no_change_plan() -> None:
    cfg = config(
        {
            "alice@contoso.com": enabled("1000001", pin_reset="r1"),
            "bob@contoso.com": {"license": False, "provider": "ThirdParty"},
        }
    )
    result, findings = plan_between(
        cfg,
        config(
            {
                "alice@contoso.com": enabled("1000001", pin_reset="r1"),
                "bob@contoso.com": {"license": False, "provider": "ThirdParty"},
            }
        ),
    )
    assert findings == []
    assert (result.settings_changes, result.user_changes, result.emails, result.warnings) == (
        [],
        [],
        [],
        [],
    )
    assert not result.has_changes
    assert not Plan([result]).has_changes


def test_refused_request_is_a_finding_at_the_key() -> None:
    before = config({"alice@contoso.com": enabled("1000001")})
    after = config(
        {"Alice@contoso.com": {"license": False, "conference_id": "1000001", "pin_reset": "r1"}}
    )
    result, findings = plan_between(before, after)
    assert len(findings) == 1
    finding = findings[0]
    assert finding.file == "contoso/users.yaml"
    assert finding.path == ("users", "Alice@contoso.com", "pin_reset")
    assert "pin_reset" in finding.message and "not enabled" in finding.message
    assert [e.type for e in result.emails] == ["disabled"]


def _many(n_enabled: int, disabled: int, extra_unlicensed: int = 0):
    users = {f"u{i:03}@contoso.com": enabled(f"{1000000 + i}") for i in range(n_enabled)}
    users |= {f"x{i:03}@contoso.com": {"license": False} for i in range(extra_unlicensed)}
    after = dict(users)
    for i in range(disabled):
        after[f"u{i:03}@contoso.com"] = {**users[f"u{i:03}@contoso.com"], "license": False}
    return plan_between(config(users), config(after))[0]


@pytest.mark.parametrize(
    ("n_enabled", "disabled", "mass"),
    [
        (10, 2, True),
        (10, 1, False),  # exactly 10% is not more than 10%
        (10, 0, False),
        (20, 3, True),
        (20, 2, False),
        (9, 9, False),  # fewer than 10 enabled users: never
        (9, 2, False),
    ],
)
def test_mass_disable_threshold(n_enabled: int, disabled: int, mass: bool) -> None:
    result = _many(n_enabled, disabled, extra_unlicensed=5)
    assert result.enabled_before == n_enabled
    assert result.disabling == disabled
    assert result.mass_disable is mass
    assert any("--allow-mass-disable" in w for w in result.safety) is mass


def test_mass_disable_counts_removed_users() -> None:
    users = {f"u{i:03}@contoso.com": enabled(f"{1000000 + i}") for i in range(10)}
    after = {k: v for k, v in users.items() if k not in ("u000@contoso.com", "u001@contoso.com")}
    result, _ = plan_between(config(users), config(after))
    assert result.disabling == 2 and result.mass_disable


def test_a_scope_compares_only_its_users_and_counts_the_others_for_the_mass_rules() -> None:
    """Users outside the scope are the same on both sides: never read, only counted."""

    class Untouchable(dict):  # every user, read only by a plan that ignores its scope
        def __getitem__(self, key: str) -> Any:
            raise AssertionError("a user outside the scope was read")

        def get(self, key: str, default: Any = None) -> Any:
            raise AssertionError("a user outside the scope was read")

        def items(self) -> Any:
            raise AssertionError("the users outside the scope were listed")

    users = {f"u{i:03}@contoso.com": enabled(f"{1000000 + i}") for i in range(12)}
    before, after = config(users), config({**users, "u000@contoso.com": {"license": False}})
    state = applied(before)
    changed = ["u000@contoso.com", "u001@contoso.com"]
    scope = Scope(
        {upn: after.users[upn] for upn in changed},
        {upn: state.users[upn] for upn in changed},
        others=10 + 3,
        others_enabled=10,
    )
    after.users, state.users = Untouchable(), Untouchable()
    result, _ = plan_tenant(after, state, scope=scope)
    assert [(c.user, c.action) for c in result.user_changes] == [("u000@contoso.com", "update")]
    assert (result.users, result.enabled_before, result.disabling) == (15, 12, 1)
    assert not result.mass_disable  # 1 of 12 enabled: the others count
    nothing, _ = plan_tenant(after, state, scope=Scope({}, {}))
    assert not nothing.has_changes and nothing.emails == []


def test_check_safe_names_every_unsafe_tenant() -> None:
    unsafe = [_many(10, 2), _many(20, 3), _many(10, 1)]
    for tenant_plan, name in zip(unsafe, ("alpha", "beta", "gamma"), strict=True):
        tenant_plan.name = name
    with pytest.raises(UnsafePlan) as refused:
        Plan(unsafe).check_safe()
    assert refused.value.tenants == ["alpha", "beta"]
    assert str(refused.value).startswith(
        "refusing to disable more than 10% of the enabled users of alpha, beta;"
    )
    with pytest.raises(UnsafePlan):
        unsafe[0].check_safe()
    Plan(unsafe).check_safe(allow_mass_disable=True)
    unsafe[2].check_safe()


def _mailing(users: int, mailed: int, *, send: bool = True, state: bool = True):
    """``users`` enabled users of whom the first ``mailed`` change conference ID."""
    before = {f"u{i:03}@contoso.com": enabled(f"{1000000 + i}") for i in range(users)}
    after = {
        upn: enabled(f"{2000000 + i}") if i < mailed else record
        for i, (upn, record) in enumerate(before.items())
    }
    doc = tenant_doc(send=send)
    return plan_tenant(config(after, doc), applied(config(before, doc)) if state else None)[0]


@pytest.mark.parametrize(
    ("users", "mailed", "mass"),
    [
        (10, 2, True),
        (10, 1, False),  # exactly 10% is not more than 10%
        (40, 5, True),
        (40, 4, False),
        (9, 9, False),  # fewer than 10 users: never
    ],
)
def test_mass_email_threshold(users: int, mailed: int, mass: bool) -> None:
    result = _mailing(users, mailed)
    assert (result.users, result.mailed) == (users, mailed)
    assert result.mass_email is mass
    expected = [f"{mailed} of {users} users would get an email (over 10%)"] if mass else []
    assert [w.split(";")[0] for w in result.safety] == expected


def test_mass_email_counts_users_not_emails_and_only_what_is_sent() -> None:
    """Two emails to one user count once; suppressed emails are not sent; a first apply is the
    first-contact guard's business."""
    before = {f"u{i:03}@contoso.com": enabled(f"{1000000 + i}") for i in range(10)}
    after = dict(before)
    after["u000@contoso.com"] = enabled("2000000", pin_reset="r1")  # details-changed + pin-reset
    result = plan_between(config(before), config(after))[0]
    assert (len(result.emails), result.mailed, result.mass_email) == (2, 1, False)
    assert _mailing(10, 10, send=False).mailed == 0
    assert not _mailing(10, 10, state=False).mass_email


def test_disabled_emails_are_the_mass_disable_rules_alone() -> None:
    result = _many(10, 2)  # 2 of 10 disabled: 2 emails to 20% of the users
    assert result.mass_disable and not result.mass_email and result.mailed == 0
    result.check_safe(allow_mass_disable=True)


def test_check_safe_says_every_rule_and_tenant_in_one_line() -> None:
    disabling, mailing = _many(10, 2), _mailing(12, 12)
    disabling.name, mailing.name = "alpha", "beta"
    with pytest.raises(UnsafePlan) as refused:
        Plan([disabling, mailing]).check_safe()
    message = str(refused.value)
    assert refused.value.tenants == ["alpha", "beta"] and "\n" not in message
    assert "disable more than 10% of the enabled users of alpha" in message
    assert "--allow-mass-disable" in message
    assert "email more than 10% of the users of beta (12 of 12 users)" in message
    assert message.endswith(
        "--allow-mass-email if that is the change you mean; nothing was changed or sent"
    )
    with pytest.raises(UnsafePlan, match="beta") as only_mail:
        Plan([disabling, mailing]).check_safe(allow_mass_disable=True)
    assert "alpha" not in str(only_mail.value)
    Plan([disabling, mailing]).check_safe(allow_mass_disable=True, allow_mass_email=True)


@pytest.mark.parametrize(
    ("before", "after", "note"),
    [
        (None, {"license": False}, "no email: not licensed"),
        ({"license": False}, {"license": False, "display_name": "A"}, "no email: not licensed"),
        (None, enabled("1000001", provider="ThirdParty"), "no email: provider is ThirdParty"),
        (enabled("1000001", provider="None"), None, "no email: provider is None"),
        ({"license": False}, None, "no email: not licensed"),
        (
            enabled("1000001"),
            enabled("1000001", display_name="A"),
            "no email: display_name changed",
        ),
        (
            enabled("1000001", pin_reset="r1"),
            enabled("1000001", pin_reset=None, locale="fr"),
            "no email: locale changed, pin_reset cleared",
        ),
        (
            enabled("1000001"),
            enabled("1000001", toll_free_number=TOLL_FREE, email="a.x@contoso.com"),
            "no email: email changed, toll_free_number changed",
        ),
        (enabled("1000001"), enabled("1000002"), None),
    ],
)
def test_a_change_that_sends_no_email_says_why(
    before: dict[str, Any] | None, after: dict[str, Any] | None, note: str | None
) -> None:
    upn = "alice@contoso.com"
    result, _ = plan_between(
        config({upn: before}) if before else config({}), config({upn: after} if after else {})
    )
    (change,) = result.user_changes
    assert change.note == note
    assert change.emails == tuple(e.type for e in result.emails)


def test_suppressed_emails_are_noted_on_the_change() -> None:
    doc = tenant_doc(send=False)
    result = plan_between(None, config({"alice@contoso.com": enabled("1000001")}, doc))[0]
    (change,) = result.user_changes
    assert change.emails == ("enabled",)
    assert change.note == "suppressed: automatically_send_emails_to_users is false"


def test_plan_missing() -> None:
    cfg = config({"alice@contoso.com": enabled("1000001")})
    result = plan_missing("contoso", applied(cfg, serial=4))
    assert result.missing
    assert (result.lineage, result.serial) == ("lineage-1", 4)
    assert result.emails == [] and result.user_changes == [] and result.settings_changes == []
    assert not result.has_changes and not result.mass_disable
    assert len(result.warnings) == 1 and "missing" in result.warnings[0]
    assert result.config is None


def test_only_users_that_differ_are_read_from_the_state(monkeypatch: pytest.MonkeyPatch) -> None:
    import deepdiff

    fetched: list[str] = []
    diffs: list[Any] = []
    monkeypatch.setattr(deepdiff, "DeepDiff", lambda *a, **k: diffs.append(a))
    users = {f"u{i:04}@contoso.com": enabled(f"{1000000 + i}") for i in range(500)}
    before = config(users)
    texts = {upn: encode_record(record) for upn, record in before.users.items()}
    stored = StoredUsers.from_rows(texts.items(), lambda upn: fetched.append(upn) or texts[upn])
    state = Applied("0f1e2d3c", 3, before.tenant, stored)
    after_users = dict(users)
    after_users["u0042@contoso.com"] = enabled("1999999")
    result, _ = plan_tenant(config(after_users), state)
    assert fetched == ["u0042@contoso.com"]
    assert [u.user for u in result.user_changes] == ["u0042@contoso.com"]
    assert result.user_changes[0].changes == (Change("conference_id", "1000042", "1999999"),)
    assert diffs == []  # DeepDiff is for the nested tenant record, which did not change

    fetched.clear()
    assert plan_tenant(config(users), state)[0].user_changes == []
    assert fetched == []


def test_a_created_users_changes_are_read_from_the_configuration_when_shown() -> None:
    """A first plan of 300,000 users holds each user's values once (issue 15): a create's
    changes are made from the configured record when something reads them."""
    after = config({"carol@contoso.com": enabled("1000003")})
    reads: list[str] = []

    class Counting(dict):
        def __getitem__(self, upn: str) -> Any:
            reads.append(upn)
            return super().__getitem__(upn)

    after.users = Counting(after.users)
    (create,) = plan_between(None, after)[0].user_changes
    reads.clear()

    assert {c.path: c.after for c in create.changes}["conference_id"] == "1000003"
    assert reads == ["carol@contoso.com"]
    assert create.changes != (Change("conference_id", None, "1000003"),)
    as_tuple = UserChange(create.user, "create", tuple(create.changes), create.emails, create.note)
    assert hash(create) == hash(as_tuple)
    assert create.changes != "not a sequence of changes"


def _redialling(**settings: Any):
    """Five enabled users: one gets another conference ID, one another dial-in number, one
    another toll-free number, one only a new display name; one more is disabled and one
    added (their meetings are not counted: only enabled users whose details change)."""
    before = {f"u{i}@contoso.com": enabled(f"100000{i}") for i in range(5)}
    after = {
        "u0@contoso.com": enabled("2000000"),
        "u1@contoso.com": enabled("1000001", dial_in_number=OTHER_TOLL),
        "u2@contoso.com": enabled("1000002", toll_free_number=TOLL_FREE),
        "u3@contoso.com": enabled("1000003", display_name="New Name"),
        "u4@contoso.com": {**enabled("1000004"), "license": False},
        "u5@contoso.com": enabled("1000005"),
    }
    doc = tenant_doc(**settings)
    return plan_tenant(config(after, doc), applied(config(before, doc)))[0]


def test_meeting_migration_counts_users_whose_dial_in_details_change() -> None:
    result = _redialling()  # automatically_migrate_user_meetings defaults to true
    assert result.meeting_migration == 3
    (note,) = [w for w in result.warnings if "Meeting Migration" in w]
    assert note.startswith("automatically_migrate_user_meetings is true: ")
    assert "future meetings of 3 user(s)" in note


def test_no_meeting_migration_note_when_the_setting_is_false() -> None:
    result = _redialling(automatically_migrate_user_meetings=False)
    assert result.meeting_migration == 0
    assert not [w for w in result.warnings if "Meeting Migration" in w]


def test_no_meeting_migration_note_without_a_dial_in_change() -> None:
    before = {"a@contoso.com": enabled("1000001")}
    after = {"a@contoso.com": enabled("1000001", pin_reset="r1", display_name="A")}
    result = plan_between(config(before), config(after))[0]
    assert result.meeting_migration == 0 and result.warnings == []
