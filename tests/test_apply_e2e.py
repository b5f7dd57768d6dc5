"""SPEC §4 end to end: every email rule and combination through `reconciler apply` into a Maildir,
read back with the standard library, in both shipped locales; the From header; idempotence;
history; suppressed emails; `test-email` into a Maildir."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.mail import Mail, is_trivial_pin, parse_mail, read_maildir, sequence
from tests.helpers.tenants import (
    MEETING_UPDATE_TOOL_URL,
    TOLL,
    TOLL_2,
    TOLL_FREE,
    enabled_users,
    tenant_doc,
    user_doc,
    write_tenant,
)
from tests.helpers.workspace import Workspace, state_file

OVERRIDE = ("Contoso Conferencing", "conferencing@contoso.com")
OTHER = {"en": "fr", "fr": "en"}
GREETING = {"en": "Hello", "fr": "Bonjour"}
DYNAMIC_ID_NOTE = {"en": "dynamic conference IDs", "fr": "ID de conférence dynamiques"}
PIN_TYPES = {"enabled", "pin-reset"}
DETAIL_TYPES = {"enabled", "details-changed", "pin-reset", "conference-info"}
UPDATE_TOOL_TYPES = {"enabled", "details-changed", "disabled"}


def contoso_users_1() -> dict[str, Any]:
    """Before: one user per starting point the rules distinguish (UPN order = send order)."""
    return {
        "a-new@contoso.com": user_doc(
            "1000001", display_name="Ana New", toll_free_number=TOLL_FREE
        ),
        "b-lic@contoso.com": user_doc("1000002", license=False),
        "c-prov@contoso.com": user_doc("1000003", provider="ThirdParty"),
        "d-none@contoso.com": user_doc("1000004", provider="None"),
        "e-det@contoso.com": user_doc("1000005"),
        "f-dial@contoso.com": user_doc("1000006"),
        "g-pin@contoso.com": user_doc("1000007"),
        "h-info@contoso.com": user_doc("1000008", toll_free_number=TOLL_FREE),
        "i-combo@contoso.com": user_doc("1000009"),
        "j-pininfo@contoso.com": user_doc("1000010"),
        "k-off@contoso.com": user_doc("1000011"),
        "l-tp@contoso.com": user_doc("1000012"),
        "m-pn@contoso.com": user_doc("1000013"),
        "n-gone@contoso.com": user_doc("1000014"),
        "o-quiet@contoso.com": user_doc("1000015", display_name="Olga Quiet"),
        "p-never@contoso.com": user_doc("1000016", license=False, display_name="Pat Never"),
        "q-discombo@contoso.com": user_doc("1000017"),
        "r-encombo@contoso.com": user_doc("1000018", license=False),
        "s-rcpt@contoso.com": user_doc("1000019", email="s.alias@contoso.com"),
    }


def contoso_users_2(locale: str) -> dict[str, Any]:
    """After: every row of SPEC §4 and every combination rule, in one apply."""
    users = contoso_users_1()
    users.update(
        {
            "b-lic@contoso.com": user_doc("1000002"),  # license assigned
            "c-prov@contoso.com": user_doc("1000003"),  # ThirdParty -> MS
            "d-none@contoso.com": user_doc("1000004"),  # None -> Microsoft
            "e-det@contoso.com": user_doc("2000005"),  # conference ID
            "f-dial@contoso.com": user_doc("1000006", dial_in_number=TOLL_2),  # default number
            "g-pin@contoso.com": user_doc("1000007", pin_reset="2026-11-29 #1"),
            "h-info@contoso.com": user_doc(
                "1000008", toll_free_number=TOLL_FREE, send_conference_info="2026-11-29"
            ),
            "i-combo@contoso.com": user_doc("2000009", pin_reset="r1", send_conference_info="c1"),
            "j-pininfo@contoso.com": user_doc("1000010", pin_reset="r1", send_conference_info="c1"),
            "k-off@contoso.com": user_doc("1000011", license=False),  # license removed
            "l-tp@contoso.com": user_doc("1000012", provider="ThirdParty"),
            "m-pn@contoso.com": user_doc("1000013", provider="None"),
            # display name, locale, recipient override, toll-free number: no email
            "o-quiet@contoso.com": user_doc(
                "1000015",
                display_name="Olga Renamed",
                locale=OTHER[locale],
                email="olga@contoso.com",
                toll_free_number=TOLL_FREE,
            ),
            "p-never@contoso.com": user_doc("2000016", license=False, display_name="Pat Changed"),
            "q-discombo@contoso.com": user_doc("2000017", license=False),
            "r-encombo@contoso.com": user_doc("1000018", pin_reset="r1", send_conference_info="c1"),
            "t-other@contoso.com": user_doc("1000020", locale=OTHER[locale]),  # new, other locale
        }
    )
    del users["n-gone@contoso.com"]  # removed
    return users


def contoso_users_3(locale: str) -> dict[str, Any]:
    """Requests: a repeated value asks nothing, a cleared one asks nothing, a new one asks."""
    users = contoso_users_2(locale)
    users.update(
        {
            "g-pin@contoso.com": user_doc("1000007", pin_reset="2026-11-29 #2"),
            "h-info@contoso.com": user_doc(
                "1000008", toll_free_number=TOLL_FREE, send_conference_info="2026-11-29"
            ),  # same: nothing
            "j-pininfo@contoso.com": user_doc("1000010"),  # cleared
            "s-rcpt@contoso.com": user_doc(
                "1000019", email="s.alias@contoso.com", send_conference_info="again"
            ),
        }
    )
    return users


EXPECTED_1 = [
    (f"{u}@contoso.com", "enabled")
    for u in (
        "a-new",
        "e-det",
        "f-dial",
        "g-pin",
        "h-info",
        "i-combo",
        "j-pininfo",
        "k-off",
        "l-tp",
        "m-pn",
        "n-gone",
        "o-quiet",
        "q-discombo",
    )
] + [("s.alias@contoso.com", "enabled"), ("x-dyn@fabrikam.com", "enabled")]
EXPECTED_2 = [
    ("b-lic@contoso.com", "enabled"),
    ("c-prov@contoso.com", "enabled"),
    ("d-none@contoso.com", "enabled"),
    ("e-det@contoso.com", "details-changed"),
    ("f-dial@contoso.com", "details-changed"),
    ("g-pin@contoso.com", "pin-reset"),
    ("h-info@contoso.com", "conference-info"),
    ("i-combo@contoso.com", "details-changed"),
    ("i-combo@contoso.com", "pin-reset"),
    ("j-pininfo@contoso.com", "pin-reset"),
    ("j-pininfo@contoso.com", "conference-info"),
    ("k-off@contoso.com", "disabled"),
    ("l-tp@contoso.com", "disabled"),
    ("m-pn@contoso.com", "disabled"),
    ("n-gone@contoso.com", "disabled"),
    ("q-discombo@contoso.com", "disabled"),
    ("r-encombo@contoso.com", "enabled"),
    ("t-other@contoso.com", "enabled"),
    ("x-dyn@fabrikam.com", "pin-reset"),
]
EXPECTED_3 = [
    ("g-pin@contoso.com", "pin-reset"),
    ("s.alias@contoso.com", "conference-info"),
    ("x-dyn@fabrikam.com", "details-changed"),
]


def contoso_users(locale: str, step: int) -> dict[str, Any]:
    if step == 1:
        return contoso_users_1()
    return contoso_users_2(locale) if step == 2 else contoso_users_3(locale)


def write_config(ws: Workspace, locale: str, step: int) -> None:
    settings = {"enable_name_recording": step == 1}  # a tenant setting change sends nothing
    write_tenant(
        ws.config,
        "contoso",
        tenant_doc(locale=locale, pin_length=6, override=OVERRIDE, **settings),
        contoso_users(locale, step),
    )
    fabrikam = tenant_doc(locale=locale, pin_length=4, unique_ids=True)
    if step == 3:
        fabrikam["bridge"]["default_number"] = TOLL_2  # changes x-dyn's effective number
    write_tenant(ws.config, "fabrikam", fabrikam, fabrikam_users(step))


def fabrikam_users(step: int) -> dict[str, Any]:
    return {
        "x-dyn@fabrikam.com": user_doc(
            "3000001", display_name="Xavier Dyn", pin_reset=None if step == 1 else "first"
        )
    }


def effective(ws_config: dict[str, Any], mail: Mail) -> dict[str, Any]:
    """The configured record of the user a message went to (by tenant and recipient)."""
    for upn, record in ws_config[mail.tenant].items():
        if record.get("email", upn) == mail.to:
            return {"upn": upn, **record}
    raise AssertionError(f"no user of {mail.tenant} receives {mail.to}")


def conference_ids(locale: str) -> set[str]:
    """Every conference ID any configuration of the scenario uses."""
    return {
        user["conference_id"]
        for step in (1, 2, 3)
        for user in [*contoso_users(locale, step).values(), *fabrikam_users(step).values()]
    }


def check_message(
    mail: Mail,
    user: dict[str, Any],
    locale: str,
    pin_length: int,
    known_pins: set[str],
    unique_ids: bool,
    default_number: str,
    all_conference_ids: set[str],
) -> str | None:
    """Everything SPEC §4 says about one message; returns its PIN, if it carries one."""
    message = mail.message
    assert message.get_content_type() == "multipart/alternative"
    assert message["Date"] is not None and message["Message-ID"] is not None
    assert message["Content-Language"] == locale, (mail.to, mail.type)
    assert message["To"].addresses[0].display_name == user.get("display_name", "")
    assert GREETING[locale] in mail.text, (mail.to, mail.type, mail.text)
    if mail.tenant == "contoso":
        assert mail.sender == OVERRIDE
    else:
        assert mail.sender == ("Office 365", "noreply@localhost")
    conference_id = user["conference_id"]
    if mail.type in DETAIL_TYPES:
        assert mail.contains(conference_id), (mail.to, mail.type, mail.text)
        dial_in = user.get("dial_in_number") or default_number
        assert mail.contains(dial_in), (mail.to, mail.type, mail.text)
        assert mail.contains(TOLL_FREE) == bool(user.get("toll_free_number")), (
            mail.to,
            mail.type,
            mail.text,
        )
    else:  # disabled: no conference ID at all, neither the last nor any other
        assert not any(mail.contains(cid) for cid in all_conference_ids), (mail.to, mail.text)
    if mail.type in UPDATE_TOOL_TYPES:
        assert MEETING_UPDATE_TOOL_URL in mail.text
        assert f'href="{MEETING_UPDATE_TOOL_URL}"' in mail.html
    if mail.type in {"enabled", "details-changed", "pin-reset"}:
        assert (DYNAMIC_ID_NOTE[locale] in mail.text) == unique_ids, (mail.to, mail.type)
    if mail.type in PIN_TYPES:
        assert len(mail.pins) == 1, (mail.to, mail.type, mail.text)
        pin = mail.pins[0]
        assert len(pin) == pin_length and pin.isdigit() and not is_trivial_pin(pin), pin
        assert pin in mail.html, "the HTML part shows the PIN too"
        assert pin not in known_pins, "every PIN-bearing email carries a fresh PIN"
        return pin
    assert mail.pins == [], (mail.to, mail.type, mail.text)
    # A PIN as a number of its own: its digits may occur by chance inside a random conference ID.
    assert not any(re.search(rf"(?<!\d){p}(?!\d)", mail.text + mail.html) for p in known_pins), (
        mail.to,
        mail.type,
    )
    return None


@pytest.mark.parametrize("locale", ["en", "fr"])
def test_every_email_rule_and_combination(workspace: Workspace, locale: str) -> None:
    ws = workspace
    pins: set[str] = set()
    delivered: list[Mail] = []
    for step, expected in ((1, EXPECTED_1), (2, EXPECTED_2), (3, EXPECTED_3)):
        write_config(ws, locale, step)
        # step 1 onboards 14 users into an empty state; step 2 disables 5 of them
        result = ws.apply("--allow-mass-disable", "--allow-mass-email", "--allow-new-state")
        new = ws.mails()[len(delivered) :]
        assert sequence(new) == expected, f"step {step}:\n{result}"
        assert all(m.message["X-Reconciler-Tenant"] == m.tenant for m in new)
        assert [m.tenant for m in new] == sorted(m.tenant for m in new), "tenants by name"
        config = {"contoso": contoso_users(locale, step), "fabrikam": fabrikam_users(step)}
        # a removed user's email is about them as they were
        config["contoso"].setdefault("n-gone@contoso.com", contoso_users_1()["n-gone@contoso.com"])
        for mail in new:
            user = effective(config, mail)
            user_locale = user.get("locale", locale)
            pin_length = 6 if mail.tenant == "contoso" else 4
            default_number = TOLL_2 if (mail.tenant, step) == ("fabrikam", 3) else TOLL
            pin = check_message(
                mail,
                user,
                user_locale,
                pin_length,
                pins,
                unique_ids=mail.tenant == "fabrikam",
                default_number=default_number,
                all_conference_ids=conference_ids(locale),
            )
            if pin:
                pins.add(pin)
        delivered += new
        assert f"{len(new)} email(s) delivered" in result.stdout

    # the two locales really differ: same type, other language, other subject
    subjects = {
        (m.message["Content-Language"], m.type): str(m.message["Subject"]) for m in delivered
    }
    assert subjects[("en", "enabled")] != subjects[("fr", "enabled")]
    assert len({m.message_id for m in delivered}) == len(delivered)

    # idempotent: apply right after apply plans nothing, sends nothing, records nothing
    before = ws.state_show()
    again = ws.apply()
    assert "nothing to change" in again.stdout and "0 email(s) delivered" in again.stdout
    assert len(ws.mails()) == len(delivered)
    assert ws.state_show() == before

    history = ws.history()
    counts = [(r["tenant"], r["serial"], r["kind"], r["emails"], r["suppressed"]) for r in history]
    assert counts == [
        ("contoso", 1, "apply", {"enabled": 14}, 0),
        ("fabrikam", 1, "apply", {"enabled": 1}, 0),
        (
            "contoso",
            2,
            "apply",
            {
                "enabled": 5,
                "details-changed": 3,
                "pin-reset": 3,
                "conference-info": 2,
                "disabled": 5,
            },
            0,
        ),
        ("fabrikam", 2, "apply", {"pin-reset": 1}, 0),
        ("contoso", 3, "apply", {"pin-reset": 1, "conference-info": 1}, 0),
        ("fabrikam", 3, "apply", {"details-changed": 1}, 0),
    ]
    assert all(r["applied_at"] and r["actor"] for r in history)
    assert {t["name"]: t["serial"] for t in before["tenants"]} == {"contoso": 3, "fabrikam": 3}

    for mail in delivered:  # Maildir files are private to the operator
        assert mail.path is not None and stat.S_IMODE(mail.path.stat().st_mode) == 0o600


def test_request_for_a_user_not_enabled_is_refused(workspace: Workspace) -> None:
    ws = workspace
    write_tenant(
        ws.config,
        "contoso",
        tenant_doc(),
        {
            "a@contoso.com": user_doc("1000001"),
            "b@contoso.com": user_doc("1000002", license=False, pin_reset="now"),
        },
    )
    result = ws.apply(expect=1)
    assert "pin_reset" in result.stderr and "b@contoso.com" in result.stderr
    assert "users.yaml:" in result.stderr, "the error is located in the file"
    assert ws.state_show()["tenants"] == [] and ws.mails() == []


@pytest.mark.parametrize(
    ("default_from", "expected"),
    [
        ("Platform Team <platform@example.org>", ("Platform Team", "platform@example.org")),
        ("platform@example.org", ("Office 365", "platform@example.org")),
    ],
)
def test_default_sender(workspace: Workspace, default_from: str, expected: tuple[str, str]) -> None:
    """Without the tenant override, From is the deployment's sender (option or environment);
    with it, the tenant's own."""
    ws = workspace
    write_tenant(ws.config, "plain", tenant_doc(), {"a@plain.com": user_doc("1000001")})
    write_tenant(
        ws.config, "custom", tenant_doc(override=OVERRIDE), {"a@custom.com": user_doc("1000001")}
    )
    ws.apply("--default-from", default_from)
    write_tenant(ws.config, "plain", tenant_doc(), {"a@plain.com": user_doc("1000002")})
    ws.apply(env={"RECONCILER_DEFAULT_FROM": default_from})
    assert [(m.to, m.sender) for m in ws.mails()] == [
        ("a@custom.com", OVERRIDE),
        ("a@plain.com", expected),
        ("a@plain.com", expected),
    ]


def test_suppressed_emails_are_kept_for_the_operator_and_never_sent(workspace: Workspace) -> None:
    ws = workspace
    users = enabled_users(3)
    write_tenant(ws.config, "quiet", tenant_doc(send=False), users)

    plan = ws.plan_json()
    assert plan["summary"]["emails"] == 3 and plan["summary"]["suppressed"] == 3
    assert all(e["suppressed"] for e in plan["tenants"][0]["emails"])

    result = ws.apply()
    assert "suppressed" in result.output
    assert ws.mails() == [], "nothing is sent while automatically_send_emails_to_users is false"
    kept = printed_paths(result.stdout)
    assert len(kept) == 3
    check_suppressed_files(kept, ws.state, "quiet", ["enabled"] * 3, pin_length=5)

    users["u001@contoso.com"]["pin_reset"] = "again"
    write_tenant(ws.config, "quiet", tenant_doc(send=False), users)
    result = ws.apply()
    more = printed_paths(result.stdout)
    assert len(more) == 1 and not set(more) & set(kept)
    check_suppressed_files(more, ws.state, "quiet", ["pin-reset"], pin_length=5)
    assert [h["suppressed"] for h in ws.history()] == [3, 1]
    outbox = ws.tenant_state("quiet")["outbox"]  # type: ignore[index]
    assert {m["status"] for m in outbox} == {"delivered"} and all(m["suppressed"] for m in outbox)

    # turning sending back on never sends what was suppressed
    write_tenant(ws.config, "quiet", tenant_doc(send=True), users)
    result = ws.apply()
    assert "0 email(s) delivered" in result.stdout and ws.mails() == []
    users["u002@contoso.com"]["pin_reset"] = "later"
    write_tenant(ws.config, "quiet", tenant_doc(send=True), users)
    ws.apply()
    assert sequence(ws.mails()) == [("u002@contoso.com", "pin-reset")]
    assert ws.tenant_state("quiet")["serial"] == 4  # type: ignore[index]


def printed_paths(stdout: str) -> list[Path]:
    return [
        Path(line.rsplit(": ", 1)[1])
        for line in stdout.splitlines()
        if line.startswith("suppressed:")
    ]


def check_suppressed_files(
    paths: list[Path], state_location: str, tenant: str, types: list[str], pin_length: int
) -> None:
    for path, email_type in zip(paths, types, strict=True):
        assert path.suffix == ".eml" and path.is_file(), path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        mail = parse_mail(path.read_bytes(), path)
        assert mail.type == email_type and mail.tenant == tenant
        assert len(mail.pins) == 1 and len(mail.pins[0]) == pin_length, "the admin needs it"
        assert path.is_absolute() and path.parent.parts[-2:] == ("suppressed", tenant)
        database = state_file(state_location)
        if database is not None:  # SQLite: beside the database
            assert path.parent == database.resolve().parent / "suppressed" / tenant
        else:  # a database URL (and its password) never turns into a folder name
            assert "://" not in str(path) and ":" not in str(path), path
    folder = paths[0].parent
    assert len(list(folder.glob("*.eml"))) >= len(paths)
    assert not [p for p in folder.iterdir() if p.name.startswith(".")], "no temporary files left"


def test_test_email_into_a_maildir(workspace: Workspace) -> None:
    ws = workspace
    write_tenant(
        ws.config,
        "contoso",
        tenant_doc(locale="fr", pin_length=6, override=OVERRIDE),
        {"a@contoso.com": user_doc("1000001")},
    )
    result = ws.run("test-email", "--tenant", "contoso", "--to", "admin@contoso.com")
    assert result.code == 0, str(result)
    assert "conferencing@contoso.com" in result.stdout
    [mail] = ws.mails()
    assert mail.to == "admin@contoso.com" and mail.sender == OVERRIDE
    assert mail.tenant == "contoso" and mail.message["Content-Language"] == "fr"
    assert mail.pins == [], "a sample never carries a PIN"
    assert mail.type == "test-message"
    # a real message that says it is a test, not a preview that looks like a bug
    assert mail.message["Subject"] == "Message de test : vos e-mails d\u2019audioconférence"
    for body in (mail.text, mail.html):
        assert "APERÇU" not in body and "PREVIEW" not in body
        assert "Ce message permet de tester" in body
    assert "ID de conférence (exemple) : 0000000" in mail.text, "sample values are marked"
    assert mail.message.as_bytes().count(b"MIME-Version:") == 1
    assert stat.S_IMODE(mail.path.stat().st_mode) == 0o600  # type: ignore[union-attr]
    assert ws.state_show()["tenants"] == [], "test-email records nothing"

    bad = ws.run("test-email", "--tenant", "contoso", "--to", "not-an-address")
    assert bad.code == 1 and "Traceback" not in bad.stderr and "--to" in bad.stderr
    assert len(ws.mails()) == 1


def test_apply_through_the_python_entry_point(workspace: Workspace) -> None:
    """`python -m reconciler` with settings from the environment (RECONCILER_*)."""
    ws = workspace
    write_tenant(ws.config, "contoso", tenant_doc(), enabled_users(2))
    env = {
        "RECONCILER_CONFIG": str(ws.config),
        "RECONCILER_STATE": ws.state,
        "RECONCILER_MAIL_URL": f"maildir:{ws.root / 'env-mail'}",
    }
    result = ws.python_m("apply", "--auto-approve", env=env)
    assert result.code == 0, str(result)
    assert sequence(read_maildir(ws.root / "env-mail")) == [
        ("u000@contoso.com", "enabled"),
        ("u001@contoso.com", "enabled"),
    ]
    assert os.path.exists(ws.root / "env-mail" / "new")
