"""A broken email template stops apply before anything is written or sent."""

from __future__ import annotations

import shutil
from pathlib import Path

from reconciler.resources import default_templates
from tests.helpers.workspace import Workspace


def test_apply_refuses_a_broken_template_with_its_place_and_writes_nothing(
    example_workspace: Workspace,
) -> None:
    ws = example_workspace
    templates = ws.root / "templates"
    shutil.copytree(default_templates(), templates)
    (templates / "en" / "enabled.txt").write_text("Hello {{ display_name }\n", encoding="utf-8")
    result = ws.run("apply", "--auto-approve", "--templates", str(templates))
    assert result.code == 1
    assert "Traceback" not in result.output
    assert "enabled.txt:1:" in result.stderr
    assert not Path(ws.state).exists() and not ws.maildir.exists()
