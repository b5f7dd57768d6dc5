"""Commands that only read the state never create it."""

from __future__ import annotations

import pytest

from tests.helpers.workspace import Workspace, with_options


@pytest.mark.parametrize(
    "command",
    [
        ["plan"],
        ["plan", "--format", "json"],
        ["state", "show"],
        ["state", "queue"],
        ["history"],
        ["validate"],
    ],
)
def test_reading_commands_do_not_create_the_state_database(
    example_workspace: Workspace, command: list[str]
) -> None:
    state = example_workspace.root / "fresh" / "state.db"  # in a folder that does not exist
    result = example_workspace.cli(*with_options(command, config="tenants", state=str(state)))
    assert result.code == 0, str(result)
    assert not state.exists() and not state.parent.exists()


def test_plan_before_any_state_lists_every_user_as_new(example_workspace: Workspace) -> None:
    result = example_workspace.cli(
        "plan", "--config", "tenants", "--state", str(example_workspace.root / "state.db")
    )
    assert result.code == 0, str(result)
    assert "no applied state yet" in result.output
    assert "+ alice@contoso.com" in result.output
