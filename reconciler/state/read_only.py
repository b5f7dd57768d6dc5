"""What the commands that only read the state take, and the state they read before an SQLite
file exists: reading must never create one."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator
from typing import Any, Protocol

from reconciler.messages import Wave
from reconciler.model import Applied


class ReadOnlyState(Protocol):
    """What the commands that only read the state (plan, preview, drift, state show, state
    queue, history) ask of it: the reads of :class:`AppliedState` and :class:`Outbox` they make.
    Every :class:`StateStore` is one; :class:`EmptyState` is one and nothing more, so typed as
    this those commands cannot call what it lacks (mypy says so), and a read they start making
    is added here, and so to :class:`EmptyState` (every method abstract: no default to inherit).
    """

    @abstractmethod
    def tenants(self) -> list[str]: ...

    @abstractmethod
    def load(self, tenant: str, *, users: bool = True) -> Applied | None: ...

    @abstractmethod
    def history(self, tenant: str | None = None) -> list[dict[str, Any]]: ...

    @abstractmethod
    def messages(self, tenant: str) -> Iterator[dict[str, Any]]: ...

    @abstractmethod
    def waves(self, tenant: str) -> list[Wave]: ...

    @abstractmethod
    def close(self) -> None: ...


class EmptyState(ReadOnlyState):
    """The state of a SQLite file that does not exist yet, for commands that only read (plan,
    preview, drift, state show, state queue, history): they must not create the database as a
    side effect.

    A :class:`ReadOnlyState` and nothing more: each read answers as an empty store does (no
    tenant, no applied state, no history, no message, no apply that wrote any), and it has no
    write method at all. So calling one is an AttributeError, and mypy refuses an EmptyState
    wherever a :class:`StateStore`, or a part of it that writes, is taken (``open_store`` types
    it so). Deliberately not a ``StateStore`` subclass, and answering no name it does not
    define, so a method added to the interface later can never silently be a no-op here.
    """

    def tenants(self) -> list[str]:
        return []

    def load(self, tenant: str, *, users: bool = True) -> Applied | None:
        return None

    def history(self, tenant: str | None = None) -> list[dict[str, Any]]:
        return []

    def messages(self, tenant: str) -> Iterator[dict[str, Any]]:
        return iter(())

    def waves(self, tenant: str) -> list[Wave]:
        return []

    def close(self) -> None:
        """Nothing to release."""
