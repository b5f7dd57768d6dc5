"""High Volume Email (HVE) for Microsoft 365 as a delivery target: its documented SMTP endpoint
and port, STARTTLS, and AUTH XOAUTH2 as the HVE account with the app's token (or the account's
own password) — the `--mail` URLs docs/ROLLOUT.md gives, against a loopback server shaped like
the endpoint."""

from __future__ import annotations

import pytest

from reconciler.delivery import SMTPTransport, open_transport
from tests.fixtures.graph import CLIENT_SECRET, HVE_ACCOUNT, FakeCloud
from tests.fixtures.smtp import SMTPTestServer
from tests.helpers.tenants import enabled_users, tenant_doc, write_tenant
from tests.helpers.workspace import NewWorkspace

ENCODED = HVE_ACCOUNT.replace("@", "%40")


@pytest.mark.parametrize(
    ("url", "env"),
    [
        (f"smtp+starttls://{ENCODED}@smtp.hve.mx.microsoft?auth=xoauth2", {}),
        (
            f"smtp+starttls://{ENCODED}@smtp.hve.mx.microsoft:587",
            {"RECONCILER_SMTP_PASSWORD": "pw"},
        ),
    ],
    ids=["oauth", "hve-account-password"],
)
def test_the_documented_hve_urls_reach_its_endpoint_with_starttls_on_587(
    url: str, env: dict[str, str]
) -> None:
    transport = open_transport(url, default_from=HVE_ACCOUNT, env=env)
    assert isinstance(transport, SMTPTransport)
    assert (transport.host, transport.port, transport.mode) == (
        "smtp.hve.mx.microsoft",
        587,
        "starttls",
    )
    assert transport.username == HVE_ACCOUNT
    assert transport.description == f"smtp+starttls://{ENCODED}@smtp.hve.mx.microsoft:587"


def test_hve_with_oauth_sends_as_the_hve_account_with_exchange_onlines_scope(
    new_workspace: NewWorkspace,
    fake_cloud: FakeCloud,
    trust_env: dict[str, str],
    hve_smtp_server: SMTPTestServer,
) -> None:
    server = hve_smtp_server
    ws = new_workspace(mail=f"smtp+starttls://{ENCODED}@127.0.0.1:{server.port}?auth=xoauth2")
    ws.env.update({**fake_cloud.env(), **trust_env})
    write_tenant(ws.config, "contoso", tenant_doc(), enabled_users(3))
    result = ws.apply("--default-from", f"Conferencing <{HVE_ACCOUNT}>")
    assert "3 email(s) delivered" in result.stdout
    assert server.logins == [HVE_ACCOUNT]  # type: ignore[attr-defined]
    assert [r.mail_from for r in server.received] == [HVE_ACCOUNT] * 3
    assert {str(m["From"]) for m in server.messages} == {f"Conferencing <{HVE_ACCOUNT}>"}
    assert fake_cloud.token_requests[0]["scope"] == ["https://outlook.office365.com/.default"]
    assert fake_cloud.token_requests[0]["grant_type"] == ["client_credentials"]
    assert len(fake_cloud.token_requests) == 1, "one token for the whole run"
    assert "token-" not in result.output and CLIENT_SECRET not in result.output
