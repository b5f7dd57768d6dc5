"""What every delivery transport promises, and the one loop that drives them.

The apply step commits messages to an outbox first and only then calls :func:`deliver`; a
transport therefore only has to make *one* attempt per call and say, through the exception it
raises, whether trying again later makes sense. Retrying, giving up on a dead server and keeping
the caller's bookkeeping in step with what the server accepted all live here, once.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import ClassVar, Protocol, TypeVar

#: Upper bound of one pause between two attempts: a deploy pipeline waits seconds, not minutes.
MAX_BACKOFF = 30.0
BUDGET_USED_UP = "the delivery time budget is used up"


class TemporaryFailure(Exception):
    """This attempt failed but a later one may succeed (SMTP 4xx): the message stays queued."""


class ConnectionFailure(TemporaryFailure):
    """The destination itself is unreachable (refused, reset, timed out, 421, folder not
    writable): after the retries, :func:`deliver` stops instead of trying every remaining
    message against a dead server."""


class InDoubt(TemporaryFailure):
    """The message was sent but its final reply never came: the server may have accepted it.
    Never retried in the same run (RFC 5321 §4.5.3.2.6 waits long there precisely to avoid
    duplicates); it stays queued and the next run sends it again with the same Message-ID.
    Delivery stops, since the session is in an unknown state."""


class Throttled(TemporaryFailure):
    """The server asks us to slow down or has used up a sending quota (Graph 429 after its
    ``Retry-After`` waits, SMTP ``4.5.3`` or Exchange's "SubmissionQuotaExceeded"): nothing is
    wrong with the message or the setup, so the run stops with the rest queued for later."""


class OutOfTime(Throttled):
    """The run's delivery budget (``--delivery-timeout``) ended before this message could be
    sent: a limit of our own rather than the server's, met the same way."""


class PermanentFailure(Exception):
    """The server refused this message for good (SMTP 5xx): retrying would only be refused again."""


class SetupFailure(Exception):
    """The transport cannot work as configured (bad credentials, no STARTTLS, untrusted TLS
    certificate). No message is at fault and retrying cannot help, so :func:`deliver` stops at
    once and leaves every message queued for a run with a corrected configuration. The text
    never contains a password."""


class AuthenticationFailure(SetupFailure):
    """The server rejected the credentials. Not retried: repeated bad logins can lock the
    account."""


class Pending(Protocol):
    """A queued outbox message as delivery sees it; ``data`` is the RFC 5322 bytes."""

    message_id: str
    sender: str
    recipients: list[str]
    data: bytes


class Transport(ABC):
    """One connection (or folder) reused for many messages; a context manager.

    Opening is lazy (the first :meth:`send` connects), so entering never fails and every
    problem reaches :func:`deliver` as a failure of a message, with a reason to report.
    """

    #: For humans (logs, "delivered to ..."), never with a password.
    description: str
    #: Sending a message again leaves one copy (files named by Message-ID): such a transport's
    #: deliveries may be recorded a batch at a time, since a re-run after a crash writes nothing
    #: twice. A server's (SMTP, Graph) never is.
    idempotent: ClassVar[bool] = False

    def __enter__(self) -> Transport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @abstractmethod
    def send(self, message: Pending, *, deadline: float | None = None) -> None:
        """Make one delivery attempt; raise :class:`TemporaryFailure` (or its
        :class:`ConnectionFailure`), :class:`PermanentFailure` or :class:`SetupFailure`.
        ``deadline`` (``time.monotonic()``) is when the run's delivery budget ends: a transport
        that would wait on the network past it gives up instead."""

    def close(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release the connection, if any; transports without one have nothing to do."""

    def redact(self, text: str) -> str:
        """``text`` (a failure's reason, which may quote the server) without the secrets this
        transport has sent; transports that send none have nothing to hide."""
        return text


@dataclass
class DeliveryReport:
    """What became of the messages given, in their order: queued and failed by message id.

    ``delivered`` is a count: the caller hears of each delivery through ``on_delivered``, and
    a run of 300,000 messages keeps no list of them. ``queued`` are the messages tried and
    still queued, ``queued_reasons`` says why each is, so that apply can tell the operator what
    to fix before the next run. ``stopped`` says why delivery ended before the messages did:
    no message was taken from the iterator after the one that met the end (a wave of 4,000 out
    of a queue of 300,000 reads 4,001). ``limited`` is that reason when it was a sending limit
    or throttling, not a fault.
    """

    delivered: int = 0
    queued: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    queued_reasons: dict[str, str] = field(default_factory=dict)
    stopped: str | None = None
    limited: str | None = None

    def _queue(self, message: Pending, reason: str) -> None:
        self.queued.append(message.message_id)
        self.queued_reasons[message.message_id] = reason


@dataclass
class Pace:
    """Sending limits shared by every delivery of one run: a deadline (``clock()`` time), a
    minimum interval between two messages (``--max-rate``) and a number of messages
    (``--max-messages``). :meth:`turn` waits for the next slot or says why there is none."""

    deadline: float | None = None
    interval: float = 0.0
    remaining: int | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    _next: float = 0.0

    def turn(self) -> str | None:
        """None once the next message may go (after waiting for the rate), or the limit that
        ends this run's delivery."""
        if self.remaining is not None and self.remaining <= 0:
            return "the apply's --max-messages is reached"
        now = self.clock()
        start = max(now, self._next)
        if self.deadline is not None and start >= self.deadline:
            return BUDGET_USED_UP
        if start > now:
            self.sleep(start - now)
        self._next = start + self.interval  # slots start ``interval`` apart, sends included
        return None

    def sent(self) -> None:
        if self.remaining is not None:
            self.remaining -= 1


P = TypeVar("P", bound=Pending)


def deliver(
    messages: Iterable[P],
    transport: Transport,
    *,
    on_delivered: Callable[[P], None],
    on_failed: Callable[[P, str], None],
    attempts: int = 4,
    backoff: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[P], None] | None = None,
    precondition: Callable[[], None] | None = None,
    pace: Pace | None = None,
) -> DeliveryReport:
    """Send ``messages`` in order over one ``transport`` and report what became of each.

    - Accepted: ``on_delivered(msg)`` right away, so the caller marks it delivered before the
      next message is tried (a crash then re-sends at most the message in flight).
    - :class:`TemporaryFailure`: up to ``attempts`` tries, pausing ``backoff``, ``2*backoff``,
      ... (each pause at most :data:`MAX_BACKOFF`, none past the time budget of ``pace``: the
      failure is then reported as it is). Still failing, the message stays queued; if
      the last failure was a :class:`ConnectionFailure` the remaining messages are left queued
      untried, otherwise delivery continues with the next one.
    - :class:`PermanentFailure`: ``on_failed(msg, reason)``, continue.
    - :class:`SetupFailure`, :class:`InDoubt`, :class:`Throttled`: no retry; this and every
      remaining message stay queued.

    ``precondition()`` runs before every attempt and may raise to stop everything (apply checks
    it still holds the tenant's lock). ``pace`` spaces the messages and stops at the run's
    limits (time, count); the remaining messages then stay queued untried and
    ``report.limited`` says why. Each attempt is given the end of that time budget, so a
    transport that waits on the network stops there too.

    Delivery failures never escape; exceptions raised by the callbacks do (the caller's state
    is then in doubt and it must know). ``progress(msg)`` is called once per message tried.
    Transports name themselves in connection and setup failures, so each reason in the report
    stands on its own; every reason goes through :meth:`Transport.redact` before it is
    reported or kept.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    report = DeliveryReport()
    for message in messages:
        if pace is not None and (limit := pace.turn()) is not None:
            report.stopped = report.limited = limit
            break
        deadline = pace.deadline if pace is not None else None
        outcome = _attempt(message, transport, attempts, backoff, sleep, precondition, deadline)
        if pace is not None and not isinstance(outcome, SetupFailure | ConnectionFailure):
            pace.sent()
        reason = "" if outcome is None else transport.redact(str(outcome))
        if outcome is None:
            report.delivered += 1
            on_delivered(message)
        elif isinstance(outcome, PermanentFailure):
            report.failed[message.message_id] = reason
            on_failed(message, reason)
        else:
            report._queue(message, reason)
        if progress is not None:
            progress(message)
        if isinstance(outcome, Throttled):
            report.stopped = report.limited = reason
        elif isinstance(outcome, ConnectionFailure | SetupFailure | InDoubt):
            report.stopped = reason
        if report.stopped is not None:
            break
    return report


def _attempt(
    message: Pending,
    transport: Transport,
    attempts: int,
    backoff: float,
    sleep: Callable[[float], None],
    precondition: Callable[[], None] | None,
    deadline: float | None,
) -> TemporaryFailure | PermanentFailure | SetupFailure | None:
    """Try one message up to ``attempts`` times; return the failure that ended it, or None."""
    tries = 0
    while True:
        if precondition is not None:
            precondition()
        try:
            transport.send(message, deadline=deadline)
        except (InDoubt, Throttled) as failure:
            return failure
        except TemporaryFailure as failure:
            tries += 1
            pause = min(backoff * 2 ** (tries - 1), MAX_BACKOFF)
            if tries >= attempts or (deadline is not None and time.monotonic() + pause >= deadline):
                return failure
            sleep(pause)
        except (PermanentFailure, SetupFailure) as failure:
            return failure
        else:
            return None
