"""Delivery over real SMTP (aiosmtpd on loopback): envelopes, temporary failures retried within
the run, a permanently refused recipient, a dead server and the queue it leaves, test-email."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

from tests.fixtures.smtp import SMTPTestServer
from tests.helpers.mail import parse_mail, sequence
from tests.helpers.patience import patience
from tests.helpers.tenants import (
    USERS,
    enabled_users,
    make_tenant,
    tenant_doc,
    user_doc,
    with_user,
    write_tenant,
)
from tests.helpers.workspace import NewWorkspace, Workspace

DEFAULT_FROM = "Deploy Bot <deploy@example.org>"
OVERRIDE = ("Contoso Conferencing", "conferencing@contoso.com")


def sending_to(ws: Workspace, url: str) -> Workspace:
    ws.mail = url
    ws.env["RECONCILER_DEFAULT_FROM"] = DEFAULT_FROM
    return ws


def received(server: SMTPTestServer) -> list[tuple[str, str]]:
    return sequence([parse_mail(r.data) for r in server.received])


def outbox_status(ws: Workspace, tenant: str = "contoso") -> dict[str, str]:
    state = ws.tenant_state(tenant)
    assert state is not None
    return {f"{m['user']} {m['type']}": m["status"] for m in state["outbox"]}


def test_smtp_delivery_envelope_and_headers(
    workspace: Workspace, smtp_server: SMTPTestServer
) -> None:
    ws = sending_to(workspace, smtp_server.url)
    write_tenant(
        ws.config,
        "contoso",
        tenant_doc(override=OVERRIDE),
        {
            **enabled_users(2),
            "alias@contoso.com": user_doc("7100000", email="Other.Box@Contoso.com"),
        },
    )
    write_tenant(ws.config, "fabrikam", tenant_doc(), enabled_users(1, domain="fabrikam.com"))
    result = ws.apply()
    assert "4 email(s) delivered" in result.stdout
    assert received(smtp_server) == [
        ("other.box@contoso.com", "enabled"),
        ("u000@contoso.com", "enabled"),
        ("u001@contoso.com", "enabled"),
        ("u000@fabrikam.com", "enabled"),
    ]
    for envelope, mail in zip(smtp_server.received, smtp_server.messages, strict=True):
        tenant = mail["X-Reconciler-Tenant"]
        expected_from = OVERRIDE[1] if tenant == "contoso" else "deploy@example.org"
        assert envelope.mail_from == expected_from
        assert [a.lower() for a in envelope.rcpt_tos] == [mail["To"].addresses[0].addr_spec.lower()]
    assert str(smtp_server.messages[3]["From"]) == DEFAULT_FROM
    assert smtp_server.connections <= 2, "one connection per tenant's delivery, not per message"


def test_temporary_failures_are_retried_within_the_run(
    workspace: Workspace, smtp_server: SMTPTestServer
) -> None:
    ws = sending_to(workspace, smtp_server.url)
    write_tenant(ws.config, "contoso", tenant_doc(), enabled_users(3))
    smtp_server.fail_next(2)  # the first message gets two 451s, then goes through
    started = time.monotonic()
    result = ws.apply(env={"RECONCILER_RETRY_BACKOFF": "0.1"})
    elapsed = time.monotonic() - started
    assert "3 email(s) delivered" in result.stdout and "0 queued" in result.stdout
    assert received(smtp_server) == [(f"u00{i}@contoso.com", "enabled") for i in range(3)]
    assert elapsed >= 0.3, "backed off 0.1 s then 0.2 s before the third attempt"
    assert elapsed < patience(10)
    assert set(outbox_status(ws).values()) == {"delivered"}


def test_permanent_refusal_of_one_recipient(
    workspace: Workspace, smtp_server: SMTPTestServer
) -> None:
    ws = sending_to(workspace, smtp_server.url)
    write_tenant(ws.config, "contoso", tenant_doc(), enabled_users(3))
    smtp_server.reject_recipient("u001@contoso.com")
    result = ws.apply(expect=1)
    assert received(smtp_server) == [
        ("u000@contoso.com", "enabled"),
        ("u002@contoso.com", "enabled"),
    ]
    assert "1 failed" in result.stdout
    assert re.search(r"^failed: u001@contoso.com enabled <.+>: .*550", result.stderr, re.M), (
        result.stderr
    )
    assert outbox_status(ws) == {
        "u000@contoso.com enabled": "delivered",
        "u001@contoso.com enabled": "failed",
        "u002@contoso.com enabled": "delivered",
    }
    failed = [
        m
        for m in ws.tenant_state("contoso")["outbox"]  # type: ignore[index]
        if m["status"] == "failed"
    ]
    assert "550" in failed[0]["error"]

    # not retried: the next apply sends nothing and has nothing to report
    again = ws.apply()
    assert len(smtp_server.received) == 2
    assert "0 email(s) delivered" in again.stdout and "0 failed" in again.stdout
    assert ws.tenant_state("contoso")["serial"] == 1  # type: ignore[index]


def test_dead_server_leaves_mail_queued_and_next_apply_sends_it_first(
    workspace: Workspace, dead_smtp_url: str, smtp_server: SMTPTestServer
) -> None:
    ws = sending_to(workspace, dead_smtp_url)
    users = enabled_users(3)
    write_tenant(ws.config, "contoso", tenant_doc(), users)
    started = time.monotonic()
    result = ws.apply(expect=1)
    assert time.monotonic() - started < patience(10)
    assert "3 queued" in result.stdout
    assert "3 email(s) still queued" in result.stderr
    said = re.findall(r"^queued: (\S+ \S+) <.+>: (.+)$", result.stderr, re.M)
    assert [who for who, _ in said] == ["u000@contoso.com enabled"]  # the one tried
    (untried,) = re.findall(r"^queued: 2 more email\(s\) not attempted: (.+)$", result.stderr, re.M)
    assert all(dead_smtp_url.removeprefix("smtp://") in why for why in [said[0][1], untried])
    assert "Traceback" not in result.stderr
    assert ws.tenant_state("contoso")["serial"] == 1, "the state is committed before delivery"  # type: ignore[index]
    assert set(outbox_status(ws).values()) == {"queued"}

    # still down, and a new change: the old and the new message are each counted once
    users["u001@contoso.com"]["pin_reset"] = "one"
    write_tenant(ws.config, "contoso", tenant_doc(), users)
    result = ws.apply(expect=1)
    assert "4 queued" in result.stdout and "4 email(s) still queued" in result.stderr

    # the server is back: the queue goes out first, in order, then the new change
    users["u002@contoso.com"]["send_conference_info"] = "two"
    write_tenant(ws.config, "contoso", tenant_doc(), users)
    result = ws.apply(mail=smtp_server.url)
    assert "5 email(s) delivered" in result.stdout and "0 queued" in result.stdout
    assert received(smtp_server) == [
        ("u000@contoso.com", "enabled"),
        ("u001@contoso.com", "enabled"),
        ("u002@contoso.com", "enabled"),
        ("u001@contoso.com", "pin-reset"),
        ("u002@contoso.com", "conference-info"),
    ]
    assert set(outbox_status(ws).values()) == {"delivered"}
    assert ws.tenant_state("contoso")["serial"] == 3  # type: ignore[index]

    ws.apply(mail=smtp_server.url)
    assert len(smtp_server.received) == 5


def test_test_email_over_smtp(
    workspace: Workspace, smtp_server: SMTPTestServer, dead_smtp_url: str
) -> None:
    ws = sending_to(workspace, smtp_server.url)
    write_tenant(
        ws.config, "contoso", tenant_doc(override=OVERRIDE, pin_length=8), enabled_users(1)
    )
    write_tenant(ws.config, "plain", tenant_doc(), enabled_users(1, domain="plain.com"))
    for tenant in ("contoso", "plain"):
        result = ws.run("test-email", "--tenant", tenant, "--to", "postmaster@example.org")
        assert result.code == 0, str(result)
    custom, plain = (parse_mail(r.data) for r in smtp_server.received)
    assert custom.sender == OVERRIDE and smtp_server.received[0].mail_from == OVERRIDE[1]
    assert plain.sender == ("Deploy Bot", "deploy@example.org")
    for mail in (custom, plain):
        assert mail.to == "postmaster@example.org" and mail.pins == []
    assert ws.state_show()["tenants"] == [], "test-email records nothing"

    down = ws.run(
        "test-email", "--tenant", "plain", "--to", "postmaster@example.org", mail=dead_smtp_url
    )
    assert down.code == 1 and "not delivered" in down.stderr and "Traceback" not in down.stderr


def test_a_refused_apply_sends_nothing_not_even_earlier_leftovers(
    workspace: Workspace, dead_smtp_url: str, smtp_server: SMTPTestServer
) -> None:
    ws = sending_to(workspace, dead_smtp_url)
    users = enabled_users(10)
    write_tenant(ws.config, "contoso", tenant_doc(), users)
    ws.apply(expect=1)  # server down: ten `enabled` emails stay queued
    before = ws.state_show()

    for name in ("u000@contoso.com", "u001@contoso.com"):
        users[name]["license"] = False  # 2 of 10: the mass-disable guard refuses
    write_tenant(ws.config, "contoso", tenant_doc(), users)
    result = ws.apply(mail=smtp_server.url, expect=1)
    assert "refusing to disable" in result.stderr
    assert smtp_server.received == []
    assert ws.state_show() == before

    result = ws.run("apply", mail=smtp_server.url)  # no TTY, no --auto-approve: refused too
    assert result.code == 1 and smtp_server.received == []
    assert ws.state_show() == before


def test_mail_queued_before_emails_were_turned_off_is_kept_not_sent(
    workspace: Workspace, dead_smtp_url: str, smtp_server: SMTPTestServer
) -> None:
    ws = sending_to(workspace, dead_smtp_url)
    users = enabled_users(2)
    write_tenant(ws.config, "contoso", tenant_doc(), users)
    ws.apply(expect=1)  # queued while sending was on

    write_tenant(ws.config, "contoso", tenant_doc(send=False), users)
    result = ws.apply(mail=smtp_server.url)
    assert smtp_server.received == []
    kept = re.findall(r"^suppressed: .*?: (\S+\.eml)$", result.stdout, re.M)
    assert len(kept) == 2 and all(Path(p).is_file() for p in kept)
    assert set(outbox_status(ws).values()) == {"delivered"}


def test_the_queue_of_a_tenant_whose_folder_vanished_is_left_alone(
    new_workspace: NewWorkspace, dead_smtp_url: str, smtp_server: SMTPTestServer
) -> None:
    ws = new_workspace()
    make_tenant(ws.config)
    sending = ["--default-from", "noreply@acme.com"]
    result = ws.apply(*sending, "--retry-backoff", "0", mail=dead_smtp_url, expect=None)
    assert result.code == 1 and "1 queued" in result.stdout
    shutil.rmtree(ws.config / "acme")
    make_tenant(ws.config, "other", users=None)
    result = ws.apply(*sending, mail=smtp_server.url, expect=None)
    assert smtp_server.received == []
    assert "missing from the configuration" in result.stdout
    outbox = ws.tenant_state("acme")["outbox"]  # type: ignore[index]
    assert [m["status"] for m in outbox] == ["queued"]


def test_a_refused_sender_keeps_every_message_queued_with_its_pin(
    new_workspace: NewWorkspace, smtp_server: SMTPTestServer
) -> None:
    ws = new_workspace()
    make_tenant(
        ws.config,
        users=USERS
        + with_user('license: true\nconference_id: "7654321"\n', "bob@acme.com").removeprefix(
            "users:\n"
        ),
    )
    smtp_server.refuse_sender("550 5.7.1 not allowed to send as this address")
    result = ws.apply(
        "--default-from", "noreply@acme.com", "--retry-backoff", "0", mail=smtp_server.url, expect=1
    )
    assert "2 queued" in result.stdout and "0 failed" in result.stdout
    assert "refused the sender noreply@acme.com" in result.stderr


def test_a_server_without_starttls_is_a_setup_failure_tried_once(
    new_workspace: NewWorkspace, smtp_server: SMTPTestServer
) -> None:
    """smtp+starttls:// to a server that does not offer STARTTLS can never work as configured:
    like a refused login, it is said once and nothing is tried again (it used to be retried as
    a dropped connection, 4 connections for nothing)."""
    ws = sending_to(new_workspace(), smtp_server.url.replace("smtp://", "smtp+starttls://"))
    write_tenant(ws.config, "contoso", tenant_doc(), enabled_users(2))
    result = ws.apply(expect=1)
    assert "STARTTLS extension not supported by server" in result.stderr
    assert "cannot connect" not in result.stderr and "Traceback" not in result.output
    assert "2 email(s) still queued" in result.stderr
    assert smtp_server.connections == 1 and smtp_server.received == []
