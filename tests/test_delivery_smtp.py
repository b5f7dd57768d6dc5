"""SMTP delivery against a real server on loopback, and the ``--mail`` URLs.

No mock of smtplib: the server (tests/fixtures/smtp.py) speaks SMTP and is scripted to answer
4xx, 5xx, 421, to refuse logins, or to die, so the failure mapping and the retry loop are
tested the way production meets them. Pauses between retries go to a recording fake ``sleep``.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest

from reconciler.delivery import (
    AuthenticationFailure,
    ConnectionFailure,
    DeliveryReport,
    MaildirTransport,
    PermanentFailure,
    SetupFailure,
    SMTPTransport,
    Transport,
    deliver,
    open_transport,
    redact,
)
from reconciler.delivery.smtp import Timeouts
from tests.fixtures.outbox import Outgoing, outgoing
from tests.fixtures.smtp import SMTPTestServer
from tests.helpers.patience import patience

FROM = "noreply@contoso.com"


@dataclass
class Run:
    """deliver() with recording callbacks and a fake sleep."""

    delivered: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    progressed: list[str] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)

    def __call__(self, transport: Transport, messages: list[Outgoing], **kwargs) -> DeliveryReport:
        report = deliver(
            messages,
            transport,
            on_delivered=lambda m: self.delivered.append(m.message_id),
            on_failed=lambda m, reason: self.failed.update({m.message_id: reason}),
            progress=lambda m: self.progressed.append(m.message_id),
            sleep=self.sleeps.append,
            **kwargs,
        )
        assert report.delivered == len(self.delivered)
        assert report.failed == self.failed
        return report


def ids(messages: list[Outgoing]) -> list[str]:
    return [m.message_id for m in messages]


# --- URLs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host", "port", "mode", "username"),
    [
        ("smtp://mail.contoso.com", "mail.contoso.com", 25, "plain", None),
        ("smtp://mail.contoso.com:2525/", "mail.contoso.com", 2525, "plain", None),
        ("SMTP://Mail.Contoso.com", "mail.contoso.com", 25, "plain", None),
        (
            "smtp+starttls://relay:pw@smtp.office365.com",
            "smtp.office365.com",
            587,
            "starttls",
            "relay",
        ),
        (
            "smtps://a%40contoso.com:pw@smtp.contoso.com",
            "smtp.contoso.com",
            465,
            "ssl",
            "a@contoso.com",
        ),
        ("smtp://[::1]:2525", "::1", 2525, "plain", None),
    ],
)
def test_smtp_urls(url: str, host: str, port: int, mode: str, username: str | None) -> None:
    transport = open_transport(url, default_from=FROM, env={})
    assert isinstance(transport, SMTPTransport)
    assert (transport.host, transport.port, transport.mode) == (host, port, mode)
    assert transport.username == username
    assert transport.timeouts.command >= 30
    assert "pw" not in transport.description


def test_description_names_user_and_host_without_password() -> None:
    transport = open_transport("smtp+starttls://relay:hunter2@smtp.contoso.com", default_from=FROM)
    assert transport.description == "smtp+starttls://relay@smtp.contoso.com:587"
    assert open_transport("smtp://[::1]", default_from=FROM).description == "smtp://[::1]:25"


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("maildir:.reconciler/mail", ".reconciler/mail"),
        ("maildir:/var/mail/x", "/var/mail/x"),
        ("maildir:///var/mail/x", "/var/mail/x"),
        ("MAILDIR:mail", "mail"),
    ],
)
def test_maildir_urls(url: str, path: str) -> None:
    transport = open_transport(url)
    assert isinstance(transport, MaildirTransport)
    assert transport.path == Path(path)


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("ftp://u:hunter2@host", "unsupported mail URL scheme 'ftp'"),
        ("u:hunter2@host", "unsupported mail URL scheme 'u'"),
        ("mail.contoso.com", "must start with a scheme"),
        ("smtp:u:hunter2@host", "must look like smtp://"),
        ("smtp://u:hunter2@", "has no host"),
        ("smtp://u:hunter2@host:99999", "port must be a number"),
        ("smtp://u:hunter2@host:0", "port must be a number"),
        ("smtp://u:hunt/er2@host", "must be percent-encoded"),
        ("smtp://u:hunter2@host?tls=1", "unknown parameter 'tls'"),
        ("smtp://u:hunter2@host", "would send its credentials unencrypted"),
        ("smtp://u:hunter2@host?allow_plaintext_auth=yes", "allow_plaintext_auth must be true"),
        ("smtp://host?final_reply_timeout=0", "final_reply_timeout must be a number"),
        ("smtp://host?final_reply_timeout=nan", "final_reply_timeout must be a number"),
        ("smtp://:hunter2@host", "password but no user name"),
        ("maildir:", "no path"),
        ("maildir://server/mail", "host part"),
    ],
)
def test_bad_urls_get_one_line_without_the_password(url: str, complaint: str) -> None:
    with pytest.raises(ValueError) as error:
        open_transport(url, default_from=FROM, env={})
    message = str(error.value)
    assert complaint in message
    assert "\n" not in message
    assert "hunter" not in message and "er2" not in message


def test_password_comes_from_the_environment_when_the_url_has_none() -> None:
    with pytest.raises(ValueError, match="RECONCILER_SMTP_PASSWORD") as error:
        open_transport("smtp+starttls://relay@host", default_from=FROM, env={})
    assert "'relay'" in str(error.value)
    transport = open_transport(
        "smtp+starttls://relay@host", default_from=FROM, env={"RECONCILER_SMTP_PASSWORD": "hunter2"}
    )
    assert transport.username == "relay"


def test_plain_smtp_credentials_need_an_explicit_opt_in() -> None:
    url = "smtp://relay:hunter2@relay.internal?allow_plaintext_auth=true&final_reply_timeout=30"
    transport = open_transport(url, default_from=FROM, env={})
    assert isinstance(transport, SMTPTransport)
    assert transport.username == "relay" and transport.timeouts.final_reply == 30


def test_smtp_needs_a_default_sender() -> None:
    with pytest.raises(ValueError, match="--default-from"):
        open_transport("smtp://host")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("smtps://u:p%40ss@h:465", "smtps://u:***@h:465"),
        ("smtp://u:p@ss@h", "smtp://u:***@h"),
        ("smtp://u:pa/ss@h", "smtp://u:***@h"),
        ("smtp://u:pa\nss@h", "smtp://u:***@h"),
        ("smtp://u@h:25", "smtp://u@h:25"),
        ("smtp://h:25", "smtp://h:25"),
        ("maildir:a:b@c", "maildir:a:b@c"),
    ],
)
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_smtp_timeouts_follow_rfc_5321_and_are_never_below_30_seconds() -> None:
    assert SMTPTransport("h", 25).timeouts == Timeouts(300, 120, 180, 600)
    with pytest.raises(ValueError, match="at least 30"):
        SMTPTransport("h", 25, timeouts=Timeouts(command=5))


# --- Delivery over SMTP ------------------------------------------------------------------------


def test_many_messages_over_one_connection(smtp_server: SMTPTestServer) -> None:
    messages = [outgoing(n) for n in range(5)]
    run = Run()

    def accepted_before_callback(message: Outgoing) -> None:
        # on_delivered comes right after the server accepted *this* message, before the next
        assert smtp_server.messages[-1]["Message-ID"] == message.message_id
        run.delivered.append(message.message_id)

    with open_transport(smtp_server.url, default_from=FROM) as transport:
        report = deliver(
            messages,
            transport,
            on_delivered=accepted_before_callback,
            on_failed=lambda m, reason: pytest.fail(reason),
            progress=lambda m: run.progressed.append(m.message_id),
        )

    assert report == DeliveryReport(delivered=len(messages))
    assert run.delivered == ids(messages)
    assert run.progressed == ids(messages)
    assert smtp_server.connections == 1
    assert [m["Message-ID"] for m in smtp_server.messages] == ids(messages)
    received = smtp_server.received
    assert [r.mail_from for r in received] == [FROM] * 5
    assert [r.rcpt_tos for r in received] == [m.recipients for m in messages]
    assert [r.data for r in received] == [m.data for m in messages]


def test_data_goes_out_with_crlf_and_dot_lines_intact(smtp_server: SMTPTestServer) -> None:
    data = "Subject: Réunion\nContent-Type: text/plain; charset=utf-8\n\n.\n..x\nété\n".encode()
    message = Outgoing("<lf@x>", FROM, ["a@contoso.com"], data)
    with open_transport(smtp_server.url, default_from=FROM) as transport:
        transport.send(message)
    assert smtp_server.received[0].data == data.replace(b"\n", b"\r\n")


def test_temporary_failures_are_retried_with_exponential_backoff(
    smtp_server: SMTPTestServer,
) -> None:
    smtp_server.fail_next(3, "451 4.3.0 Try again later")
    messages = [outgoing(1), outgoing(2)]
    run = Run()
    with open_transport(smtp_server.url, default_from=FROM) as transport:
        run(transport, messages, attempts=4, backoff=1.0)

    assert run.delivered == ids(messages)
    assert run.sleeps == [1.0, 2.0, 4.0]
    assert smtp_server.connections == 1  # a 4xx does not cost the connection


def test_a_message_still_deferred_after_retries_stays_queued_and_the_rest_go(
    smtp_server: SMTPTestServer,
) -> None:
    smtp_server.fail_next(2, "452 4.2.2 Mailbox full")
    messages = [outgoing(1), outgoing(2)]
    run = Run()
    with open_transport(smtp_server.url, default_from=FROM) as transport:
        report = run(transport, messages, attempts=2, backoff=0.5)

    assert report.queued == [messages[0].message_id]
    assert report.queued_reasons == {messages[0].message_id: "452 4.2.2 Mailbox full"}
    assert run.delivered == [messages[1].message_id]
    assert run.sleeps == [0.5]


def test_backoff_is_bounded(smtp_server: SMTPTestServer) -> None:
    smtp_server.fail_next(9)
    run = Run()
    with open_transport(smtp_server.url, default_from=FROM) as transport:
        run(transport, [outgoing(1)], attempts=10, backoff=1.0)
    assert run.sleeps == [1, 2, 4, 8, 16, 30, 30, 30, 30]


def test_refused_recipient_fails_that_message_only(smtp_server: SMTPTestServer) -> None:
    smtp_server.reject_recipient("bob@contoso.com", "550 5.1.1 No such user")
    messages = [outgoing(1), outgoing(2, to="bob@contoso.com"), outgoing(3)]
    run = Run()
    with open_transport(smtp_server.url, default_from=FROM) as transport:
        report = run(transport, messages)

    assert run.delivered == [messages[0].message_id, messages[2].message_id]
    assert report.failed == {messages[1].message_id: "bob@contoso.com: 550 5.1.1 No such user"}
    assert report.queued == []
    assert run.sleeps == []  # permanent: not retried
    assert smtp_server.connections == 1


def test_refused_content_is_permanent(smtp_server: SMTPTestServer) -> None:
    smtp_server.fail_next(1, "554 5.6.0 Message rejected")
    run = Run()
    with open_transport(smtp_server.url, default_from=FROM) as transport:
        report = run(transport, [outgoing(1), outgoing(2)])
    assert report.failed == {"<m1@reconciler.test>": "554 5.6.0 Message rejected"}
    assert run.delivered == ["<m2@reconciler.test>"]


def test_partly_refused_recipients_are_not_sent_again(smtp_server: SMTPTestServer) -> None:
    smtp_server.reject_recipient("bob@contoso.com")
    message = outgoing(1)
    message.recipients = ["alice@contoso.com", "bob@contoso.com"]
    with (
        open_transport(smtp_server.url, default_from=FROM) as transport,
        pytest.raises(PermanentFailure, match=r"refused for bob@contoso.com: 550"),
    ):
        transport.send(message)
    assert [r.rcpt_tos for r in smtp_server.received] == [["alice@contoso.com"]]


def test_421_reconnects_and_delivers(smtp_server: SMTPTestServer) -> None:
    smtp_server.fail_next(1, "421 4.3.2 Service shutting down")
    messages = [outgoing(1), outgoing(2)]
    run = Run()
    with open_transport(smtp_server.url, default_from=FROM) as transport:
        run(transport, messages, backoff=0.0)
    assert run.delivered == ids(messages)
    assert smtp_server.connections == 2


def test_dead_server_leaves_everything_queued_quickly(dead_smtp_url: str) -> None:
    messages = [outgoing(n) for n in range(20)]
    run = Run()
    transport = open_transport(dead_smtp_url, default_from=FROM)
    with pytest.raises(ConnectionFailure, match=r"cannot connect to smtp://127\.0\.0\.1"):
        transport.send(messages[0])

    started = time.monotonic()
    with transport:
        report = run(transport, messages, attempts=4, backoff=1.0)

    assert time.monotonic() - started < patience(2)
    assert report.queued == ids(messages[:1])  # the other 19 not even taken from the queue
    assert run.delivered == [] and report.failed == {}
    assert run.sleeps == [1.0, 2.0, 4.0]  # retried the first message only
    assert run.progressed == ids(messages[:1])
    assert report.queued_reasons[messages[0].message_id].startswith("cannot connect")
    assert report.stopped is not None and report.stopped.startswith("cannot connect")
    assert report.limited is None, "a fault, not a sending limit"


def test_server_dying_mid_run_leaves_the_rest_queued(smtp_server: SMTPTestServer) -> None:
    messages = [outgoing(n) for n in range(5)]
    delivered: list[str] = []

    def record_then_kill_server(message: Outgoing) -> None:
        delivered.append(message.message_id)
        if len(delivered) == 2:
            smtp_server.stop()

    with open_transport(smtp_server.url, default_from=FROM) as transport:
        report = deliver(
            messages,
            transport,
            on_delivered=record_then_kill_server,
            on_failed=lambda m, reason: pytest.fail(reason),
            backoff=0.0,
        )

    assert report.delivered == 2 and delivered == ids(messages[:2])
    assert report.queued == ids(messages[2:3]) and report.stopped is not None
    assert len(smtp_server.received) == 2


def test_callback_errors_are_not_delivery_failures(smtp_server: SMTPTestServer) -> None:
    """If the caller cannot record a delivery, it must know: its state is in doubt."""

    def broken_state_db(message: Outgoing) -> None:
        raise RuntimeError("database is locked")

    with (
        open_transport(smtp_server.url, default_from=FROM) as transport,
        pytest.raises(RuntimeError, match="database is locked"),
    ):
        deliver([outgoing(1)], transport, on_delivered=broken_state_db, on_failed=print)


def test_auth_required_without_credentials_stops_instead_of_failing_every_message(
    starttls_smtp_server: SMTPTestServer,
) -> None:
    # Plain SMTP to a server that demands STARTTLS: MAIL FROM gets "530".
    url = starttls_smtp_server.url.replace("smtp+starttls://", "smtp://")
    messages = [outgoing(1), outgoing(2)]
    run = Run()
    with open_transport(url, default_from=FROM) as transport:
        report = run(transport, messages)
    assert report.queued == ids(messages[:1]) and report.stopped is not None
    assert "530" in report.queued_reasons[messages[0].message_id]
    assert run.sleeps == []


# --- TLS and AUTH ------------------------------------------------------------------------------


def test_starttls_with_password_from_the_environment(
    starttls_smtp_server: SMTPTestServer, tls_client_context: ssl.SSLContext
) -> None:
    server = starttls_smtp_server
    url = server.url.replace("://", f"://{server.username}@")
    env = {"RECONCILER_SMTP_PASSWORD": server.password}
    transport = open_transport(url, default_from=FROM, env=env)
    transport.ssl_context = tls_client_context
    messages = [outgoing(1), outgoing(2)]
    run = Run()
    with transport:
        run(transport, messages)
    assert run.delivered == ids(messages)
    assert server.connections == 1


def test_smtps_with_percent_encoded_password_in_the_url(
    smtps_server: SMTPTestServer, tls_client_context: ssl.SSLContext
) -> None:
    server = smtps_server
    url = server.url.replace("://", f"://{server.username}:{quote(server.password, safe='')}@")
    transport = open_transport(url, default_from=FROM, env={})
    transport.ssl_context = tls_client_context
    run = Run()
    with transport:
        run(transport, [outgoing(1)])
    assert run.delivered == [outgoing(1).message_id]
    assert server.password not in transport.description


def test_wrong_password_is_not_retried_and_not_shown(
    starttls_smtp_server: SMTPTestServer, tls_client_context: ssl.SSLContext
) -> None:
    server = starttls_smtp_server
    url = server.url.replace("://", f"://{server.username}:wrong-hunter2@")
    transport = open_transport(url, default_from=FROM)
    transport.ssl_context = tls_client_context
    with pytest.raises(AuthenticationFailure, match="535") as error:
        transport.send(outgoing(0))
    assert "hunter2" not in str(error.value)

    messages = [outgoing(1), outgoing(2)]
    run = Run()
    with transport:
        report = run(transport, messages)
    assert report.queued == ids(messages[:1]) and report.stopped is not None
    assert run.sleeps == []  # repeated bad logins can lock the account
    assert not any("hunter2" in reason for reason in report.queued_reasons.values())
    assert server.received == []


def test_untrusted_certificate_is_a_setup_failure(starttls_smtp_server: SMTPTestServer) -> None:
    server = starttls_smtp_server
    url = server.url.replace("://", f"://{server.username}@")
    env = {"RECONCILER_SMTP_PASSWORD": server.password}
    with (
        open_transport(url, default_from=FROM, env=env) as transport,  # system trust store
        pytest.raises(SetupFailure, match=r"certificate .* not trusted"),
    ):
        transport.send(outgoing(1))
    assert server.received == []
