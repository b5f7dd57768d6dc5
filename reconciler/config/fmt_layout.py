"""The canonical layout of tenant and users files: what ``reconciler fmt`` writes.

Hand-edited YAML drifts in style, and style noise hides the real change in a pull request. The
canonical form is: two-space indentation; keys in the order the schema documents them; users
sorted by sign-in address; one blank line between top-level sections and between users (other
blank lines kept where the author put them, collapsed to one); a string plain only where every
YAML reader — our loader, YAML 1.1 editors, YAML 1.2 — reads it as that same string, double-quoted
otherwise (``"0123456"``, ``"+14255550100"``, ``"yes"``); integers plain where the schema expects
one; a flow mapping written on one line (``{number: …, type: toll}``) stays a flow mapping.

Comments are kept: a comment line belongs to the entry below it and moves with it, a comment at
the end of a line stays at the end of that line (at its column when it still fits), the comment
block at the top of the file stays at the top. Formatting never changes meaning: the output is
loaded again and must give exactly the data and the comments of the input, or nothing is written.
Anchors and aliases are refused rather than expanded — expanding them would be a rewrite, not a
layout.

Which files ``fmt`` formats, and how it rewrites them, is ``fmt.py``; the comments of a file are
placed by ``fmt_source.py``, and whether a string needs quotes is decided by ``fmt_quoting.py``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import yaml

from reconciler.config import schema
from reconciler.config.fmt_quoting import plain_is_safe, quoted
from reconciler.config.fmt_source import FormatError, Loader, Source, comments_of, decode
from reconciler.config.yamlload import YAMLProblem, load
from reconciler.errors import Problem

Kind = Literal["tenant", "users"]
SCHEMAS: dict[Kind, str] = {"tenant": "tenant.schema.json", "users": "users.schema.json"}

MAX_KEY = 1024
"""YAML's limit for a ``key: value`` key; longer keys need the explicit ``? key`` form."""
_NUMERAL = re.compile(r"^[-+]?[0-9]+$")


def format_yaml(text: str | bytes, file: str, kind: Kind) -> str:
    """The canonical form of a tenant (``kind="tenant"``) or users file.

    Raises :class:`FormatError` for a file our loader refuses (the same located problems
    ``validate`` gives), one using anchors, or — as a safety net — one whose formatted form would
    not load to the same data with the same comments.
    """
    if isinstance(text, bytes):
        text = decode(text, file)
    duplicates: list[Problem] = []
    try:
        data = load(text, file, duplicates)
    except YAMLProblem as exc:
        raise FormatError([exc.problem]) from None
    if duplicates:
        raise FormatError(duplicates)
    text = text.removeprefix("\ufeff")
    source = Source(text, file)
    comments = sorted(source.all_comments())
    root = yaml.compose(text, Loader=Loader)
    if root is not None and not isinstance(root, yaml.MappingNode):
        mark = root.start_mark
        raise FormatError(
            [
                Problem(
                    file,
                    mark.line + 1,
                    mark.column + 1,
                    "expected a mapping of keys at the top of the file",
                )
            ]
        )
    output = _Emitter(source, kind).document(root, data)
    again: list[Problem] = []
    try:
        same = (
            load(output, file, again) == data
            and not again
            and not (("#" in output or comments) and comments_of(output) != comments)
        )
    except YAMLProblem:
        same = False
    if not same:
        raise FormatError(
            [
                Problem(
                    file,
                    1,
                    1,
                    (
                        "cannot format this file without moving a comment or changing a value; "
                        "put each comment on its own line above a key, or leave the file as it is"
                    ),
                )
            ]
        )
    return output


def dump(data: dict[str, Any], kind: Kind, depth: int) -> str:
    """Data as the canonical file ``fmt`` would leave unchanged (what ``init`` writes), headed
    like the example tenant's files by the comment that points editors at the file's schema in
    ``schemas/`` beside the configuration folder, for a file ``depth`` folders below its tenant
    folder."""
    modeline = f"# yaml-language-server: $schema={'../' * (depth + 2)}schemas/{SCHEMAS[kind]}\n"
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    return format_yaml(modeline + text, "-", kind)


class _Emitter:
    def __init__(self, source: Source, kind: Kind):
        self.source = source
        self.schema = schema.load_schema(SCHEMAS[kind])
        self.out: list[tuple[str, set[int]]] = []
        """Output lines, each with the source lines whose YAML it holds."""

    def document(self, root: yaml.MappingNode | None, data: Any) -> str:
        first = root.value[0][0].start_mark.line if root is not None and root.value else None
        header = self.source.header(first) if first is not None else []
        self.out.extend((line, set()) for line in header)
        if root is not None:
            self.mapping(root, data, 0, (), self.schema)
        footer = [self.source.lines[n].strip() for n in self.source.footer]
        if any(footer):
            if footer[0] == "" and self.out:
                self.out.append(("", set()))
            self.out.extend((text, set()) for text in footer if text)
        return self.render()

    def render(self) -> str:
        lines = [text for text, _ in self.out]
        placed: dict[int, int] = {}
        for index, (_, covered) in enumerate(self.out):
            for number in covered:
                placed[number] = index
        for number, index in sorted(placed.items()):
            if number in self.source.end_of_line:
                column, comment = self.source.end_of_line[number]
                text = lines[index]
                lines[index] = f"{text}{' ' * max(2, column - len(text))}{comment}"
        return "".join(f"{line}\n" for line in lines)

    def comments_above(self, line: int, indent: int, blank: bool | None) -> None:
        """The comments that belong to the entry on ``line``, after a blank line if ``blank``
        (None: if the author left one there)."""
        blank_in_source, comments = self.source.above(line)
        if (blank_in_source if blank is None else blank) and self.out and self.out[-1][0]:
            self.out.append(("", set()))
        pad = " " * indent
        self.out.extend((f"{pad}{text}" if text else "", set()) for text in comments)

    def mapping(
        self,
        node: yaml.MappingNode,
        data: dict[str, Any],
        indent: int,
        path: tuple[str | int, ...],
        rules: dict[str, Any],
    ) -> None:
        rules = self.resolve(rules)
        entries = {key.value: (key, value) for key, value in node.value}
        for position, name in enumerate(self.order(list(entries), path, rules)):
            key, value = entries[name]
            child_rules = self.child(rules, name)
            blank: bool | None
            if position == 0:
                blank = not path and self.source.header_gap
            else:
                blank = True if path in ((), ("users",)) else None
            self.comments_above(key.start_mark.line, indent, blank)
            written = self.scalar(name, child_rules, flow=False, key=True)
            if len(written) > MAX_KEY:
                mark = key.start_mark
                raise FormatError(
                    [
                        Problem(
                            self.source.file,
                            mark.line + 1,
                            mark.column + 1,
                            (
                                f"a key longer than {MAX_KEY} characters cannot be laid out as "
                                "`key: value`; fmt leaves this file as it is"
                            ),
                        )
                    ]
                )
            head = f"{' ' * indent}{written}:"
            self.value(head, key, value, data[name], indent, (*path, name), child_rules)

    def sequence(
        self,
        node: yaml.SequenceNode,
        data: list[Any],
        indent: int,
        path: tuple[str | int, ...],
        rules: dict[str, Any],
    ) -> None:
        item_rules = self.resolve(rules).get("items", {})
        for index, (item, value) in enumerate(zip(node.value, data, strict=True)):
            self.comments_above(item.start_mark.line, indent, None if index else False)
            if isinstance(item, yaml.MappingNode) and item.value and not self.one_line(item):
                start = len(self.out)
                self.mapping(item, value, indent + 2, (*path, index), item_rules)
                text, covered = self.out[start]
                self.out[start] = (f"{' ' * indent}- {text[indent + 2 :]}", covered)
            else:
                self.value(
                    f"{' ' * indent}-", item, item, value, indent, (*path, index), item_rules
                )

    def value(
        self,
        head: str,
        key: yaml.Node,
        node: yaml.Node,
        data: Any,
        indent: int,
        path: tuple[str | int, ...],
        rules: dict[str, Any],
    ) -> None:
        if isinstance(node, yaml.ScalarNode) or not node.value or self.one_line(node):
            for line in range(key.start_mark.line + 1, node.end_mark.line + 1):
                self.comments_above(line, indent, False)
            text = self.inline(node, data, rules)
            self.out.append((f"{head} {text}", self.lines_of(key, node)))
        elif isinstance(node, yaml.MappingNode):
            self.out.append((head, {key.start_mark.line}))
            self.mapping(node, data, indent + 2, path, rules)
        elif isinstance(node, yaml.SequenceNode):
            self.out.append((head, {key.start_mark.line}))
            self.sequence(node, data, indent + 2, path, rules)

    def inline(self, node: yaml.Node, data: Any, rules: dict[str, Any]) -> str:
        """A scalar, an empty collection, or a one-line flow collection of scalars."""
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(data, rules, flow=False)
        if isinstance(node, yaml.SequenceNode):
            items = self.resolve(rules).get("items", {})
            return "[" + ", ".join(self.scalar(v, items, flow=True) for v in data) + "]"
        rules = self.resolve(rules)
        names = self.order([k.value for k, _ in node.value], (), rules)
        return (
            "{"
            + ", ".join(
                f"{self.scalar(n, {}, flow=True, key=True)}: "
                f"{self.scalar(data[n], self.child(rules, n), flow=True)}"
                for n in names
            )
            + "}"
        )

    @staticmethod
    def one_line(node: yaml.Node) -> bool:
        """A flow collection of scalars the author wrote on one line keeps that form."""
        if not getattr(node, "flow_style", False) or node.start_mark.line != node.end_mark.line:
            return False
        children = (
            node.value
            if isinstance(node, yaml.SequenceNode)
            else [part for pair in node.value for part in pair]
        )
        return all(isinstance(child, yaml.ScalarNode) for child in children)

    @staticmethod
    def lines_of(key: yaml.Node, node: yaml.Node) -> set[int]:
        end = node.end_mark
        last = end.line - 1 if end.column == 0 and end.line > key.start_mark.line else end.line
        return set(range(key.start_mark.line, last + 1))

    @staticmethod
    def order(names: list[str], path: tuple[str | int, ...], rules: dict[str, Any]) -> list[str]:
        if path == ("users",):
            return sorted(names, key=lambda n: (n.casefold(), n))
        known = list(rules.get("properties", {}))
        return sorted(names, key=lambda n: known.index(n) if n in known else len(known))

    def resolve(self, rules: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in rules:
            rules = self.schema["$defs"][rules["$ref"].rsplit("/", 1)[1]]
        return rules

    def child(self, rules: dict[str, Any], name: str) -> dict[str, Any]:
        rules = self.resolve(rules)
        found = rules.get("properties", {}).get(name, rules.get("additionalProperties"))
        return found if isinstance(found, dict) else {}

    def scalar(self, value: Any, rules: dict[str, Any], flow: bool, key: bool = False) -> str:
        if value is True or value is False:
            return "true" if value else "false"
        if value is None:
            return "null"
        text = str(value)
        kinds = self.resolve(rules).get("type", [])
        numeric = {"integer", "number"} & set([kinds] if isinstance(kinds, str) else kinds)
        if (numeric and not key and _NUMERAL.match(text)) or plain_is_safe(text, flow):
            return text
        return quoted(text)
