"""The filters and methods a template may call, each with the rule that sizes its result before
it is built, and the check every call goes through (:mod:`reconciler.emails.sandbox`)."""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Iterable
from typing import Any

from jinja2.filters import make_attrgetter
from jinja2.runtime import LoopContext
from markupsafe import Markup

from reconciler.emails.render_limits import MAX_RENDERED_CHARS, PIECE, built, check, size

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


_Arguments = dict[str, Any]
_Rule = Callable[[_Arguments], int]


def _replaced(text: str, old: str, new: str, count: int | None) -> int:
    found = len(text) + 1 if not old else text.count(old)
    if count is not None and count >= 0:
        found = min(found, count)
    return len(text) + found * max(0, len(new) - len(old))


def _joined(separator: Any, items: Iterable[Any]) -> int:
    total = count = 0
    for item in items:
        count += 1
        total += size(item)
        if total > MAX_RENDERED_CHARS:
            break
    return total + max(0, count - 1) * size(separator)


def _split(text: str, parts: int, maxsplit: int) -> int:
    if maxsplit >= 0:
        parts = min(parts, maxsplit + 1)
    return len(text) + parts * PIECE


def _split_words(a: _Arguments) -> int:
    text, sep = a["self"], a["sep"]
    gaps = sum(1 for _ in _WHITESPACE.finditer(text)) if sep is None else text.count(sep)
    return _split(text, gaps + 1, a["maxsplit"])


_WHITESPACE = re.compile(r"\s+")
_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"
"""What ``str.splitlines`` splits at."""


def _lines(text: str) -> int:
    return sum(map(text.count, _LINE_BREAKS)) + 1


def _split_lines(a: _Arguments) -> int:
    return _split(a["self"], _lines(a["self"]), -1)


def _padded(a: _Arguments) -> int:
    return max(len(a["self"]), a["width"])


TEXT_METHODS: dict[str, _Rule | None] = {
    **dict.fromkeys(
        (
            "capitalize",
            "casefold",
            "count",
            "endswith",
            "find",
            "index",
            "isalnum",
            "isalpha",
            "isascii",
            "isdecimal",
            "isdigit",
            "isidentifier",
            "islower",
            "isnumeric",
            "isprintable",
            "isspace",
            "istitle",
            "isupper",
            "lower",
            "lstrip",
            "partition",
            "removeprefix",
            "removesuffix",
            "rfind",
            "rindex",
            "rpartition",
            "rstrip",
            "startswith",
            "strip",
            "swapcase",
            "title",
            "upper",
        )
    ),
    "center": _padded,
    "ljust": _padded,
    "rjust": _padded,
    "zfill": _padded,
    "expandtabs": lambda a: len(a["self"]) + a["self"].count("\t") * max(0, a["tabsize"]),
    "replace": lambda a: _replaced(a["self"], a["old"], a["new"], a["count"]),
    "join": lambda a: _joined(a["self"], a["iterable"]),
    "split": _split_words,
    "rsplit": _split_words,
    "splitlines": _split_lines,
}
"""The methods of text templates may call: every one of ``str`` but ``format``, ``format_map``
(widths in the format string: ``"{:>500000000}"``), ``encode`` and ``translate`` (with
``maketrans``), each with the rule that sizes its result before it is built when a width, count
or separator decides that size (the others build at most a few times their text)."""
METHODS: tuple[tuple[type | tuple[type, ...], dict[str, _Rule | None]], ...] = (
    (Markup, {**TEXT_METHODS, "striptags": None, "unescape": None}),
    (str, TEXT_METHODS),
    (dict, dict.fromkeys(("get", "items", "keys", "values"))),
    ((list, tuple), dict.fromkeys(("count", "index"))),
    (LoopContext, dict.fromkeys(("cycle", "changed"))),
)
"""The methods templates may call, by the type they belong to (:data:`TEXT_METHODS`); none
changes a value, and any other is refused."""


def method_rules(method: Any) -> dict[str, _Rule | None]:
    owner = getattr(method, "__self__", None)
    for kind, rules in METHODS:
        if isinstance(owner, kind):
            return rules
    return {}


@functools.cache
def text_signature(name: str) -> inspect.Signature:
    return inspect.signature(getattr(str, name))


def _indented(a: _Arguments) -> int:
    text, width = a["s"], a["width"]
    lines = _lines(text) + 1 if isinstance(text, str) else 1
    return size(text) + lines * (len(width) if isinstance(width, str) else width)


def _wrapped(a: _Arguments) -> int:
    text = size(a["s"])
    return text + (text + 1) * size(a["wrapstring"] or "\n")


def _joined_attributes(a: _Arguments) -> int:
    items = a["value"]
    if a["attribute"] is not None:
        items = map(make_attrgetter(a["eval_ctx"].environment, a["attribute"]), items)
    return _joined(a["d"], items)


_FILTER_RULES: dict[str, _Rule] = {
    "center": lambda a: max(size(a["value"]), a["width"]),
    "indent": _indented,
    "join": _joined_attributes,
    "replace": lambda a: _replaced(str(a["s"]), str(a["old"]), str(a["new"]), a["count"]),
    "wordwrap": _wrapped,
}
"""The filters whose result can be much larger than their input, each with the rule that
sizes it before it is built (the others build at most a few times their input)."""


def check_call(
    args: tuple[Any, ...], kwargs: dict[str, Any], rule: _Rule | None, signature: Any
) -> None:
    """Refuse a filter or method call whose arguments are too large to print (most filters
    make text of them) or whose result ``rule`` sizes past the limit."""
    for value in (*args, *kwargs.values()):
        check(size(value))
    if rule is not None:
        arguments = signature.bind(*args, **kwargs)
        arguments.apply_defaults()
        check(rule(arguments.arguments))


def bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` checked by :func:`check_call` with its rule in :data:`_FILTER_RULES`, and
    its result by :func:`built`."""
    rule = _FILTER_RULES.get(name)
    signature = inspect.signature(function) if rule else None

    @functools.wraps(function)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        check_call(args, kwargs, rule, signature)
        return built(function(*args, **kwargs))

    return bounded
