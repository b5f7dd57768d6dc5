"""The test harness: workspaces (``tests/helpers/workspace.py``) and the fixtures of
``tests/fixtures/`` (servers, ports, state backends).

- ``workspace``: in-process (the default mode: the CLI runs in the test's process, fast),
  against each state backend (``state_location``: SQLite and PostgreSQL);
- ``process_workspace``: the same in real processes, for what needs one: kill -9, a lock held
  against another process, a terminal;
- ``example_workspace``: the shipped example configuration in ``tenants/`` of an in-process
  workspace (commands typed in its folder use the defaults: ``tenants``, ``.reconciler/``);
- ``new_workspace(state=None, *, root=None, mail="", env=None, mode="in-process")``: any other.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.cli import Env
from tests.helpers.tenants import copy_example
from tests.helpers.workspace import Mode, NewWorkspace, Workspace

pytest_plugins = [
    "tests.fixtures.smtp",
    "tests.fixtures.state",
    "tests.fixtures.graph",
    "tests.fixtures.proxy",
    "tests.fixtures.azure_devops",
    "tests.fixtures.forge",
    "tests.fixtures.templates",
]


@pytest.fixture
def new_workspace(tmp_path: Path) -> NewWorkspace:
    def make(
        state: str | None = None,
        *,
        root: Path | None = None,
        mail: str = "",
        env: Env | None = None,
        mode: Mode = "in-process",
    ) -> Workspace:
        return Workspace.create(root or tmp_path, state, mail=mail, env=env, mode=mode)

    return make


@pytest.fixture
def workspace(new_workspace: NewWorkspace, state_location: str) -> Workspace:
    """An in-process workspace on each state backend."""
    return new_workspace(state_location)


@pytest.fixture
def process_workspace(new_workspace: NewWorkspace, state_location: str) -> Workspace:
    """A real-process workspace on each state backend (kill, lock and terminal tests)."""
    return new_workspace(state_location, mode="process")


@pytest.fixture
def example_workspace(new_workspace: NewWorkspace) -> Workspace:
    """An in-process workspace holding the shipped example configuration."""
    ws = new_workspace()
    copy_example(ws.config)
    return ws
