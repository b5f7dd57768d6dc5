"""Building the plan: a pure function of (configured tenant, applied state).

Records are compared with ``==`` first; DeepDiff describes only the records that differ, so a
100k-user tenant with 1% changed costs 1% of the diffing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Literal, NamedTuple

from reconciler.errors import Finding, UserError
from reconciler.locales import FALLBACK_LOCALE, SHIPPED_LOCALES, differs, resolve
from reconciler.model import (
    Applied,
    AppliedUsers,
    EmailType,
    TenantConfig,
    TenantRecord,
    UserRecord,
    is_enabled,
)
from reconciler.transitions import Email, emails_for, refused_requests, silence
from reconciler.views import TupleView

MASS_DISABLE_FRACTION = 0.10
MASS_DISABLE_MIN_ENABLED = 10
"""SPEC §6: disabling more than this fraction of a tenant's enabled users, when it has at least
this many, is refused unless the operator allows it (a deleted users file looks like this)."""
MASS_EMAIL_FRACTION = 0.10
MASS_EMAIL_MIN_USERS = 10
"""SPEC §8: emailing more than this fraction of the users of a tenant that has applied state,
when it has at least this many, is refused unless the operator allows it: one edit (every
``license`` of an adopted export, a bridge-wide number) must not email the whole tenant by
surprise. ``disabled`` emails are the mass-disable rule's alone."""


class UnsafePlan(UserError):
    """Applying the plan would break a safety rule (SPEC §6, §8); nothing was changed or sent.
    ``tenants``: those it names, each once; ``refusals``: one sentence per rule broken."""

    def __init__(self, tenants: list[str], refusals: list[str]):
        self.tenants = tenants
        super().__init__("; ".join(refusals) + "; nothing was changed or sent")


def _refuse_mass_disable(tenants: list[str]) -> str:
    return (
        f"refusing to disable more than {MASS_DISABLE_FRACTION:.0%} of the enabled users of "
        f"{', '.join(tenants)}; check the configuration (a deleted users file?) or pass "
        "--allow-mass-disable"
    )


def _refuse_mass_email(plans: list[TenantPlan]) -> str:
    counts = ", ".join(f"{t.name} ({t.mailed} of {t.users} users)" for t in plans)
    return (
        f"refusing to email more than {MASS_EMAIL_FRACTION:.0%} of the users of {counts}; "
        "check the plan, or pass --allow-mass-email if that is the change you mean"
    )


class Change(NamedTuple):
    """One value that changes (a tuple: a first plan makes millions of them)."""

    path: str
    before: Any
    after: Any


UserAction = Literal["create", "update", "delete"]


@dataclass(frozen=True, slots=True)
class UserChange:
    user: str
    action: UserAction
    changes: Sequence[Change]
    emails: tuple[EmailType, ...] = ()
    """The emails this change sends the user, in send order."""
    note: str | None = None
    """Why it sends none (``no email: not licensed``), or that they are suppressed: a reviewer
    reads why a change is silent instead of guessing (SPEC §4: nothing else sends an email)."""


class Created(TupleView[Change]):
    """A created user's changes: every value it has. Made from its record each time they are
    read: a first plan of 300,000 users would otherwise hold every configured value twice (one
    object of two slots per user)."""

    __slots__ = ("_upn", "_users")

    def __init__(self, users: Mapping[str, UserRecord], upn: str):
        self._users, self._upn = users, upn

    def _made(self) -> tuple[Change, ...]:
        record = self._users[self._upn]
        return tuple(Change(k, None, v) for k, v in record.items() if v is not None and k != "upn")


@dataclass(frozen=True, slots=True)
class PlannedEmail:
    user: str
    to: str
    type: EmailType
    reasons: tuple[str, ...]
    suppressed: bool
    locale: str = FALLBACK_LOCALE
    """The locale folder the email is written from (:func:`reconciler.locales.resolve`)."""
    requested_locale: str = FALLBACK_LOCALE
    """The user's locale tag as configured (the tenant's ``email.locale`` when unset), so a
    reviewer sees when ``fr-CA`` will read ``fr`` or ``ko`` the tenant's language."""

    @property
    def falls_back(self) -> bool:
        """Written in another locale than the one configured: the plan outputs say which."""
        return differs(self.requested_locale, self.locale)


@dataclass
class TenantPlan:
    name: str
    lineage: str | None
    serial: int
    settings_changes: list[Change] = field(default_factory=list)
    user_changes: list[UserChange] = field(default_factory=list)
    emails: list[PlannedEmail] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    """What a reviewer should know that apply does not refuse (suppressed emails, a missing
    folder); :attr:`safety` says what it refuses."""
    missing: bool = False
    """In the state but not in the config: reported, never applied."""
    config: TenantConfig | None = None
    applied: Applied | None = None
    """The state this plan was made against (apply composes removed users' emails from it)."""
    enabled_before: int = 0
    disabling: int = 0
    users: int = 0
    """The tenant's users as configured (for the mass-email rule)."""
    mailed: int = 0
    """Users who get an email other than ``disabled`` that is sent, not suppressed."""
    redialled: int = 0
    """Users enabled before and after whose conference ID, dial-in or toll-free number
    changes: the dial-in details their scheduled meetings carry (:attr:`meeting_migration`)."""
    migrates_meetings: bool = False
    """The tenant's ``automatically_migrate_user_meetings`` as configured."""

    @property
    def meeting_migration(self) -> int:
        """SPEC §8: users whose future meetings Microsoft's Meeting Migration re-sends to every
        attendee once the Teams side is changed (``automatically_migrate_user_meetings`` true
        and their dial-in details change); 0 when the setting is false."""
        return self.redialled if self.migrates_meetings else 0

    @property
    def has_changes(self) -> bool:
        return bool(self.settings_changes or self.user_changes)

    @property
    def mass_disable(self) -> bool:
        """SPEC §6: more than :data:`MASS_DISABLE_FRACTION` of at least
        :data:`MASS_DISABLE_MIN_ENABLED` enabled users would be disabled."""
        return (
            self.enabled_before >= MASS_DISABLE_MIN_ENABLED
            and self.disabling > MASS_DISABLE_FRACTION * self.enabled_before
        )

    @property
    def mass_email(self) -> bool:
        """SPEC §8: a tenant with applied state, of at least :data:`MASS_EMAIL_MIN_USERS`
        users, more than :data:`MASS_EMAIL_FRACTION` of whom would get an email that is sent
        (``disabled`` aside: :attr:`mass_disable` governs those). A first apply is the
        first-contact guard's."""
        return (
            self.lineage is not None
            and self.users >= MASS_EMAIL_MIN_USERS
            and self.mailed > MASS_EMAIL_FRACTION * self.users
        )

    @property
    def safety(self) -> list[str]:
        """What apply refuses without an override, one sentence per rule: outputs show these
        before anything else, so a pull request says so up front."""
        found = []
        if self.mass_disable:
            found.append(
                f"{self.disabling} of {self.enabled_before} enabled users would be disabled "
                f"(over {MASS_DISABLE_FRACTION:.0%}); apply refuses without --allow-mass-disable"
            )
        if self.mass_email:
            found.append(
                f"{self.mailed} of {self.users} users would get an email (over "
                f"{MASS_EMAIL_FRACTION:.0%}); apply refuses without --allow-mass-email"
            )
        return found

    def check_safe(
        self, *, allow_mass_disable: bool = False, allow_mass_email: bool = False
    ) -> None:
        """Raise :class:`UnsafePlan` when applying this tenant's plan needs the operator's
        explicit override (like octodns's ``Plan.raise_if_unsafe``)."""
        Plan([self]).check_safe(
            allow_mass_disable=allow_mass_disable, allow_mass_email=allow_mass_email
        )


@dataclass
class Plan:
    tenants: list[TenantPlan]

    @property
    def has_changes(self) -> bool:
        return any(t.has_changes for t in self.tenants)

    def check_safe(
        self, *, allow_mass_disable: bool = False, allow_mass_email: bool = False
    ) -> None:
        """Raise one :class:`UnsafePlan` naming every tenant whose plan is unsafe and every
        override it needs, so the operator sees them all at once."""
        disabling = [] if allow_mass_disable else [t for t in self.tenants if t.mass_disable]
        mailing = [] if allow_mass_email else [t for t in self.tenants if t.mass_email]
        refusals = [_refuse_mass_disable([t.name for t in disabling])] * bool(disabling)
        refusals += [_refuse_mass_email(mailing)] * bool(mailing)
        if refusals:
            named = {t.name for t in (*disabling, *mailing)}
            raise UnsafePlan([t.name for t in self.tenants if t.name in named], refusals)

    def email_kinds(self) -> set[tuple[str, str]]:
        """``(locale, type)`` of every email the plan writes, suppressed ones included (they
        are composed too): the templates an apply of this plan renders."""
        return {(e.locale, e.type) for t in self.tenants for e in t.emails}

    def summary(self) -> dict[str, int]:
        emails = [e for t in self.tenants for e in t.emails]
        return {
            "settings_changes": sum(len(t.settings_changes) for t in self.tenants),
            "user_changes": sum(len(t.user_changes) for t in self.tenants),
            "emails": len(emails),
            "suppressed": sum(e.suppressed for e in emails),
        }


@dataclass(frozen=True)
class Scope:
    """The users a plan compares, when the caller knows the others are the same in the
    configuration and the applied state (their files did not change since it was applied):
    those are neither read nor compared, only counted, for the mass-email and mass-disable
    rules count every user. Without one, a plan compares every user."""

    configured: Mapping[str, UserRecord]
    """The configured users that may differ from the applied ones."""
    applied: Mapping[str, UserRecord]
    """The applied users that may differ from the configured ones (or be gone)."""
    others: int = 0
    """How many users are the same on both sides, outside these mappings."""
    others_enabled: int = 0
    """How many of those are enabled."""


def plan_tenant(
    config: TenantConfig,
    applied: Applied | None,
    locales: Collection[str] = SHIPPED_LOCALES,
    scope: Scope | None = None,
) -> tuple[TenantPlan, list[Finding]]:
    """What applying ``config`` over ``applied`` changes and sends, and the requests it refuses.

    ``locales``: the locale folders of the templates, to name the language of each email.
    ``scope``: the users to compare, when the others are known to be unchanged.
    """
    result = TenantPlan(
        config.name,
        applied.lineage if applied else None,
        applied.serial if applied else 0,
        config=config,
        applied=applied,
    )
    if scope is None:
        scope = Scope(config.users, applied.users if applied else {})
    before_users = scope.applied
    unchanged = _unchanged(before_users)
    result.settings_changes = _settings_changes(config, applied)
    suppressed = not config.tenant["settings"]["automatically_send_emails_to_users"]
    result.migrates_meetings = config.tenant["settings"]["automatically_migrate_user_meetings"]
    findings: list[Finding] = []
    after_users = scope.configured
    enabled_now = scope.others_enabled
    result.users = scope.others
    shared: dict[Any, Any] = {}  # 300,000 emails and changes share a handful of values
    gone = set(before_users)  # the applied users no configured user matches, once all are seen
    for upn, after in _each_user(after_users, gone):
        if after is not None:
            result.users += 1
            enabled_now += is_enabled(after)
            if unchanged(upn, after):
                continue  # the common case: stored users compare digests, nothing is parsed
        before = before_users.get(upn)
        if before == after:
            continue
        emails = emails_for(before, after)
        result.redialled += _redialled(before, after)
        result.user_changes.append(
            _user_change(upn, before, after, after_users, emails, suppressed, shared)
        )
        result.mailed += not suppressed and any(e.type != "disabled" for e in emails)
        findings.extend(_refusals(config, upn, before, after))
        user = after or before
        assert user is not None  # a change needs a user before or after
        result.emails.extend(_planned(config, upn, user, emails, suppressed, shared, locales))
        disabled = sum(e.type == "disabled" for e in emails)
        enabled_now += disabled - sum(e.type == "enabled" for e in emails)
        result.disabling += disabled
    result.user_changes.sort(key=attrgetter("user"))
    result.emails.sort(key=attrgetter("user"))  # stable: one user's emails keep their order
    result.enabled_before = enabled_now
    result.warnings = _warnings(result, suppressed)
    return result, findings


def _settings_changes(config: TenantConfig, applied: Applied | None) -> list[Change]:
    """What changes in the tenant record (settings, bridge, email), or nothing."""
    if applied is not None and applied.tenant == config.tenant:
        return []
    return _record_changes(applied.tenant if applied else None, config.tenant)


def _refusals(
    config: TenantConfig, upn: str, before: UserRecord | None, after: UserRecord | None
) -> Iterator[Finding]:
    """The one-off requests (``pin_reset``, ``send_conference_info``) set for a user who is not
    enabled after the change: located at the key, refused."""
    for request in refused_requests(before, after):
        file, key = config.sources[upn]
        yield Finding(
            file,
            ("users", key, request),
            f"{request} is set for {upn}, who is not enabled after this "
            "change (needs license: true and provider: Microsoft)",
            at_key=True,
        )


def _planned(
    config: TenantConfig,
    upn: str,
    user: UserRecord,
    emails: list[Email],
    suppressed: bool,
    shared: dict[Any, Any],
    locales: Collection[str],
) -> Iterator[PlannedEmail]:
    """A user's emails as planned: to whom, why, and in which locale folder (the user's tag,
    else the tenant's, resolved among ``locales``)."""
    tenant_tag = config.tenant["email"]["locale"]
    tag = sys.intern(user.get("locale") or tenant_tag)
    for email in emails:
        yield PlannedEmail(
            upn,
            user.get("email", upn),
            email.type,
            shared.setdefault(email.reasons, email.reasons),
            suppressed,
            resolve((tag, tenant_tag), locales),
            tag,
        )


def plan_missing(name: str, applied: Applied) -> TenantPlan:
    """A tenant in the state whose folder is gone: not a license removal for all its users."""
    return TenantPlan(
        name,
        applied.lineage,
        applied.serial,
        missing=True,
        warnings=[
            f"tenant {name} is in the state but its folder is missing from the configuration; "
            "nothing is planned or sent for it (restore the folder, or remove its state on purpose)"
        ],
    )


def _each_user(
    configured: Mapping[str, UserRecord], gone: set[str]
) -> Iterator[tuple[str, UserRecord | None]]:
    """Every configured user in reading order (one pass over the loader's database, not a
    lookup per user), then the applied users left in ``gone`` with None."""
    for upn, record in configured.items():
        gone.discard(upn)
        yield upn, record
    yield from ((upn, None) for upn in sorted(gone))


def _unchanged(users: Mapping[str, UserRecord]) -> Callable[[str, UserRecord], bool]:
    """The cheapest exact test that a configured record is the applied one."""
    if isinstance(users, AppliedUsers):
        return users.same
    return lambda upn, record: users.get(upn) == record


DIAL_IN_DETAILS = ("conference_id", "dial_in_number", "toll_free_number")
"""What a user's scheduled meetings carry for callers: a change makes Microsoft's Meeting
Migration update (and re-send) them."""


def _redialled(before: UserRecord | None, after: UserRecord | None) -> bool:
    """Enabled before and after, with other dial-in details (:data:`DIAL_IN_DETAILS`)."""
    return (
        is_enabled(before)
        and is_enabled(after)
        and any(before.get(k) != after.get(k) for k in DIAL_IN_DETAILS)  # type: ignore[union-attr]
    )


def _warnings(plan: TenantPlan, suppressed: bool) -> list[str]:
    warnings = []
    if plan.meeting_migration:
        warnings.append(
            f"automatically_migrate_user_meetings is true: once the Teams side is changed, "
            f"Microsoft's Meeting Migration re-sends the future meetings of "
            f"{plan.meeting_migration} user(s) whose conference ID or dial-in number changes "
            "to all their attendees"
        )
    if suppressed and plan.emails:
        warnings.append(
            f"automatically_send_emails_to_users is false: {len(plan.emails)} email(s) will be "
            "suppressed, not sent; inform these users some other way (apply keeps each message "
            "for the operator)"
        )
    return warnings


SUPPRESSED_NOTE = "suppressed: automatically_send_emails_to_users is false"


def _user_change(
    upn: str,
    before: UserRecord | None,
    after: UserRecord | None,
    configured: Mapping[str, UserRecord],
    emails: list[Email],
    suppressed: bool,
    shared: dict[Any, Any],
) -> UserChange:
    """One user's change, the emails it sends and, when it sends none, why."""
    kinds = tuple(e.type for e in emails)
    note = None
    if not emails:
        note = "no email: " + silence(before, after)
    elif suppressed:
        note = SUPPRESSED_NOTE
    sent, why = shared.setdefault(kinds, kinds), shared.setdefault(note, note)
    if before is None:
        return UserChange(upn, "create", Created(configured, upn), sent, why)
    if after is None:
        changes = tuple(
            Change(k, v, None) for k, v in before.items() if v is not None and k != "upn"
        )
        return UserChange(upn, "delete", changes, sent, why)
    return UserChange(
        upn,
        "update",
        tuple(
            Change(key, before.get(key), after.get(key))
            for key in sorted(before.keys() | after.keys())
            if before.get(key) != after.get(key)
        ),
        sent,
        why,
    )


def _blank(record: Any) -> Any:
    """The same shape with nothing in it, so a first plan lists every setting as a leaf."""
    if isinstance(record, dict):
        return {key: _blank(value) for key, value in record.items()}
    return [] if isinstance(record, list) else None


def _record_changes(before: TenantRecord | None, after: TenantRecord) -> list[Change]:
    """Leaf-level changes between two nested records (the tenant's), as dotted paths, sorted.
    User records are flat and compared key by key in :func:`_user_change`."""
    from deepdiff import DeepDiff  # heavy import (numpy, pydantic): only once a record differs
    from deepdiff.helper import NotPresent

    diff = DeepDiff(_blank(after) if before is None else before, after, view="tree")
    changes = []
    for level in (lvl for kind in diff.values() for lvl in kind):
        steps = level.path(output_format="list")
        path = ".".join(str(s) if isinstance(s, str) else f"[{s}]" for s in steps)
        changes.append(
            Change(
                path.replace(".[", "["),
                None if isinstance(level.t1, NotPresent) else level.t1,
                None if isinstance(level.t2, NotPresent) else level.t2,
            )
        )
    return sorted(changes, key=lambda c: c.path)
