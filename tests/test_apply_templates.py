"""Apply renders the templates of the emails it sends, and only those: a broken one stops it
before anything is written or sent; a broken one it does not need stays `validate`'s finding."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reconciler.emails.context import TEMPLATE_TYPES
from reconciler.emails.templates import PARTS
from reconciler.resources import default_templates
from tests.helpers.tenants import enabled_users, tenant_doc, user_doc, write_tenant
from tests.helpers.workspace import Workspace

BROKEN = "Hello {{ display_name }\n"
EMAIL_PARTS = tuple(f"{kind}.{part}" for kind in TEMPLATE_TYPES for part in PARTS)


def copied_templates(ws: Workspace) -> Path:
    templates = ws.root / "templates"
    shutil.copytree(default_templates(), templates)
    return templates


@pytest.mark.parametrize("saved", [False, True], ids=["live", "saved-plan"])
def test_apply_refuses_a_broken_template_with_its_place_and_writes_nothing(
    example_workspace: Workspace, saved: bool
) -> None:
    """A first apply: checked before the lock would create the state."""
    ws = example_workspace
    if saved:
        assert ws.run("plan", "--out", "plan.json").code == 0
    templates = copied_templates(ws)
    (templates / "en" / "enabled.txt").write_text(BROKEN, encoding="utf-8")
    plan = ["plan.json"] if saved else ["--auto-approve"]
    result = ws.run("apply", *plan, "--templates", str(templates))
    assert result.code == 1
    assert "Traceback" not in result.output
    assert "enabled.txt:1:" in result.stderr
    assert not Path(ws.state).exists() and not ws.maildir.exists()


def test_a_broken_template_of_an_email_an_applied_tenant_would_send_refuses_the_apply(
    workspace: Workspace,
) -> None:
    """Checked under the lock, against the plan of the state: the French `details-changed`
    that one user would get is broken, so nothing is committed and nothing is sent."""
    ws = workspace
    users = {
        "alice@contoso.com": user_doc("1000001", locale="fr"),
        "bob@contoso.com": user_doc("1000002"),
    }
    write_tenant(ws.config, "contoso", tenant_doc(), users)
    ws.apply()
    templates = copied_templates(ws)
    (templates / "fr" / "details-changed.html").write_text(BROKEN, encoding="utf-8")
    users["alice@contoso.com"]["conference_id"] = "1000009"
    write_tenant(ws.config, "contoso", tenant_doc(), users)
    state, mails = ws.state_show(), ws.mails()

    result = ws.run("apply", "--auto-approve", "--templates", str(templates))

    assert result.code == 1 and "Traceback" not in result.output, str(result)
    assert "templates/fr/details-changed.html:1:" in result.stderr, str(result)
    assert ws.state_show() == state and ws.mails() == mails


def test_apply_renders_only_the_templates_of_the_emails_it_sends(workspace: Workspace) -> None:
    """Every German template and every `disabled` template is broken: an apply that sends
    English `enabled` emails goes through, and one that sends nothing renders nothing, while
    `validate` still reports every broken file."""
    ws = workspace
    templates = copied_templates(ws)
    german = [p for p in (templates / "de").iterdir() if p.name.endswith(EMAIL_PARTS)]
    broken = [*german, *templates.glob("*/disabled.*")]
    for path in broken:
        path.write_text(BROKEN, encoding="utf-8")
    write_tenant(ws.config, "contoso", tenant_doc(), enabled_users(3))

    first = ws.run("apply", "--auto-approve", "--templates", str(templates))
    again = ws.run("apply", "--auto-approve", "--templates", str(templates))
    validate = ws.run("validate", "--templates", str(templates))

    assert first.code == 0 and "3 email(s) delivered" in first.stdout, str(first)
    assert [m.type for m in ws.mails()] == ["enabled"] * 3
    assert again.code == 0 and "nothing to change" in again.stdout, str(again)
    assert validate.code == 1
    reported = {line.split(":", 1)[0] for line in validate.stderr.splitlines()}
    assert {str(p.relative_to(ws.root)) for p in broken} <= reported, validate.stderr


def test_apply_refuses_a_templates_folder_that_does_not_exist(
    example_workspace: Workspace,
) -> None:
    """Even when nothing would be sent: a mistyped --templates is said, and nothing changes."""
    ws = example_workspace
    ws.apply("--allow-new-state")
    before = ws.snapshot()
    result = ws.run("apply", "--auto-approve", "--templates", "nowhere")
    assert result.code == 1 and "Traceback" not in result.output
    assert "nowhere:1:1: templates folder not found" in result.stderr, str(result)
    assert ws.snapshot() == before
