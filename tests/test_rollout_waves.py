"""A large first rollout sent in daily portions: each scheduled run delivers one wave of the queue
and exits 3 while mail remains, `state queue` shows how far it got, and nothing is lost or sent
twice — through the real CLI, a real SMTP server and each state backend."""

from __future__ import annotations

import json
from typing import Any

from tests.fixtures.smtp import SMTPTestServer
from tests.helpers.patience import patience
from tests.helpers.tenants import enabled_users, tenant_doc, write_tenant
from tests.helpers.workspace import Workspace, state_file
from tests.test_apply_smtp import sending_to


def queue(ws: Workspace, *extra: str) -> dict[str, Any]:
    result = ws.run("state", "queue", "--format", "json", *extra)
    assert result.code == 0, str(result)
    tenants: list[dict[str, Any]] = json.loads(result.stdout)["tenants"]
    return {t["name"]: t for t in tenants}


def test_a_queue_of_2000_goes_out_in_four_scheduled_waves_of_500(
    workspace: Workspace, smtp_server: SMTPTestServer
) -> None:
    ws = sending_to(workspace, smtp_server.url)
    users = enabled_users(2000)
    write_tenant(ws.config, "contoso", tenant_doc(), users)

    codes, left = [], []
    for _ in range(4):  # the pipeline's scheduled run, unchanged each time
        result = ws.run(
            "apply",
            "--auto-approve",
            "--allow-new-state",
            "--max-messages",
            "500",
            timeout=patience(300),
        )
        codes.append(result.code)
        left.append(queue(ws)["contoso"]["queued"])
        waiting = ws.run("state", "queue", "--detailed-exitcode")
        assert waiting.code == (2 if left[-1] else 0), str(waiting)

    assert codes == [3, 3, 3, 0]
    assert left == [1500, 1000, 500, 0]
    sent = smtp_server.headers
    ids = [m["Message-ID"] for m in sent]
    assert len(ids) == len(set(ids)) == 2000, "nothing sent twice"
    assert {m["To"].addresses[0].addr_spec for m in sent} == set(users)
    done = queue(ws)["contoso"]
    assert (done["delivered"], done["failed"], done["queued_since"]) == (2000, 0, None)
    assert [(a["serial"], a["delivered"]) for a in done["applies"]] == [(1, 2000)]


def test_the_queue_counts_failed_and_suppressed_mail_and_shows_no_address(
    workspace: Workspace, smtp_server: SMTPTestServer
) -> None:
    ws = sending_to(workspace, smtp_server.url)
    smtp_server.reject_recipient("u001@contoso.com")
    write_tenant(ws.config, "contoso", tenant_doc(), enabled_users(3))
    write_tenant(ws.config, "fabrikam", tenant_doc(send=False), enabled_users(2, domain="f.com"))
    ws.apply(expect=1)  # one refused for good

    progress = queue(ws)
    assert {
        n: (t["queued"], t["delivered"], t["failed"], t["suppressed"]) for n, t in progress.items()
    } == {
        "contoso": (0, 2, 1, 0),
        "fabrikam": (0, 0, 0, 2),
    }
    assert progress["contoso"]["last_delivered"] is not None
    shown = ws.run("state", "queue")
    assert shown.stdout.splitlines()[0].startswith("contoso: 0 queued, 2 delivered (last ")
    assert (
        "  serial 1 (written " in shown.stdout
        and ": 0 queued, 2 delivered, 1 failed" in shown.stdout
    )
    assert "fabrikam: 0 queued, 0 delivered, 0 failed, 2 suppressed" in shown.stdout
    everything = ws.run("state", "queue", "--format", "json").stdout + shown.stdout
    assert "@" not in everything, "counts and times only: no address"
    only = queue(ws, "--tenant", "fabrikam")
    assert list(only) == ["fabrikam"]


def test_a_state_that_does_not_exist_has_no_queue_and_is_not_created(
    workspace: Workspace,
) -> None:
    result = workspace.run("state", "queue", "--detailed-exitcode")
    assert (result.code, result.stdout) == (0, "No tenant in this state.\n")
    assert workspace.run("state", "queue", "--format", "json").stdout == '{\n  "tenants": []\n}\n'
    file = state_file(workspace.state)
    assert file is None or not file.exists()
