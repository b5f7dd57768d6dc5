"""How much a template may build: the size of a value, measured without building its text; the
cap on one value or output, :data:`MAX_RENDERED_CHARS`; and the budget of one render,
:data:`MAX_BUILT` (:mod:`reconciler.emails.sandbox` says where a render is held to them)."""

from __future__ import annotations

import itertools
from collections.abc import (
    ItemsView,
    Iterable,
    Iterator,
    KeysView,
    Mapping,
    ValuesView,
)
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Final

MAX_RENDERED_CHARS: Final = 1024 * 1024
"""The most an email part, or any value a template builds, may hold: past it, a template is
running away (a loop, a width, a repetition), not writing a message."""
MAX_BUILT: Final = 8 * MAX_RENDERED_CHARS
"""All that one render of one email part may build and write, in the units of :func:`size`."""
PIECE: Final = 16
"""What an element of a list or a piece of output costs besides its text: the object holding
it, in about the memory of 16 characters."""


class TooLarge(Exception):
    """A value, or the output of a template, block or macro, past :data:`MAX_RENDERED_CHARS`."""


class OverBudget(Exception):
    """A render that built and wrote more than :data:`MAX_BUILT` in all."""


def size(value: Any, limit: int = MAX_RENDERED_CHARS) -> int:
    """About how long ``value`` is as text, without building the text: the characters of a
    string, the digits of a number, and for a list or mapping the size of each element plus
    :data:`PIECE`. Counting stops once past ``limit``, so a list of a million references to
    one long string is measured in a few steps, not printed.

    Objects a template cannot build (phone numbers, macros, undefined values) count nothing.
    """
    if isinstance(value, str):
        return len(value)
    if isinstance(value, int):
        return value.bit_length() // 3 + 1
    if isinstance(value, float):
        return 24
    items: Iterable[Any]
    if isinstance(value, Mapping):
        items = itertools.chain.from_iterable(value.items())
    elif isinstance(value, list | tuple | set | frozenset | KeysView | ValuesView | ItemsView):
        items = value
    else:
        return 0
    total = 0
    for item in items:
        total += PIECE + size(item, limit - total)
        if total > limit:
            break
    return total


class _Budget:
    def __init__(self) -> None:
        self.left = MAX_BUILT


_BUDGET: ContextVar[_Budget] = ContextVar("_BUDGET")


@contextmanager
def render_budget() -> Iterator[None]:
    """Count what is built and written while rendering one email part against
    :data:`MAX_BUILT`. Outside one nothing is counted: Jinja2 folds constant expressions while
    compiling, and those come from the template's source, which is bounded."""
    token = _BUDGET.set(_Budget())
    try:
        yield
    finally:
        _BUDGET.reset(token)


def check(estimate: int) -> None:
    if estimate > MAX_RENDERED_CHARS:
        raise TooLarge


def _spend(amount: int) -> None:
    budget = _BUDGET.get(None)
    if budget is not None:
        budget.left -= amount
        if budget.left < 0:
            raise OverBudget


def built(value: Any) -> Any:
    """``value``, once it is known to be small enough and paid for."""
    amount = size(value)
    check(amount)
    _spend(amount)
    return value


def written(total: int, piece: Any) -> int:
    """The output of one template, block or macro with ``piece`` added: checked and paid for."""
    amount = size(piece) + PIECE
    check(total + amount)
    _spend(amount)
    return total + amount
