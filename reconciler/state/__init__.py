"""State backends behind one interface; ``open_store`` picks one from ``--state``."""

from __future__ import annotations

from pathlib import Path

from reconciler.state.base import (
    Applied,
    Commit,
    NewMessage,
    QueuedMessage,
    StaleState,
    StateLocked,
    StateStore,
)

__all__ = ["Applied", "Commit", "NewMessage", "QueuedMessage", "StaleState", "StateLocked",
           "StateStore", "open_store"]


def open_store(location: str) -> StateStore:
    """A state store for a path (SQLite, the embedded default) or a database URL."""
    from reconciler.state.sqlite import SQLiteStore

    return SQLiteStore(Path(location))
