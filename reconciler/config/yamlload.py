"""Reading YAML as written: no implicit octal, YAML 1.1 booleans or sexagesimal numbers.

Values are built straight from libyaml's event stream (no node tree, no resolver): a plain scalar
is its text, except ``true``/``false`` and ``null``/``~``/nothing. Numbers stay text here; the
JSON Schema gives a plain numeral its integer type where one is expected (see ``schema.py``).
Duplicate keys and explicit tags are errors. Positions are not kept: an error's place is found
afterwards by :func:`locate`, which re-reads only the files that have problems.

Files come from pull requests, so their shape is bounded: nesting deeper than
:data:`MAX_DEPTH` and aliases that would repeat more than :data:`MAX_ALIASED_VALUES` values (a
"billion laughs" bomb is a few hundred bytes) are located errors, not a RecursionError or gigabytes
of memory. File size is bounded by the caller, which reads the bytes.
"""

from __future__ import annotations

import codecs
import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import yaml

from reconciler.errors import Finding, Problem

try:
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # PyYAML built without libyaml
    _Loader = yaml.SafeLoader
_LIBYAML = _Loader is not yaml.SafeLoader

_PLAIN_CONSTANTS: dict[str, Any] = {"true": True, "false": False, "null": None, "~": None, "": None}
_STR_TAG = "tag:yaml.org,2002:str"
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)  # libyaml reads these itself

MAX_DEPTH = 64
"""Mappings and lists nested deeper than this are refused; real files need four levels."""
MAX_ALIASED_VALUES = 10_000
"""The most values ``*alias`` references may repeat in one file, counted as if written out."""


class YAMLProblem(Exception):
    def __init__(self, problem: Problem):
        self.problem = problem


def load(text: str | bytes, file: str, duplicates: list[Problem]) -> Any:
    """The single document in ``text``; raises :class:`YAMLProblem` at the first syntax error.

    Duplicate keys are appended to ``duplicates`` (the later value is dropped) so the rest of the
    file is still checked.
    """
    if isinstance(text, bytes) and not text.startswith(_UTF16_BOMS):
        try:
            text.decode("utf-8")
        except UnicodeDecodeError as exc:  # located here: libyaml's offsets vary by loader
            line, col = _place(text[: exc.start].decode("utf-8"))
            raise YAMLProblem(
                Problem(
                    file,
                    line,
                    col,
                    (
                        f"invalid YAML: the file is not UTF-8 text (byte 0x{text[exc.start]:02x}: "
                        f"{exc.reason}); save it as UTF-8"
                    ),
                )
            ) from None
    loader = None
    try:
        loader = _Loader(text)  # the pure-Python reader already checks characters here
        return _Builder(loader, file, duplicates).document()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise YAMLProblem(Problem(file, line, col, f"invalid YAML: {message}")) from None
    except yaml.reader.ReaderError as exc:
        line, col = _reader_place(text, exc.position)
        what = f"character #x{exc.character:04x}" if exc.character >= 0 else "text"
        raise YAMLProblem(
            Problem(
                file,
                line,
                col,
                (
                    f"invalid YAML: unacceptable {what} ({exc.reason}); "
                    "files must be UTF-8 text without control characters"
                ),
            )
        ) from None
    except yaml.YAMLError as exc:
        message = " ".join(str(exc).split())
        raise YAMLProblem(Problem(file, 1, 1, f"invalid YAML: {message}")) from None
    finally:
        if loader is not None:
            loader.dispose()


def _reader_place(text: str | bytes, position: int) -> tuple[int, int]:
    """Line and column of a reader error: libyaml counts UTF-8 bytes, PyYAML's reader counts
    characters."""
    raw = text.encode("utf-8") if isinstance(text, str) else text
    if _LIBYAML:
        before = raw[:position].decode("utf-8", "replace")
    else:
        before = raw.decode("utf-8", "replace")[:position]
    return _place(before)


def _place(before: str) -> tuple[int, int]:
    """Line and column (1-based) of the character that follows ``before``."""
    return before.count("\n") + 1, len(before) - before.rfind("\n")


class _Builder:
    def __init__(self, loader: Any, file: str, duplicates: list[Problem]):
        self.next = loader.get_event
        self.file = file
        self.duplicates = duplicates
        self.anchors: dict[str, tuple[Any, int]] = {}
        """Anchored values with the number of values each stands for."""
        self.values = 0
        """Values built so far, aliases counted as what they repeat."""
        self.aliased = 0
        self.depth = 0

    def fail(self, event: Any, message: str) -> YAMLProblem:
        mark = event.start_mark
        return YAMLProblem(Problem(self.file, mark.line + 1, mark.column + 1, message))

    def document(self) -> Any:
        self.next()  # StreamStart
        event = self.next()
        if isinstance(event, yaml.StreamEndEvent):
            return None
        value = self.value(self.next())
        self.next()  # DocumentEnd
        event = self.next()
        if not isinstance(event, yaml.StreamEndEvent):
            raise self.fail(event, "only one YAML document is allowed per file")
        return value

    def value(self, event: Any) -> Any:
        kind = type(event)
        first = self.values
        self.values += 1
        if kind is yaml.ScalarEvent:
            result = self.scalar(event)
        elif kind is yaml.MappingStartEvent:
            self.check_tag(event)
            with self.nested(event):
                result = self.mapping()
        elif kind is yaml.SequenceStartEvent:
            self.check_tag(event)
            with self.nested(event):
                result = [self.value(e) for e in iter(self.next_item, None)]
        elif kind is yaml.AliasEvent:
            return self.alias(event)
        else:  # pragma: no cover - libyaml only emits the kinds above here
            raise self.fail(event, f"unexpected {kind.__name__}")
        if event.anchor is not None:
            self.anchors[event.anchor] = (result, self.values - first)
        return result

    @contextlib.contextmanager
    def nested(self, event: Any) -> Iterator[None]:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(event, f"nesting deeper than {MAX_DEPTH} levels is not allowed")
        yield
        self.depth -= 1

    def alias(self, event: Any) -> Any:
        """The anchored value itself (shared, never copied), within the file's alias budget."""
        if event.anchor not in self.anchors:
            raise self.fail(event, f"unknown alias *{event.anchor}")
        result, size = self.anchors[event.anchor]
        self.values += size - 1
        self.aliased += size
        if self.aliased > MAX_ALIASED_VALUES:
            raise self.fail(
                event,
                (
                    f"aliases repeat more than {MAX_ALIASED_VALUES} values in this file; "
                    "write the values out"
                ),
            )
        return result

    def next_item(self) -> Any:
        event = self.next()
        return None if type(event) is yaml.SequenceEndEvent else event

    def mapping(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        seen_at: dict[str, int] = {}
        while True:
            key_event = self.next()
            if type(key_event) is yaml.MappingEndEvent:
                return result
            if type(key_event) is not yaml.ScalarEvent:
                raise self.fail(key_event, "mapping keys must be plain text")
            self.check_scalar_tag(key_event)
            key = key_event.value
            value = self.value(self.next())
            if key in seen_at:
                self.duplicates.append(
                    self.fail(
                        key_event,
                        (
                            f"duplicate key {key!r} (first defined on line {seen_at[key]}); "
                            "each key may appear once"
                        ),
                    ).problem
                )
                continue
            seen_at[key] = _line(key_event)
            result[key] = value

    def check_scalar_tag(self, event: Any) -> None:
        tag = event.tag
        if tag is not None and tag not in (_STR_TAG, "!"):
            raise self.fail(event, f"YAML tags such as {tag!r} are not allowed; write plain values")

    def scalar(self, event: Any) -> Any:
        self.check_scalar_tag(event)
        if event.tag is None and event.implicit[0]:
            return _PLAIN_CONSTANTS.get(event.value, event.value)
        return event.value

    def check_tag(self, event: Any) -> None:
        if event.tag is not None and not event.implicit:
            raise self.fail(event, f"YAML tags such as {event.tag!r} are not allowed")


def _line(event: Any) -> int:
    """The 1-based line an event starts on (libyaml always marks events)."""
    return event.start_mark.line + 1 if event.start_mark is not None else 0


def locate(text: str | bytes, findings: Iterable[Finding]) -> list[Problem]:
    """Turn findings about one file into located problems, composing the file's nodes once."""
    root = yaml.compose(text, Loader=_Loader)
    return [_locate_one(root, f) for f in findings]


def _locate_one(root: yaml.Node | None, finding: Finding) -> Problem:
    node, key_node = root, None
    for step in finding.path:
        child = _child(node, step)
        if child is None:
            break
        key_node, node = child
    target = key_node if finding.at_key and key_node is not None else node
    if target is None:
        return Problem(finding.file, 1, 1, finding.message)
    mark = target.start_mark
    return Problem(finding.file, mark.line + 1, mark.column + 1, finding.message)


def _child(node: yaml.Node | None, step: str | int) -> tuple[yaml.Node, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == step:
                return key, value
    elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
        item = node.value[step]
        return item, item
    return None
