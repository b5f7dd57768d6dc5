"""``reconciler state forget TENANT``: a tenant's applied state removed on purpose, on both
backends — asked for, refused while mail is queued unless dropped, recorded in the history."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.tenants import enabled_users, tenant_doc, write_tenant
from tests.helpers.workspace import NewWorkspace, Workspace


def with_two_tenants(ws: Workspace) -> Workspace:
    write_tenant(ws.config, "acme", tenant_doc(), enabled_users(3, domain="acme.com"))
    write_tenant(ws.config, "other", tenant_doc(), enabled_users(2, domain="other.com"))
    return ws


def test_forget_removes_the_state_keeps_history_and_the_tenant_can_be_adopted_again(
    workspace: Workspace,
) -> None:
    ws = with_two_tenants(workspace)
    ws.apply()
    refused = ws.run("state", "forget", "acme")
    assert refused.code == 1 and "pass --yes" in refused.stderr  # no terminal to ask on

    done = ws.run("state", "forget", "acme", "--yes")
    assert done.code == 0, str(done)
    assert done.stdout.startswith("Forgot acme (serial 1, 3 user(s)); its history stays.")
    assert [t["name"] for t in ws.state_show()["tenants"]] == ["other"]
    history = ws.run("history", "--format", "json", "--tenant", "acme")
    assert '"kind": "apply"' in history.stdout and '"kind": "forget"' in history.stdout

    # the folder is still there: the next plan sees acme as new, import adopts it silently
    plan = ws.run("plan", "--format", "json", "--tenant", "acme").stdout
    assert '"state":{"lineage":null,"serial":0}' in plan
    assert ws.run("import", "--tenant", "acme").code == 0
    ws.apply()
    assert len(ws.mails()) == 5  # the first apply's emails only
    again = ws.run("state", "forget", "nobody", "--yes")
    assert again.code == 1 and "no applied state" in again.stderr


def test_history_tells_the_runs_before_and_after_a_forget_apart(workspace: Workspace) -> None:
    """After a forget the serials start again at 1: each row names its state's lineage."""
    ws = with_two_tenants(workspace)
    ws.apply()
    first = ws.tenant_state("acme")["lineage"]  # type: ignore[index]
    assert ws.run("state", "forget", "acme", "--yes").code == 0
    ws.apply("--tenant", "acme")
    second = ws.tenant_state("acme")["lineage"]  # type: ignore[index]
    assert first != second
    rows = [
        (r["lineage"], r["serial"], r["kind"])
        for r in json.loads(ws.run("history", "--format", "json", "--tenant", "acme").stdout)
    ]
    assert rows == [(first, 1, "apply"), (first, 1, "forget"), (second, 1, "apply")]
    lines = ws.run("history", "--tenant", "acme").stdout.splitlines()
    for line, (lineage, _, kind) in zip(lines, rows, strict=True):
        assert f"  acme  lineage {lineage[:8]} serial 1  {kind}  " in line, lines


def test_forget_refuses_while_mail_is_queued_unless_dropped(
    workspace: Workspace, dead_smtp_url: str
) -> None:
    ws = with_two_tenants(workspace)
    ws.mail = dead_smtp_url
    result = ws.run(
        "apply", "--auto-approve", "--default-from", "noreply@acme.com", "--retry-backoff", "0"
    )
    assert result.code == 1 and "still queued" in result.stderr
    refused = ws.run("state", "forget", "acme", "--yes")
    assert refused.code == 1
    assert (
        "acme: 3 email(s) still queued; run apply to deliver them, or pass --drop-queued"
        in refused.stderr
    )
    assert "acme" in [t["name"] for t in ws.state_show()["tenants"]]
    dropped = ws.run("state", "forget", "acme", "--yes", "--drop-queued")
    assert dropped.code == 0 and "3 queued email(s) dropped" in dropped.stdout, str(dropped)


def test_forget_takes_the_tenant_lock_and_checks_the_name(new_workspace: NewWorkspace) -> None:
    ws = with_two_tenants(new_workspace())
    ws.apply()
    bad = ws.run("state", "forget", "../x", "--yes")
    assert bad.code == 1 and "must be 1-63 lowercase" in bad.stderr
    import fcntl
    import os

    lock = Path(ws.state).with_name("state.db.acme.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        busy = ws.run("state", "forget", "acme", "--yes")
        assert busy.code == 1 and "locked" in busy.stderr
    finally:
        os.close(fd)
    assert ws.run("state", "forget", "acme", "--yes").code == 0
