"""SMTP by the RFC, through the real CLI and a real server on loopback: a message whose final
reply never comes is in doubt (sent once in this apply, again only by the next one, with the same
Message-ID), and an apply never delivers for longer than its budget."""

from __future__ import annotations

import time

import pytest

from tests.fixtures.smtp import SMTPTestServer
from tests.helpers.cli import Result
from tests.helpers.mail import copies_by_message_id
from tests.helpers.patience import patience
from tests.helpers.workspace import NewWorkspace, Workspace, with_acme

FROM = ["--default-from", "noreply@acme.com", "--retry-backoff", "0.01"]


def acme(ws: Workspace, users: int, mail: str) -> Workspace:
    ws.mail = mail
    return with_acme(ws, users)


def test_a_message_without_a_final_reply_is_in_doubt_and_never_resent_in_the_same_apply(
    workspace: Workspace, smtp_server: SMTPTestServer
) -> None:
    ws = acme(workspace, 4, smtp_server.url + "?final_reply_timeout=1")
    smtp_server.hold(0)  # the server takes the first message and does not answer the final dot
    result = ws.run("apply", "--auto-approve", *FROM, timeout=60)
    assert result.code == 1, str(result)
    assert "in doubt" in result.output and "Traceback" not in result.output
    assert smtp_server.count() == 1, "sent once, never retried in the same apply"
    in_doubt = str(smtp_server.mails[0].message["Message-ID"])
    smtp_server.release()

    smtp_server.delay = 0.0
    again = ws.run("apply", "--auto-approve", *FROM, timeout=60)
    assert again.code == 0, str(again)
    sent = copies_by_message_id(smtp_server.mails)
    assert len(sent) == 4 and sent[in_doubt] == 2  # the next apply sends it again, same id
    assert [n for mid, n in sent.items() if mid != in_doubt] == [1, 1, 1]


def test_delivery_stops_at_its_time_budget_and_the_rest_stays_queued(
    workspace: Workspace, smtp_server: SMTPTestServer
) -> None:
    ws = acme(workspace, 10, smtp_server.url)
    smtp_server.delay = 0.4
    started = time.monotonic()
    result = ws.run("apply", "--auto-approve", *FROM, "--delivery-timeout", "1", timeout=60)
    assert time.monotonic() - started < patience(8)
    assert result.code == 3, str(result)  # only a limit stopped it: a pause, not a failure
    assert "by a sending limit: the delivery time budget is used up" in result.stderr
    first = smtp_server.count()
    assert 1 <= first < 10

    smtp_server.delay = 0.0
    again = ws.run("apply", "--auto-approve", *FROM, timeout=60)
    assert again.code == 0, str(again)
    sent = copies_by_message_id(smtp_server.mails)
    assert len(sent) == 10 and set(sent.values()) == {1}


def apply_within_budget(ws: Workspace, *, retry_backoff: str, budget: str) -> Result:
    """``apply`` with that first retry pause and ``--delivery-timeout``: over in seconds."""
    started = time.monotonic()
    result = ws.run(
        "apply",
        "--auto-approve",
        "--default-from",
        "noreply@acme.com",
        "--retry-backoff",
        retry_backoff,
        "--delivery-timeout",
        budget,
        timeout=60,
    )
    assert time.monotonic() - started < patience(6), str(result)
    return result


def test_the_budget_bounds_a_server_that_defers_every_message(
    workspace: Workspace, smtp_server: SMTPTestServer
) -> None:
    ws = acme(workspace, 8, smtp_server.url)
    smtp_server.fail_next(10_000)  # 451 to everything: 4 tries each would take long
    result = apply_within_budget(ws, retry_backoff="0.3", budget="1")
    assert result.code == 1 and "8 queued" in result.stdout, str(result)


def test_no_retry_pauses_past_the_budget_and_the_failure_is_said_as_it_is(
    new_workspace: NewWorkspace, dead_smtp_url: str
) -> None:
    """A pause before a retry that would end after --delivery-timeout is not taken: the run
    ends within its budget, saying what failed rather than that the time ran out."""
    ws = acme(new_workspace(), 3, dead_smtp_url)
    result = apply_within_budget(ws, retry_backoff="20", budget="2")
    assert result.code == 1 and "cannot connect" in result.stderr, str(result)
    assert "3 email(s) still queued" in result.stderr


@pytest.mark.parametrize(
    "reply",
    [
        "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException",
        "450 4.5.3 Message rate limit exceeded",
    ],
)
def test_an_exchange_quota_reply_stops_the_run_with_exit_3_and_fails_nothing(
    workspace: Workspace, smtp_server: SMTPTestServer, reply: str
) -> None:
    ws = acme(workspace, 3, smtp_server.url)
    smtp_server.fail_next(1, reply)
    result = ws.run("apply", "--auto-approve", "--default-from", "noreply@acme.com", timeout=60)
    assert result.code == 3, str(result)
    assert "held back: 3 email(s) by a sending limit" in result.stderr
    assert "failed" not in result.stderr.replace("0 failed", "")
    again = ws.run("apply", "--auto-approve", "--default-from", "noreply@acme.com", timeout=60)
    assert again.code == 0 and len(smtp_server.messages) == 3, str(again)
