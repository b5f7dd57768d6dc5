"""The Jinja2 sandbox email templates render in, and what it lets a template build.

Templates come from pull requests (docs/SECURITY.md). Jinja2's ImmutableSandboxedEnvironment
keeps them from running code, but not from asking for memory: ``""|center(500000000)``,
``"%500000000s" % upn`` or 24 times ``{% set a = a ~ a %}`` each build hundreds of megabytes
that are never written out, so the cap on an email part does not see them. Here a template may
use only :data:`FILTERS` and the methods of :data:`_METHODS`, and a render is bounded at the
places where a template makes something:

- no value a template builds may be larger than :data:`MAX_RENDERED_CHARS`, the cap of an email
  part: text, a list or a number, measured by :func:`size` without building its text. Where the
  size of a result depends on a number or a value the template chose (a width, a count, a
  separator, the operands of ``~`` or ``+``), it is checked before anything is built; the other
  operations build at most a few times their input, which is checked afterwards;
- what a template, block, macro or ``{% set %}`` block writes is bounded the same way, and each
  piece of it counts :data:`_PIECE` more, so a loop writing one character at a time cannot fill
  memory with small objects instead;
- all that one render builds and writes counts against :data:`MAX_BUILT`, so a template cannot
  keep thousands of values of the largest size alive either.

``*`` and ``%`` work on numbers only, ``**`` not at all: repeating text or formatting it with a
width is how a few characters ask for gigabytes.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import re
from collections.abc import (
    Callable,
    Generator,
    ItemsView,
    Iterable,
    Iterator,
    KeysView,
    Mapping,
    ValuesView,
)
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Final, cast

from jinja2 import Template, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.filters import make_attrgetter
from jinja2.runtime import (
    BlockReference,
    Context,
    LoopContext,
    Macro,
    Undefined,
    markup_join,
    str_join,
)
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment, SecurityError
from markupsafe import Markup

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
MAX_RENDERED_CHARS: Final = 1024 * 1024
"""The most an email part, or any value a template builds, may hold: past it, a template is
running away (a loop, a width, a repetition), not writing a message."""
MAX_BUILT: Final = 8 * MAX_RENDERED_CHARS
"""All that one render of one email part may build and write, in the units of :func:`size`."""
_PIECE: Final = 16
"""What an element of a list or a piece of output costs besides its text: the object holding
it, in about the memory of 16 characters."""


class TooLarge(Exception):
    """A value, or the output of a template, block or macro, past :data:`MAX_RENDERED_CHARS`."""


class OverBudget(Exception):
    """A render that built and wrote more than :data:`MAX_BUILT` in all."""


def size(value: Any, limit: int = MAX_RENDERED_CHARS) -> int:
    """About how long ``value`` is as text, without building the text: the characters of a
    string, the digits of a number, and for a list or mapping the size of each element plus
    :data:`_PIECE`. Counting stops once past ``limit``, so a list of a million references to
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
        total += _PIECE + size(item, limit - total)
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


def _check(estimate: int) -> None:
    if estimate > MAX_RENDERED_CHARS:
        raise TooLarge


def _spend(amount: int) -> None:
    budget = _BUDGET.get(None)
    if budget is not None:
        budget.left -= amount
        if budget.left < 0:
            raise OverBudget


def _built(value: Any) -> Any:
    """``value``, once it is known to be small enough and paid for."""
    amount = size(value)
    _check(amount)
    _spend(amount)
    return value


def _written(total: int, piece: Any) -> int:
    """The output of one template, block or macro with ``piece`` added: checked and paid for."""
    amount = size(piece) + _PIECE
    _check(total + amount)
    _spend(amount)
    return total + amount


class _Capture(list[Any]):
    """What a macro, ``{% call %}``, ``{% filter %}`` or ``{% set %}`` block writes before it
    becomes one value (Jinja2 collects it in a list, then joins it)."""

    def __init__(self) -> None:
        super().__init__()
        self._size = 0

    def append(self, piece: Any) -> None:
        self._size = _written(self._size, piece)
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
                total = _written(total, piece)
                yield piece
            except (TooLarge, OverBudget) as error:  # here, or in a template it writes into
                stream.throw(error)

    return bounded


class _BoundedTemplate(Template):
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


class _BoundedCodeGenerator(CodeGenerator):
    """Jinja2's compiler, but ``~`` goes through :meth:`Sandbox.join_text` and captured output
    into a :class:`_Capture`: the sandbox intercepts neither on its own."""

    def buffer(self, frame: Frame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.capture()")

    def visit_Getitem(self, node: nodes.Getitem, frame: Frame) -> None:
        """``text[1:]`` as ``environment.getitem(text, slice(1, None, None))``: Jinja2 writes
        slices as Python slicing, past the sandbox, and each one is a copy."""
        if not isinstance(node.arg, nodes.Slice):
            super().visit_Getitem(node, frame)
            return
        self.write("environment.getitem(")
        self.visit(node.node, frame)
        self.write(", slice(")
        for part in (node.arg.start, node.arg.stop, node.arg.step):
            if part is None:
                self.write("None")
            else:
                self.visit(part, frame)
            self.write(", ")
        self.write("))")

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.join_text(context.eval_ctx.autoescape, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


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
    return len(text) + parts * _PIECE


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
_METHODS: tuple[tuple[type | tuple[type, ...], dict[str, _Rule | None]], ...] = (
    (Markup, {**TEXT_METHODS, "striptags": None, "unescape": None}),
    (str, TEXT_METHODS),
    (dict, dict.fromkeys(("get", "items", "keys", "values"))),
    ((list, tuple), dict.fromkeys(("count", "index"))),
    (LoopContext, dict.fromkeys(("cycle", "changed"))),
)
"""The methods templates may call, by the type they belong to (:data:`TEXT_METHODS`); none
changes a value, and any other is refused."""


def _method_rules(method: Any) -> dict[str, _Rule | None]:
    owner = getattr(method, "__self__", None)
    for kind, rules in _METHODS:
        if isinstance(owner, kind):
            return rules
    return {}


@functools.cache
def _text_signature(name: str) -> inspect.Signature:
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


def _check_call(
    args: tuple[Any, ...], kwargs: dict[str, Any], rule: _Rule | None, signature: Any
) -> None:
    """Refuse a filter or method call whose arguments are too large to print (most filters
    make text of them) or whose result ``rule`` sizes past the limit."""
    for value in (*args, *kwargs.values()):
        _check(size(value))
    if rule is not None:
        arguments = signature.bind(*args, **kwargs)
        arguments.apply_defaults()
        _check(rule(arguments.arguments))


def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` checked by :func:`_check_call` with its rule in :data:`_FILTER_RULES`, and
    its result by :func:`_built`."""
    rule = _FILTER_RULES.get(name)
    signature = inspect.signature(function) if rule else None

    @functools.wraps(function)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _check_call(args, kwargs, rule, signature)
        return _built(function(*args, **kwargs))

    return bounded


class Sandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox with no globals (``range``, ``cycler``, ``lipsum``...), only
    :data:`FILTERS` and the methods of :data:`_METHODS`, and every value and output bounded
    (this module's docstring)."""

    intercepted_binops = frozenset(SandboxedEnvironment.default_binop_table)
    code_generator_class = _BoundedCodeGenerator
    template_class = _BoundedTemplate

    def __init__(self, **options: Any):
        super().__init__(finalize=_printable, **options)
        self.globals.clear()
        self.filters = {name: _bounded_filter(name, self.filters[name]) for name in FILTERS}

    def is_safe_callable(self, obj: Any) -> bool:
        """Macros, blocks (``self.heading()``, ``super()``), loops and the listed methods;
        calling an undefined name reports it as undefined."""
        if isinstance(obj, Macro | BlockReference | LoopContext | Undefined):
            return True
        return getattr(obj, "__name__", None) in _method_rules(obj)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        """A macro, block or method, checked by :func:`_check_call` (methods of text with
        their rule in :data:`TEXT_METHODS`) and its result by :func:`_built`."""
        rule = _method_rules(obj).get(getattr(obj, "__name__", ""))
        if rule is None:
            _check_call(args, kwargs, None, None)
        else:
            _check_call((obj.__self__, *args), kwargs, rule, _text_signature(obj.__name__))
        return _built(super().call(context, obj, *args, **kwargs))

    def call_binop(self, context: Context, operator_: str, left: Any, right: Any) -> Any:
        """Every operator: ``*`` and ``%`` on numbers only, ``**`` never, and the operands
        small enough that the result is (``~`` is :meth:`join_text`)."""
        numbers = all(isinstance(v, int | float) for v in (left, right))
        if operator_ == "**" or (operator_ in ("*", "%") and not numbers):
            raise SecurityError(f"the {operator_!r} operator is refused here")
        _check(size(left) + size(right))
        return _built(super().call_binop(context, operator_, left, right))

    def getitem(self, obj: Any, argument: Any) -> Any:
        """``obj[argument]``: a key too large to print is refused (an undefined key's error
        message prints it), and a slice is a copy, paid for."""
        _check(size(argument))
        value = super().getitem(obj, argument)
        return _built(value) if isinstance(argument, slice) else value

    def select_template(self, names: Any, parent: Any = None, globals: Any = None) -> Template:
        """Its error message lists the names: a long list of long texts is refused first."""
        _check(size(names))
        return super().select_template(names, parent, globals)

    def join_text(self, autoescape: bool, values: tuple[Any, ...]) -> str:
        """``a ~ b ~ c``, sized before it is built."""
        _check(size(values))
        return _built((markup_join if autoescape else str_join)(values))

    def capture(self) -> _Capture:
        """A new buffer for captured output (:class:`_BoundedCodeGenerator`)."""
        return _Capture()


def _printable(value: Any) -> Any:
    """Every ``{{ value }}`` is sized before it becomes text: a list literal of a thousand
    references to one long string is small, its text is not."""
    _check(size(value))
    return value
