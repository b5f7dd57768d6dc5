"""The Jinja2 sandbox email templates render in.

Templates come from pull requests (docs/SECURITY.md): Jinja2's ImmutableSandboxedEnvironment keeps
them from running code; this one also has no globals and only the filters templates need.
"""

from __future__ import annotations

from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

FILTERS = (
    "capitalize",
    "center",
    "count",
    "d",
    "default",
    "e",
    "escape",
    "first",
    "indent",
    "int",
    "join",
    "last",
    "length",
    "lower",
    "replace",
    "string",
    "title",
    "trim",
    "truncate",
    "upper",
    "urlencode",
    "wordwrap",
)
"""The Jinja2 filters templates may use (README "Email templates"); the others are removed."""
MAX_RENDERED_CHARS = 1024 * 1024
"""An email part longer than this is a runaway loop, not a message."""


class Sandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox with no globals (``range``, ``cycler``, ``lipsum``...), only
    :data:`FILTERS`, and no ``**`` or repetition of text and lists, which a few characters of
    template could turn into gigabytes."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.globals.clear()
        self.filters = {name: self.filters[name] for name in FILTERS}

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "**" or not all(isinstance(v, int | float) for v in (left, right)):
            raise SecurityError(f"the {operator_!r} operator is only for numbers here")
        return super().call_binop(context, operator_, left, right)
