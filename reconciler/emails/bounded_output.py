"""What a template, block, macro or captured block writes, held to the limits of
:mod:`reconciler.emails.render_limits` piece by piece as it is written: Jinja2 collects it in
lists and generators the sandbox does not see."""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any, cast

from jinja2 import Template
from jinja2.runtime import Context

from reconciler.emails.render_limits import OverBudget, TooLarge, written


class Capture(list[Any]):
    """What a macro, ``{% call %}``, ``{% filter %}`` or ``{% set %}`` block writes before it
    becomes one value (Jinja2 collects it in a list, then joins it)."""

    def __init__(self) -> None:
        super().__init__()
        self._size = 0

    def append(self, piece: Any) -> None:
        self._size = written(self._size, piece)
        super().append(piece)

    def extend(self, pieces: Iterable[Any]) -> None:
        for piece in pieces:
            self.append(piece)


def _bounded_output(
    render: Callable[[Context], Iterator[str]],
) -> Callable[[Context], Iterator[str]]:
    """A template's or block's render function whose output is bounded like a value: what
    ``self.heading()``, ``super()`` and ``{% import %}`` collect, and the email part itself.
    The error is raised inside the template, at the line that wrote past the limit."""

    @functools.wraps(render)
    def bounded(context: Context) -> Iterator[str]:
        stream = cast(Generator[str, None, None], render(context))  # compiled as a generator
        total = 0
        for piece in stream:
            try:
                total = written(total, piece)
                yield piece
            except (TooLarge, OverBudget) as error:  # here, or in a template it writes into
                stream.throw(error)

    return bounded


class BoundedTemplate(Template):
    """A template whose render function and blocks are :func:`_bounded_output`."""

    @classmethod
    def from_code(
        cls,
        environment: Any,
        code: Any,
        globals: Any,
        uptodate: Callable[[], bool] | None = None,
    ) -> Template:
        template = super().from_code(environment, code, globals, uptodate)
        template.root_render_func = _bounded_output(template.root_render_func)
        template.blocks = {name: _bounded_output(f) for name, f in template.blocks.items()}
        return template
