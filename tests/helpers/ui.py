"""A user interface for the flows called without the CLI (``run_apply(manager, ui, ...)``): it
shows nothing, says nothing and approves every plan."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from reconciler.plan import Plan


class SilentUI:
    def show_plan(self, plan: Plan) -> None:
        """Nothing to show in a test."""

    def confirm(self, plan: Plan) -> bool:
        return True

    def echo(self, message: str, err: bool = False) -> None:
        """Nothing to say in a test."""

    @contextlib.contextmanager
    def progress(self, total: int, label: str) -> Iterator[Callable[[object], None]]:
        yield lambda _message: None
