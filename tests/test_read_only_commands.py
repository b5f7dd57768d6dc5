"""Commands that only read the state never create it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import main

EXAMPLE = Path(__file__).resolve().parent.parent / "tenants"


@pytest.mark.parametrize("command", [["plan"], ["plan", "--format", "json"], ["state", "show"],
                                     ["history"], ["validate"]])
def test_reading_commands_do_not_create_the_state_database(tmp_path: Path, command: list[str]):
    shutil.copytree(EXAMPLE, tmp_path / "tenants")
    state = tmp_path / "state" / "state.db"
    result = CliRunner().invoke(main, [*command, "--config", str(tmp_path / "tenants"),
                                       "--state", str(state)])
    assert result.exit_code == 0, result.output
    assert not state.exists() and not state.parent.exists()


def test_plan_before_any_state_lists_every_user_as_new(tmp_path: Path):
    shutil.copytree(EXAMPLE, tmp_path / "tenants")
    result = CliRunner().invoke(main, ["plan", "--config", str(tmp_path / "tenants"),
                                       "--state", str(tmp_path / "state.db")])
    assert result.exit_code == 0, result.output
    assert "no applied state yet" in result.output
    assert "+ alice@contoso.com" in result.output
