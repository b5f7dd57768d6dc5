"""Exchange Online through Microsoft Graph, against a fake identity platform and Graph on
loopback HTTPS (trusted through SSL_CERT_FILE / REQUESTS_CA_BUNDLE, as a private cloud would be),
with Microsoft's own azure-identity getting the tokens."""

from __future__ import annotations

import base64
import collections
import email
import email.policy
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.graph import (
    CLIENT_SECRET,
    SENDER,
    FakeCloud,
    drip,
    echo_token,
    hang_up,
    hold,
    huge,
    raw,
)
from tests.fixtures.proxy import Proxy
from tests.helpers.cli import Result, assert_clean_error
from tests.helpers.mail import copies_by_message_id, parse_mail
from tests.helpers.patience import patience
from tests.helpers.tenants import enabled_users, tenant_doc, write_tenant
from tests.helpers.workspace import NewWorkspace, Workspace

pytest.importorskip("azure.identity")


def sending_through_graph(
    ws: Workspace, cloud: FakeCloud, trust: dict[str, str], users: int = 3, **env: str
) -> Workspace:
    ws.mail = f"graph://{SENDER}"
    ws.env.update({**cloud.env(**env), **trust})
    write_tenant(ws.config, "acme", tenant_doc(), enabled_users(users, domain="acme.com"))
    return ws


def test_graph_sends_exactly_the_message_a_maildir_gets(
    tmp_path: Path,
    workspace: Workspace,
    new_workspace: NewWorkspace,
    fake_cloud: FakeCloud,
    trust_env: dict[str, str],
) -> None:
    ws = sending_through_graph(workspace, fake_cloud, trust_env)
    result = ws.apply("--allow-new-state")
    assert "3 email(s) delivered" in result.stdout
    assert fake_cloud.senders == [SENDER] * 3
    graph = fake_cloud.messages
    assert [m["To"].addresses[0].addr_spec for m in graph] == [
        "u000@acme.com",
        "u001@acme.com",
        "u002@acme.com",
    ]
    assert all(m["From"].addresses[0].addr_spec == SENDER for m in graph)
    # the same apply into a Maildir composes the same message (but its own PIN and date)
    maildir = new_workspace(root=tmp_path / "m")
    write_tenant(maildir.config, "acme", tenant_doc(), enabled_users(3, domain="acme.com"))
    maildir.apply("--default-from", SENDER)
    for sent, kept in zip(graph, (m.message for m in maildir.mails()), strict=True):
        assert sent.keys() == kept.keys()
        assert sent["Subject"] == kept["Subject"] and sent["To"] == kept["To"]
        assert [p.get_content_type() for p in sent.walk()] == [
            p.get_content_type() for p in kept.walk()
        ]
    assert len({m["Message-ID"] for m in graph}) == 3
    assert CLIENT_SECRET not in result.output
    state = ws.run("state", "show").stdout + ws.run("history").stdout
    assert CLIENT_SECRET not in state and "token-1" not in state


def test_tokens_are_cached_and_renewed_when_they_expire(
    new_workspace: NewWorkspace, fake_cloud: FakeCloud, trust_env: dict[str, str]
) -> None:
    fake_cloud.token_lifetime = 1  # every token is close to expiry: azure-identity renews it
    fake_cloud.delay = 0.6
    ws = sending_through_graph(new_workspace(), fake_cloud, trust_env, users=4)
    ws.apply("--allow-new-state")
    assert len(fake_cloud.messages) == 4
    assert len(fake_cloud.tokens) >= 2  # renewed during the run, never sent expired
    forms = fake_cloud.token_requests
    assert all(f["grant_type"] == ["client_credentials"] for f in forms)
    assert all(f["scope"] == [f"{fake_cloud.url}/.default"] for f in forms)


def test_throttling_waits_for_retry_after_then_delivers(
    new_workspace: NewWorkspace, fake_cloud: FakeCloud, trust_env: dict[str, str]
) -> None:
    busy = {"error": {"code": "ApplicationThrottled", "message": "Too many requests"}}
    fake_cloud.script = [(429, {"Retry-After": "1"}, busy), (503, {"Retry-After": "0"}, busy)]
    ws = sending_through_graph(new_workspace(), fake_cloud, trust_env)
    started = time.monotonic()
    ws.apply()
    assert time.monotonic() - started >= 1.0  # Retry-After was honoured
    assert len(fake_cloud.messages) == 3


def test_throttling_that_does_not_end_stops_the_run_with_exit_3_and_keeps_the_rest(
    new_workspace: NewWorkspace, fake_cloud: FakeCloud, trust_env: dict[str, str]
) -> None:
    busy = {"error": {"code": "ErrorExceededMessageLimit", "message": "quota"}}
    fake_cloud.script = [(429, {"Retry-After": "3600"}, busy)]
    ws = sending_through_graph(new_workspace(), fake_cloud, trust_env)
    result = ws.apply(expect=3)
    assert "held back: 3 email(s) by a sending limit" in result.stderr
    assert fake_cloud.messages == []
    again = ws.apply()
    assert "3 email(s) delivered" in again.stdout and len(fake_cloud.messages) == 3


@pytest.mark.parametrize("status", [401, 403])
def test_a_missing_permission_is_a_setup_failure_and_everything_stays_queued(
    new_workspace: NewWorkspace,
    fake_cloud: FakeCloud,
    trust_env: dict[str, str],
    status: int,
) -> None:
    denied = {"error": {"code": "ErrorAccessDenied", "message": "Access is denied."}}
    fake_cloud.script = [(status, {}, denied)]
    ws = sending_through_graph(new_workspace(), fake_cloud, trust_env)
    result = ws.apply(expect=1)
    assert "Mail.Send application permission" in result.stderr
    assert f"{status} ErrorAccessDenied: Access is denied." in result.stderr
    assert "3 email(s) still queued" in result.stderr
    assert ws.apply().code == 0 and len(fake_cloud.messages) == 3


def test_a_wrong_secret_is_one_line_without_the_secret(
    new_workspace: NewWorkspace, fake_cloud: FakeCloud, trust_env: dict[str, str]
) -> None:
    ws = sending_through_graph(
        new_workspace(),
        fake_cloud,
        trust_env,
        AZURE_CLIENT_SECRET="wrong-secret-xyz",
    )
    result = ws.apply(expect=1)
    assert "AADSTS7000215" in result.stderr and "wrong-secret-xyz" not in result.output
    assert "Traceback" not in result.output and fake_cloud.messages == []


def test_missing_credentials_are_named(
    new_workspace: NewWorkspace, fake_cloud: FakeCloud, trust_env: dict[str, str]
) -> None:
    ws = sending_through_graph(new_workspace(), fake_cloud, trust_env, AZURE_CLIENT_SECRET="")
    result = ws.apply(expect=1)
    assert (
        "set AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH or "
        "AZURE_FEDERATED_TOKEN_FILE" in result.stderr
    )


def test_kill_during_graph_delivery_loses_nothing(
    new_workspace: NewWorkspace, fake_cloud: FakeCloud, trust_env: dict[str, str]
) -> None:
    fake_cloud.delay = 0.15
    ws = sending_through_graph(new_workspace(mode="process"), fake_cloud, trust_env, users=8)
    running = ws.spawn("apply", "--auto-approve", "--allow-new-state")
    deadline = time.monotonic() + patience(20)
    while len(fake_cloud.sent) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    running.kill()
    assert running.wait().code == -9
    ws.apply()
    ids = collections.Counter(str(m["Message-ID"]) for m in fake_cloud.messages)
    assert len(ids) == 8 and sum(n - 1 for n in ids.values()) <= 1


def test_max_messages_leaves_the_rest_for_the_next_apply_which_sends_it_first(
    new_workspace: NewWorkspace, fake_cloud: FakeCloud, trust_env: dict[str, str]
) -> None:
    ws = sending_through_graph(new_workspace(), fake_cloud, trust_env, users=5)
    first = ws.apply("--allow-new-state", "--max-messages", "2", expect=3)
    assert (
        "held back: 3 email(s) by a sending limit: the apply's --max-messages is reached"
        in first.stderr
    )
    assert len(fake_cloud.messages) == 2
    write_tenant(ws.config, "acme", tenant_doc(), enabled_users(6, domain="acme.com"))
    ws.apply()
    order = [m["To"].addresses[0].addr_spec for m in fake_cloud.messages]
    assert order == [f"u{i:03d}@acme.com" for i in range(6)]  # leftovers first, then the new one


def test_max_rate_spaces_the_messages(
    new_workspace: NewWorkspace, fake_cloud: FakeCloud, trust_env: dict[str, str]
) -> None:
    """Measured where the messages arrive, as a ratio of the spacing asked for: slowness of the
    machine can only make the gaps longer, never shorter."""
    ws = sending_through_graph(new_workspace(), fake_cloud, trust_env, users=6)
    ws.apply("--max-rate", "120/min")  # one every 0.5 s
    gaps = [b - a for a, b in zip(fake_cloud.arrivals, fake_cloud.arrivals[1:], strict=False)]
    assert len(gaps) == 5
    # the first send also fetched the token before its request left: gaps from the second on
    assert min(gaps[1:]) / 0.5 > 0.8 and sum(gaps) / (5 * 0.5) > 0.8, gaps
    fake_cloud.arrivals.clear()
    write_tenant(ws.config, "acme", tenant_doc(), enabled_users(12, domain="acme.com"))
    ws.apply("--allow-mass-email")  # 6 new users of 12; no limit: nothing waits
    assert len(fake_cloud.arrivals) == 6 and len(fake_cloud.messages) == 12


def test_graph_urls_are_checked(new_workspace: NewWorkspace) -> None:
    ws = new_workspace(mail="graph://app:secret@contoso.com")
    write_tenant(ws.config, "acme", tenant_doc(), enabled_users(1, domain="acme.com"))
    result = ws.apply(expect=1)
    assert "must be graph://SENDER" in result.stderr and "secret" not in result.stderr


def test_parsed_message_round_trips(fake_cloud: FakeCloud) -> None:
    raw = b"From: a@b.c\r\nTo: d@e.f\r\nSubject: x\r\n\r\nhi\r\n"
    fake_cloud.sent.append(raw)
    assert fake_cloud.messages[0]["Subject"] == "x"
    assert email.message_from_bytes(raw, policy=email.policy.default)["To"] == "d@e.f"


def test_smtp_with_oauth_uses_xoauth2_over_starttls(
    new_workspace: NewWorkspace,
    fake_cloud: FakeCloud,
    trust_env: dict[str, str],
    xoauth2_smtp_server,
) -> None:
    server = xoauth2_smtp_server
    url = f"smtp+starttls://{SENDER}@127.0.0.1:{server.port}?auth=xoauth2"
    ws = new_workspace(mail=url)
    ws.env.update(
        {**fake_cloud.env(RECONCILER_SMTP_OAUTH_SCOPE="https://outlook.test/.default"), **trust_env}
    )
    write_tenant(ws.config, "acme", tenant_doc(), enabled_users(3, domain="acme.com"))
    result = ws.apply("--default-from", SENDER)
    assert "3 email(s) delivered" in result.stdout
    assert len(server.messages) == 3 and server.logins == [SENDER]
    assert fake_cloud.token_requests[0]["scope"] == ["https://outlook.test/.default"]
    assert "token-" not in result.output and CLIENT_SECRET not in result.output


def test_smtp_oauth_refused_is_a_setup_failure(
    new_workspace: NewWorkspace,
    fake_cloud: FakeCloud,
    trust_env: dict[str, str],
    xoauth2_smtp_server,
) -> None:
    url = f"smtp+starttls://other@contoso.com@127.0.0.1:{xoauth2_smtp_server.port}?auth=xoauth2"
    ws = new_workspace(
        mail=url.replace("other@contoso.com", "other%40contoso.com"),
    )
    ws.env.update({**fake_cloud.env(), **trust_env})
    write_tenant(ws.config, "acme", tenant_doc(), enabled_users(2, domain="acme.com"))
    result = ws.apply("--default-from", SENDER, expect=1)
    assert "refused the login of 'other@contoso.com'" in result.stderr
    assert "2 email(s) still queued" in result.stderr


def test_test_email_goes_through_graph_and_reports_the_real_reason(
    new_workspace: NewWorkspace, fake_cloud: FakeCloud, trust_env: dict[str, str]
) -> None:
    ws = sending_through_graph(new_workspace(), fake_cloud, trust_env)
    sent = ws.run("test-email", "--tenant", "acme", "--to", "admin@acme.com")
    assert sent.code == 0, str(sent)
    assert [m["To"].addresses[0].addr_spec for m in fake_cloud.messages] == ["admin@acme.com"]
    fake_cloud.script = [
        (403, {}, {"error": {"code": "ErrorAccessDenied", "message": "Access is denied."}})
    ]
    refused = ws.run("test-email", "--tenant", "acme", "--to", "admin@acme.com")
    assert refused.code == 1
    assert "Mail.Send application permission" in refused.stderr, str(refused)


@pytest.mark.parametrize("setting", ["AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_FEDERATED_TOKEN_FILE"])
def test_a_missing_certificate_or_token_file_is_one_line_and_mail_stays_queued(
    tmp_path: Path,
    new_workspace: NewWorkspace,
    fake_cloud: FakeCloud,
    trust_env: dict[str, str],
    setting: str,
) -> None:
    missing = str(tmp_path / "nowhere.pem")
    ws = sending_through_graph(
        new_workspace(),
        fake_cloud,
        trust_env,
        AZURE_CLIENT_SECRET="",
        **{setting: missing},
    )
    result = ws.apply("--allow-new-state", expect=1)
    assert "Traceback" not in result.output, str(result)
    assert f"no such file or directory: {missing}" in result.stderr
    assert "3 email(s) still queued" in result.stderr and fake_cloud.messages == []


def _graph_error(status: int, code: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    return status, {}, {"error": {"code": code, "message": "Something went wrong."}}


NO_DEFINITE_ANSWER = {
    "hang-up": hang_up,
    "timeout": hold,
    "500": _graph_error(500, "InternalServerError"),
    "502": _graph_error(502, "BadGateway"),
    "504": _graph_error(504, "GatewayTimeout"),
    "not-http": raw(b"HELLO\r\n\r\n"),
    "dripped-500": drip(500, interval=0.2),
    "huge-500": huge(500, 800 * 2**20),
}


def in_doubt_run(ws: Workspace, cloud: FakeCloud, budget: float) -> Result:
    """An apply whose first sendMail gets no definite answer: exit 1 within the delivery
    budget, one in-doubt line, sendMail called once, everything still queued."""
    started = time.monotonic()
    result = ws.apply("--delivery-timeout", f"{budget:g}", expect=None)
    assert time.monotonic() - started < budget + patience(10), str(result)
    assert_clean_error(result, "in doubt: ", "3 email(s) still queued")
    assert len(cloud.requests) == 1, str(result)  # never sent again in the same run
    return result


@pytest.mark.parametrize("answer", NO_DEFINITE_ANSWER)
def test_a_sendmail_without_a_definite_answer_is_in_doubt_and_sent_once_more_by_the_next_apply(
    new_workspace: NewWorkspace, fake_cloud: FakeCloud, trust_env: dict[str, str], answer: str
) -> None:
    """A PIN email cannot be recalled: a request that went out but got no 202, no refusal and
    no throttling may have been carried out, so it is not repeated in this run (it used to be
    tried 4 times, then again by the next apply). A reply that never ends (held, dripped) ends
    with the delivery budget; a huge one is read only up to a cap."""
    fake_cloud.script = [NO_DEFINITE_ANSWER[answer]]
    ws = sending_through_graph(new_workspace(), fake_cloud, trust_env)
    in_doubt_run(ws, fake_cloud, budget=patience(2))
    assert fake_cloud.written < 64 * 2**20  # not the 800 MB offered
    in_doubt = str(parse_mail(fake_cloud.requests[0]).message["Message-ID"])
    again = ws.apply()
    assert "3 email(s) delivered" in again.stdout
    copies = copies_by_message_id([parse_mail(data) for data in fake_cloud.requests])
    assert copies[in_doubt] == 2 and sorted(copies.values()) == [1, 1, 2]


def test_503_is_throttling_only_with_retry_after(
    new_workspace: NewWorkspace, fake_cloud: FakeCloud, trust_env: dict[str, str]
) -> None:
    """Graph documents 503 with Retry-After as throttling (the request was not processed):
    waited out and tried again; without it, nothing says the message was not sent."""
    status, _, busy = _graph_error(503, "ServiceUnavailable")
    fake_cloud.script = [(status, {"Retry-After": "0"}, busy), (status, {}, busy)]
    ws = sending_through_graph(new_workspace(), fake_cloud, trust_env)
    result = ws.apply(expect=1)
    assert_clean_error(result, "in doubt: ", "answered sendMail with 503 ServiceUnavailable")
    assert len(fake_cloud.requests) == 2


@pytest.mark.parametrize(
    "body",
    [
        b"<html><body>Bad gateway</body></html>",
        b'{"error": "not an object"}',
        b"[" * 100_000,
    ],
    ids=["html", "wrong-shape", "deeply-nested"],
)
def test_a_refusal_that_is_not_graphs_json_is_one_line(
    new_workspace: NewWorkspace, fake_cloud: FakeCloud, trust_env: dict[str, str], body: bytes
) -> None:
    head = f"HTTP/1.1 400 Bad Request\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    fake_cloud.script = [raw(head + body)]
    ws = sending_through_graph(new_workspace(), fake_cloud, trust_env)
    result = ws.apply(expect=1)
    assert_clean_error(result, "refused sendMail: 400 Bad Request")
    assert "Applied: acme (serial 1). 2 email(s) delivered" in result.stdout


@pytest.mark.parametrize(
    "url",
    [
        "graph.microsoft.com",
        "ftp://graph.microsoft.com",
        "https://graph.microsoft.com:99999",
        "https://[::1",
        "https://graph.microsoft.com/v1.0",
        "https://graph.microsoft.com?x=1",
        "https://app:s3cr3t-in-url@graph.microsoft.com",
        "http://graph.microsoft.com",
    ],
)
def test_a_graph_url_that_is_not_https_to_a_host_is_refused_before_anything_is_sent(
    new_workspace: NewWorkspace, fake_cloud: FakeCloud, trust_env: dict[str, str], url: str
) -> None:
    """The bearer token and every message (PINs included) travel in the request: never in
    clear text, never to something that is not Graph's root. Mail already queued stays so."""
    ws = sending_through_graph(new_workspace(), fake_cloud, trust_env)
    ws.apply("--allow-new-state", "--max-messages", "1", expect=3)
    result = ws.apply(env={"RECONCILER_GRAPH_URL": url}, expect=1)
    assert_clean_error(result, "RECONCILER_GRAPH_URL")
    assert len(result.stderr.splitlines()) == 1 and "s3cr3t" not in result.output
    assert len(fake_cloud.requests) == 1
    assert ws.apply().code == 0 and len(fake_cloud.messages) == 3


def test_plain_http_is_only_for_a_loopback_graph_and_only_when_asked(
    new_workspace: NewWorkspace,
    fake_cloud: FakeCloud,
    trust_env: dict[str, str],
    plain_graph: str,
) -> None:
    ws = sending_through_graph(new_workspace(), fake_cloud, trust_env)
    refused = ws.apply(env={"RECONCILER_GRAPH_URL": plain_graph}, expect=1)
    assert_clean_error(refused, "is plain http", "unencrypted")
    assert fake_cloud.requests == []
    opt_in = {"RECONCILER_GRAPH_ALLOW_LOOPBACK_HTTP": "true"}
    elsewhere = ws.apply(
        env={"RECONCILER_GRAPH_URL": "http://graph.example.com", **opt_in}, expect=1
    )
    assert_clean_error(elsewhere, "only to a loopback address")
    sent = ws.apply(env={"RECONCILER_GRAPH_URL": plain_graph, **opt_in})
    assert "3 email(s) delivered" in sent.stdout and len(fake_cloud.messages) == 3


def test_a_token_endpoint_quoting_the_secret_has_it_printed_nowhere(
    new_workspace: NewWorkspace, fake_cloud: FakeCloud, trust_env: dict[str, str]
) -> None:
    """azure-identity logs the identity platform's refusal as a warning, which Python would
    print to stderr; our own line quotes its first line. Neither may show the secret."""
    fake_cloud.echo_secret = True
    wrong = "wr0ng-s3cret+/value"
    ws = sending_through_graph(new_workspace(), fake_cloud, trust_env, AZURE_CLIENT_SECRET=wrong)
    result = ws.apply(expect=1)
    assert_clean_error(result, "AADSTS7000215", "Secret sent: ***")
    assert "get_token failed" not in result.output  # the SDK's own log line
    assert wrong not in result.output and "wr0ng-s3cret%2B" not in result.output


def test_a_graph_error_quoting_the_token_has_it_printed_and_kept_nowhere(
    new_workspace: NewWorkspace, fake_cloud: FakeCloud, trust_env: dict[str, str]
) -> None:
    fake_cloud.script = [echo_token(400)]
    ws = sending_through_graph(new_workspace(), fake_cloud, trust_env)
    result = ws.apply(expect=1)
    assert_clean_error(result, "Token not accepted: Bearer ***")
    kept = ws.run("state", "show").stdout
    assert "token-1" not in result.output + kept and "Bearer ***" in kept


def test_sendmail_goes_through_the_proxy_the_environment_names(
    new_workspace: NewWorkspace,
    fake_cloud: FakeCloud,
    trust_env: dict[str, str],
    https_proxy: Proxy,
) -> None:
    """A network that reaches Microsoft only through a proxy: HTTPS_PROXY, with its
    credentials, carries sendMail (TLS to Graph inside the tunnel) as it carries the tokens."""
    ws = sending_through_graph(new_workspace(), fake_cloud, trust_env)
    proxy = https_proxy.url.replace("http://", "http://deploy:pr0xy%40pw@")
    ws.env.update({"HTTPS_PROXY": proxy, "https_proxy": None, "NO_PROXY": None, "no_proxy": None})
    assert "3 email(s) delivered" in ws.apply("--allow-new-state").stdout
    graph = fake_cloud.url.removeprefix("https://")
    credentials = f"Basic {base64.b64encode(b'deploy:pr0xy@pw').decode()}"
    assert len(https_proxy.tunnels) >= 3
    assert set(https_proxy.tunnels) == {(graph, credentials)}
