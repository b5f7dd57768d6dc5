"""Commands that only read the state never create it, nor write it: before it exists they read an
``EmptyState``, which has no method that writes."""

from __future__ import annotations

from inspect import signature
from pathlib import Path

import pytest

from reconciler.manager import Manager, Options
from reconciler.state import (
    AppliedState,
    Archive,
    EmptyState,
    FileIndex,
    Locks,
    Outbox,
    ReadOnlyState,
    StateStore,
    open_store,
)
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


def _methods(*protocols: type) -> set[str]:
    return {
        name
        for protocol in protocols
        for part in protocol.__mro__
        for name, member in vars(part).items()
        if callable(member) and not name.startswith("_")
    } - {"register"}


def test_an_empty_state_has_the_reads_of_read_only_commands_and_no_other_method() -> None:
    """No method that writes (nor one those commands never call) answers anything: calling it
    is an AttributeError, and mypy refuses an EmptyState where a store that writes is taken."""
    reads = _methods(ReadOnlyState)
    assert reads == {"tenants", "load", "history", "messages", "waves", "close"}
    assert _methods(EmptyState) == reads
    empty = EmptyState()
    for name in sorted(_methods(AppliedState, Locks, Outbox, FileIndex, Archive) - reads):
        with pytest.raises(AttributeError):
            getattr(empty, name)
    for name in reads:  # each read takes what a store's own does
        assert signature(getattr(EmptyState, name)) == signature(getattr(StateStore, name))


def test_an_empty_state_reads_as_a_new_empty_store(tmp_path: Path) -> None:
    empty, store = EmptyState(), open_store(str(tmp_path / "state.db"))
    try:
        for state in (empty, store):
            assert state.tenants() == []
            assert state.load("contoso") is None
            assert state.load("contoso", users=False) is None
            assert state.history() == [] and state.history("contoso") == []
            assert list(state.messages("contoso")) == []
            assert state.waves("contoso") == []
    finally:
        store.close()
        empty.close()


def test_a_read_only_manager_reads_a_missing_state_and_cannot_write_it(tmp_path: Path) -> None:
    state = tmp_path / "fresh" / "state.db"
    manager = Manager(Options(state=str(state)), read_only=True)
    try:
        assert isinstance(manager.reader, EmptyState) and manager.reader.tenants() == []
        with pytest.raises(RuntimeError, match="a read-only command never writes the state"):
            manager.store  # noqa: B018 (the property is the behaviour)
    finally:
        manager.close()
    assert not state.exists() and not state.parent.exists()
