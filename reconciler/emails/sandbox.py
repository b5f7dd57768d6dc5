"""The Jinja2 sandbox email templates render in, and what it lets a template build.

Templates come from pull requests (docs/SECURITY.md). Jinja2's ImmutableSandboxedEnvironment
keeps them from running code, but not from asking for memory: ``""|center(500000000)``,
``"%500000000s" % upn`` or 24 times ``{% set a = a ~ a %}`` each build hundreds of megabytes
that are never written out, so the cap on an email part does not see them. Here a template may
use only :data:`FILTERS` and the methods of :data:`METHODS`, and a render is bounded at the
places where a template makes something:

- no value a template builds may be larger than :data:`MAX_RENDERED_CHARS`, the cap of an email
  part: text, a list or a number, measured by :func:`size` without building its text. Where the
  size of a result depends on a number or a value the template chose (a width, a count, a
  separator, the operands of ``~`` or ``+``), it is checked before anything is built; the other
  operations build at most a few times their input, which is checked afterwards;
- what a template, block, macro or ``{% set %}`` block writes is bounded the same way, and each
  piece of it counts :data:`PIECE` more, so a loop writing one character at a time cannot fill
  memory with small objects instead;
- all that one render builds and writes counts against :data:`MAX_BUILT`, so a template cannot
  keep thousands of values of the largest size alive either.

``*`` and ``%`` work on numbers only, ``**`` not at all: repeating text or formatting it with a
width is how a few characters ask for gigabytes.

The sizes and limits are in :mod:`reconciler.emails.render_limits`, what templates write is held
to them in :mod:`reconciler.emails.bounded_output`, and the filters and methods, each with the
rule that sizes its result, in :mod:`reconciler.emails.template_calls`; this module is the
environment that puts them together and bounds the rest (operators, ``~``, items and slices,
printing).
"""

from __future__ import annotations

from typing import Any

from jinja2 import Template, nodes
from jinja2.compiler import CodeGenerator, Frame
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

from reconciler.emails.bounded_output import BoundedTemplate, Capture
from reconciler.emails.render_limits import built, check, size
from reconciler.emails.template_calls import (
    FILTERS,
    bounded_filter,
    check_call,
    method_rules,
    text_signature,
)


class _BoundedCodeGenerator(CodeGenerator):
    """Jinja2's compiler, but ``~`` goes through :meth:`Sandbox.join_text` and captured output
    into a :class:`Capture`: the sandbox intercepts neither on its own."""

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


class Sandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox with no globals (``range``, ``cycler``, ``lipsum``...), only
    :data:`FILTERS` and the methods of :data:`METHODS`, and every value and output bounded
    (this module's docstring)."""

    intercepted_binops = frozenset(SandboxedEnvironment.default_binop_table)
    code_generator_class = _BoundedCodeGenerator
    template_class = BoundedTemplate

    def __init__(self, **options: Any):
        super().__init__(finalize=_printable, **options)
        self.globals.clear()
        self.filters = {name: bounded_filter(name, self.filters[name]) for name in FILTERS}

    def is_safe_callable(self, obj: Any) -> bool:
        """Macros, blocks (``self.heading()``, ``super()``), loops and the listed methods;
        calling an undefined name reports it as undefined."""
        if isinstance(obj, Macro | BlockReference | LoopContext | Undefined):
            return True
        return getattr(obj, "__name__", None) in method_rules(obj)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        """A macro, block or method, checked by :func:`check_call` (methods of text with
        their rule in :data:`TEXT_METHODS`) and its result by :func:`built`."""
        rule = method_rules(obj).get(getattr(obj, "__name__", ""))
        if rule is None:
            check_call(args, kwargs, None, None)
        else:
            check_call((obj.__self__, *args), kwargs, rule, text_signature(obj.__name__))
        return built(super().call(context, obj, *args, **kwargs))

    def call_binop(self, context: Context, operator_: str, left: Any, right: Any) -> Any:
        """Every operator: ``*`` and ``%`` on numbers only, ``**`` never, and the operands
        small enough that the result is (``~`` is :meth:`join_text`)."""
        numbers = all(isinstance(v, int | float) for v in (left, right))
        if operator_ == "**" or (operator_ in ("*", "%") and not numbers):
            raise SecurityError(f"the {operator_!r} operator is refused here")
        check(size(left) + size(right))
        return built(super().call_binop(context, operator_, left, right))

    def getitem(self, obj: Any, argument: Any) -> Any:
        """``obj[argument]``: a key too large to print is refused (an undefined key's error
        message prints it), and a slice is a copy, paid for."""
        check(size(argument))
        value = super().getitem(obj, argument)
        return built(value) if isinstance(argument, slice) else value

    def select_template(self, names: Any, parent: Any = None, globals: Any = None) -> Template:
        """Its error message lists the names: a long list of long texts is refused first."""
        check(size(names))
        return super().select_template(names, parent, globals)

    def join_text(self, autoescape: bool, values: tuple[Any, ...]) -> str:
        """``a ~ b ~ c``, sized before it is built."""
        check(size(values))
        return built((markup_join if autoescape else str_join)(values))

    def capture(self) -> Capture:
        """A new buffer for captured output (:class:`_BoundedCodeGenerator`)."""
        return Capture()


def _printable(value: Any) -> Any:
    """Every ``{{ value }}`` is sized before it becomes text: a list literal of a thousand
    references to one long string is small, its text is not."""
    check(size(value))
    return value
