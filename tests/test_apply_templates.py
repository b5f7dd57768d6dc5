"""A broken email template stops apply before anything is written or sent."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner

from reconciler.cli import main
from reconciler.resources import default_templates

EXAMPLE = Path(__file__).resolve().parent.parent / "tenants"


def test_apply_refuses_a_broken_template_with_its_place_and_writes_nothing(tmp_path: Path):
    shutil.copytree(EXAMPLE, tmp_path / "tenants")
    templates = tmp_path / "templates"
    shutil.copytree(default_templates(), templates)
    (templates / "en" / "enabled.txt").write_text("Hello {{ display_name }\n", encoding="utf-8")
    state, mail = tmp_path / "state" / "state.db", tmp_path / "mail"
    result = CliRunner().invoke(main, [
        "apply", "--auto-approve", "--config", str(tmp_path / "tenants"), "--state", str(state),
        "--mail", f"maildir:{mail}", "--templates", str(templates)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "enabled.txt:1:" in result.stderr
    assert not state.exists() and not mail.exists()
