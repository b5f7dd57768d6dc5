"""Delivery to an SMTP server: one connection for the whole run, failures sorted for retrying.

Every smtplib outcome is mapped to what :func:`~reconciler.delivery.base.deliver` needs to know:
the server refused this message for good (5xx → :class:`PermanentFailure`), try it again later
(4xx → :class:`TemporaryFailure`), the server is gone (network errors, 421 →
:class:`ConnectionFailure`), or the connection can never work as configured (bad credentials,
no STARTTLS, untrusted certificate, 530 → :class:`SetupFailure`): a 5xx that is about the
connection rather than the message must not fail every message for good.

Timeouts follow RFC 5321 §4.5.3.2: 5 minutes for each command reply, 2 for the reply to DATA, 3
for each block of the message, and 10 for the reply to the final dot, which the RFC makes long
on purpose: a client that gives up there cannot know whether the server took the message, and
retrying would deliver it twice. Such a message is :class:`InDoubt`: never retried in the same
run, it stays queued and the next run sends it again with the same Message-ID.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

from reconciler.redaction import scrub

from .base import (
    AuthenticationFailure,
    ConnectionFailure,
    InDoubt,
    Pending,
    PermanentFailure,
    SetupFailure,
    TemporaryFailure,
    Throttled,
    Transport,
)

Mode = Literal["plain", "starttls", "ssl"]
SCHEMES: dict[Mode, str] = {"plain": "smtp", "starttls": "smtp+starttls", "ssl": "smtps"}
DEFAULT_PORTS: dict[Mode, int] = {"plain": 25, "starttls": 587, "ssl": 465}
#: Slow relays (greylisting, content scanning before the final reply) need this much.
MIN_TIMEOUT = 30.0
CONNECT_TIMEOUT = 60.0
"""Opening the TCP connection and reading the greeting (a dead host should not cost minutes)."""


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait, per phase of the SMTP transaction (RFC 5321 §4.5.3.2)."""

    command: float = 300.0
    data_initiation: float = 120.0
    data_block: float = 180.0
    final_reply: float = 600.0


_LINE_ENDING = re.compile(rb"\r\n|\r|\n")
_LEADING_DOT = re.compile(rb"(?m)^\.")
_QUOTA = re.compile(r"\b4\.5\.3\b|quota|rate limit|thread limit|too many messages", re.I)
"""Replies that mean "slow down" (Exchange Online: 4.5.3, "SubmissionQuotaExceeded", "message
rate limit exceeded"; even as a 5xx the message is fine and must not be failed for good)."""


class _NoFinalReply(Exception):
    """The message went out but the reply to its final dot did not come back."""


class SMTPTransport(Transport):
    """Sends over one SMTP connection, opened on the first message and reopened after a
    connection failure.

    ``mode`` is ``plain`` (no TLS), ``starttls`` (upgrade, required) or ``ssl`` (TLS from the
    start). ``ssl_context`` defaults to the system's trust store with hostname checking; tests
    pass one trusting their self-signed certificate. ``default_from`` is the envelope sender for
    messages that carry none. The run's ``deadline`` is not used: each phase waits as long as
    RFC 5321 says, since giving up early on a final reply is what delivers a message twice.
    """

    def __init__(
        self,
        host: str,
        port: int,
        mode: Mode = "plain",
        username: str | None = None,
        password: str | None = None,
        timeouts: Timeouts = Timeouts(),
        ssl_context: ssl.SSLContext | None = None,
        *,
        default_from: str | None = None,
        token: Callable[[], str] | None = None,
    ):
        if mode not in SCHEMES:
            raise ValueError(f"unknown SMTP mode {mode!r}: use plain, starttls or ssl")
        if timeouts.command < MIN_TIMEOUT:
            raise ValueError(f"SMTP timeout must be at least {MIN_TIMEOUT:g} seconds")
        if timeouts.final_reply < 1:
            raise ValueError("the final reply timeout must be at least 1 second")
        self.host = host
        self.port = port
        self.mode = mode
        self.username = username
        self._password = password
        self._token = token
        """With ``?auth=xoauth2``: returns an OAuth access token for ``username`` (AUTH XOAUTH2,
        as Exchange Online wants once basic authentication is off)."""
        self._tokens: set[str] = set()
        self.timeouts = timeouts
        self.ssl_context = ssl_context
        self.default_from = default_from
        user = f"{quote(username, safe='')}@" if username else ""
        netloc = f"[{host}]" if ":" in host else host
        self.description = f"{SCHEMES[mode]}://{user}{netloc}:{port}"
        self._connection: smtplib.SMTP | None = None

    def send(self, message: Pending, *, deadline: float | None = None) -> None:
        sender = message.sender or self.default_from
        if not sender:
            raise SetupFailure(
                f"{self.description}: no envelope sender: set --default-from or "
                "RECONCILER_DEFAULT_FROM"
            )
        if not message.recipients:
            raise PermanentFailure("the message has no recipients")
        connection = self._connect()
        data = _LINE_ENDING.sub(b"\r\n", message.data)  # SMTP forbids bare CR/LF
        options = []
        if not data.isascii() and connection.has_extn("8bitmime"):
            options.append("BODY=8BITMIME")
        if not all(address.isascii() for address in [sender, *message.recipients]):
            if not connection.has_extn("smtputf8"):
                raise PermanentFailure(
                    f"{self.description} does not support SMTPUTF8, needed for a non-ASCII address"
                )
            options.append("SMTPUTF8")
        try:
            refused = self._transaction(connection, sender, message.recipients, data, options)
        except _NoFinalReply as error:
            self.close()
            raise InDoubt(
                f"in doubt: {self.description} sent no reply to the end of the message within "
                f"{self.timeouts.final_reply:g} s ({error}); it may have been accepted, so it is "
                "not sent again now: it stays queued and the next apply sends it again with "
                "the same Message-ID"
            ) from error
        except smtplib.SMTPRecipientsRefused as error:
            self._reset()
            raise _recipients_failure(self.description, error.recipients) from error
        except smtplib.SMTPSenderRefused as error:
            # The same From for every message: no message is at fault, and failing each one
            # for good would erase every PIN over one setup problem. Keep them all queued.
            self._reset()
            if error.smtp_code >= 500:
                raise SetupFailure(
                    f"{self.description} refused the sender {sender}: "
                    f"{error.smtp_code} {error.smtp_error.decode(errors='replace')}"
                ) from error
            raise _reply_failure(self.description, error.smtp_code, error.smtp_error) from error
        except smtplib.SMTPResponseException as error:
            self._reset()
            raise _reply_failure(self.description, error.smtp_code, error.smtp_error) from error
        except (smtplib.SMTPException, OSError) as error:
            self.close()
            raise ConnectionFailure(f"connection to {self.description} lost: {error}") from error
        if refused:
            # Some recipients have it already; sending again would give them a second copy.
            raise PermanentFailure(
                f"accepted for the other recipients but refused for {_describe(refused)}"
            )

    def _transaction(
        self,
        connection: smtplib.SMTP,
        sender: str,
        recipients: list[str],
        data: bytes,
        options: list[str],
    ) -> dict[str, tuple[int, bytes]]:
        """``smtplib.SMTP.sendmail`` (same exceptions, same refused-recipients result), with
        each phase waiting as long as RFC 5321 says and a missing final reply told apart."""
        sock = connection.sock
        assert sock is not None
        sock.settimeout(self.timeouts.command)
        code, reply = connection.mail(sender, options)
        if code != 250:
            self._refused(code)
            raise smtplib.SMTPSenderRefused(code, reply, sender)
        refused = {}
        for recipient in recipients:
            code, reply = connection.rcpt(recipient)
            if code not in (250, 251):
                refused[recipient] = (code, reply)
            if code == 421:
                self._refused(code)
                raise smtplib.SMTPRecipientsRefused(refused)
        if len(refused) == len(recipients):
            raise smtplib.SMTPRecipientsRefused(refused)
        sock.settimeout(self.timeouts.data_initiation)
        connection.putcmd("data")
        code, reply = connection.getreply()
        if code != 354:
            self._refused(code)
            raise smtplib.SMTPDataError(code, reply)
        body = _LEADING_DOT.sub(b"..", data)
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        sock.settimeout(self.timeouts.data_block)
        connection.send(body + b".\r\n")
        sock.settimeout(self.timeouts.final_reply)
        try:
            code, reply = connection.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as error:
            raise _NoFinalReply(str(error)) from error
        if code != 250:
            self._refused(code)
            raise smtplib.SMTPDataError(code, reply)
        return refused

    def _refused(self, code: int) -> None:
        """A 421 means the server is closing the session: forget the connection (as sendmail
        does) so the next attempt opens a new one."""
        if code == 421:
            self.close()

    def redact(self, text: str) -> str:
        """Without the password or a token: a server may quote what it was sent."""
        return scrub(text, [self._password or "", *self._tokens])

    def close(self) -> None:
        """Say QUIT politely if the connection still works, and forget it either way."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            if connection.sock is not None:
                connection.quit()
        except (smtplib.SMTPException, OSError):
            pass
        finally:
            connection.close()

    def _connect(self) -> smtplib.SMTP:
        """The open connection, or a new one."""
        if self._connection is not None and self._connection.sock is not None:
            return self._connection
        self.close()
        try:
            self._connection = self._open()
        except smtplib.SMTPResponseException as error:  # greeting, EHLO, STARTTLS or AUTH reply
            raise self._session_failure(error) from error
        except ssl.SSLCertVerificationError as error:
            raise SetupFailure(
                f"TLS certificate of {self.description} not trusted: {error.verify_message}"
            ) from error
        except smtplib.SMTPServerDisconnected as error:
            raise ConnectionFailure(f"cannot connect to {self.description}: {error}") from error
        except smtplib.SMTPException as error:  # STARTTLS or AUTH not offered, no common AUTH
            raise SetupFailure(f"{self.description}: {error}") from error
        except OSError as error:  # after SMTPException, which is one
            raise ConnectionFailure(f"cannot connect to {self.description}: {error}") from error
        return self._connection

    def _open(self) -> smtplib.SMTP:
        """Connect, read the greeting, EHLO, STARTTLS (then EHLO again, as required), AUTH."""
        if self.mode != "plain" and self.ssl_context is None:
            self.ssl_context = ssl.create_default_context()  # only now: loading CAs is slow
        if self.mode == "ssl":
            connection: smtplib.SMTP = smtplib.SMTP_SSL(
                self.host, self.port, timeout=CONNECT_TIMEOUT, context=self.ssl_context
            )
        else:
            connection = smtplib.SMTP(self.host, self.port, timeout=CONNECT_TIMEOUT)
        try:
            assert connection.sock is not None
            connection.sock.settimeout(self.timeouts.command)
            connection.ehlo_or_helo_if_needed()  # HELO for the rare server without EHLO
            if self.mode == "starttls":
                connection.starttls(context=self.ssl_context)
                connection.ehlo_or_helo_if_needed()  # STARTTLS forgot what EHLO said
            if self.username is not None and self._token is not None:
                token = self._token()
                self._tokens.add(token)
                bearer = f"user={self.username}\x01auth=Bearer {token}\x01\x01"
                connection.auth("XOAUTH2", lambda challenge=None: bearer, initial_response_ok=True)
            elif self.username is not None:
                connection.login(self.username, self._password or "")
        except BaseException:
            connection.close()
            raise
        return connection

    def _session_failure(self, error: smtplib.SMTPResponseException) -> Exception:
        """A refusal while opening the session: 4xx means busy (retry later), 5xx means never."""
        reply = _reply(error.smtp_code, error.smtp_error)
        if error.smtp_code < 500:
            return ConnectionFailure(f"{self.description} is unavailable: {reply}")
        if isinstance(error, smtplib.SMTPAuthenticationError):
            return AuthenticationFailure(
                f"{self.description} refused the login of {self.username!r}: {reply}"
            )
        return SetupFailure(f"{self.description} refused the session: {reply}")

    def _reset(self) -> None:
        """Abort the refused transaction so the next message starts cleanly (smtplib skips the
        RSET when DATA itself is refused); a 421 has already closed the connection."""
        if self._connection is None or self._connection.sock is None:
            return
        try:
            self._connection.rset()
        except (smtplib.SMTPException, OSError):
            self.close()


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}"


def _reply_failure(
    description: str, code: int, text: bytes | str
) -> TemporaryFailure | PermanentFailure | SetupFailure:
    """Classify a refusal of this message by its reply code."""
    reply = _reply(code, text)
    if code == 421:  # the server is closing the connection: it is going away, not just us
        return ConnectionFailure(f"{description} is closing the connection: {reply}")
    if code == 530:  # authentication or STARTTLS required: the URL is wrong, not the message
        return SetupFailure(f"{description} requires authentication or STARTTLS: {reply}")
    if _QUOTA.search(reply):
        return Throttled(f"{description} is limiting the sending rate or quota: {reply}")
    if code >= 500:
        return PermanentFailure(reply)
    return TemporaryFailure(reply)


def _recipients_failure(
    description: str, refused: dict[str, tuple[int, bytes]]
) -> TemporaryFailure | PermanentFailure:
    """Every recipient was refused: permanent only if every refusal was permanent."""
    codes = [code for code, _ in refused.values()]
    text = _describe(refused)
    if 421 in codes:
        return ConnectionFailure(f"{description} is closing the connection: {text}")
    if all(code >= 500 for code in codes):
        return PermanentFailure(text)
    return TemporaryFailure(text)


def _describe(refused: dict[str, tuple[int, bytes]]) -> str:
    return "; ".join(
        f"{address}: {_reply(code, text)}" for address, (code, text) in refused.items()
    )
