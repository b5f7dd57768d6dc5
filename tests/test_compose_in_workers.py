"""An apply of many emails composes them in worker processes: the same messages, in the same
order, each once; a template that fails on one user's values stops it before anything is
committed or sent, as in one process."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from reconciler.emails import plan_messages
from reconciler.resources import default_templates
from tests.helpers.mail import Mail
from tests.helpers.tenants import enabled_users, tenant_doc, user_doc, write_tenant
from tests.helpers.workspace import Workspace

USERS = 12


@pytest.fixture
def in_workers(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Two workers from a handful of emails on (a chunk of 5), so a small tenant uses them;
    the number of worker pools started."""
    started: list[int] = []
    real = plan_messages._in_workers

    def counted(*args: Any) -> Any:
        started.append(args[-1])
        return real(*args)

    monkeypatch.setattr(plan_messages, "PARALLEL_FROM", 5)
    monkeypatch.setattr(plan_messages, "CHUNK", 5)
    monkeypatch.setattr(plan_messages, "cores", lambda: 2)
    monkeypatch.setattr(plan_messages, "_in_workers", counted)
    return started


def shape(mail: Mail) -> tuple[str, ...]:
    """A message without what differs from one apply to the next: its date, PIN, MIME
    boundaries and Message-ID (the lineage is new each time)."""
    headers = tuple(
        f"{k}: {v}"
        for k, v in mail.message.items()
        if k not in ("Date", "Message-ID", "Content-Type")
    )
    parts = (mail.part("plain"), mail.part("html"))
    return (*headers, *(re.sub(r"\b\d{5}\b", "PIN", p) for p in parts))


def test_workers_compose_the_same_messages_in_order_each_once(
    tmp_path: Path, in_workers: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    composed = []
    for run in ("in-workers", "in-one-process"):
        ws = Workspace.create(tmp_path / run)
        write_tenant(ws.config, "contoso", tenant_doc(), enabled_users(USERS))
        if run == "in-one-process":
            monkeypatch.setattr(plan_messages, "PARALLEL_FROM", 10**9)
        ws.apply("--allow-new-state")
        mails = ws.mails()
        assert [m.to for m in mails] == sorted(enabled_users(USERS)), "in the plan's order"
        assert len({m.message_id for m in mails}) == USERS and all(len(m.pins) == 1 for m in mails)
        composed.append([shape(m) for m in mails])
    assert composed[0] == composed[1]
    assert in_workers == [2], "the first apply used two workers, the second none"


def test_a_template_failing_in_a_worker_refuses_the_apply_and_writes_nothing(
    workspace: Workspace, in_workers: list[int]
) -> None:
    """The templates pass their check with sample values but divide by zero for a display name
    of five letters: the worker's error reaches the operator, located, and the batches already
    written are discarded."""
    ws = workspace
    templates = ws.root / "templates"
    shutil.copytree(default_templates(), templates)
    (templates / "en" / "enabled.subject.txt").write_text(
        "{% if display_name %}{{ 1 // (display_name|length - 5) }}{% endif %}Welcome\n",
        encoding="utf-8",
    )
    users = enabled_users(USERS)
    users["zed@contoso.com"] = user_doc("7999999", display_name="Bobby")
    write_tenant(ws.config, "contoso", tenant_doc(), users)
    result = ws.run("apply", "--auto-approve", "--allow-new-state", "--templates", str(templates))
    assert result.code == 1 and "Traceback" not in result.output, str(result)
    assert "templates/en/enabled.subject.txt:1:" in result.stderr, str(result)
    assert in_workers == [2]
    assert ws.state_show()["tenants"] == [] and ws.mails() == []
    shutil.rmtree(templates)
    again = ws.run("apply", "--auto-approve", "--allow-new-state")  # the shipped templates
    assert again.code == 0, str(again)
    assert len(ws.mails()) == USERS + 1 and len({m.message_id for m in ws.mails()}) == USERS + 1
