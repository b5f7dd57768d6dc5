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
"""

from __future__ import annotations

import codecs
import functools
import os
import re
import stat
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from reconciler.config import schema
from reconciler.config.loader import (
    LEAVES_CONFIG,
    MAX_FILE_BYTES,
    inside,
    nothing_to_read,
    tenant_files,
    tenant_names,
)
from reconciler.config.yamlload import YAMLProblem, load
from reconciler.errors import Problem

Kind = Literal["tenant", "users"]
SCHEMAS: dict[Kind, str] = {"tenant": "tenant.schema.json", "users": "users.schema.json"}

try:
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # PyYAML built without libyaml
    _Loader = yaml.SafeLoader

_RESOLVER = yaml.SafeLoader("")
"""YAML 1.1's implicit types (PyYAML's resolver): a plain scalar they type is quoted."""
_YAML_1_1_BOOLS = re.compile(r"^(?:y|Y|n|N)$")
"""YAML 1.1 booleans PyYAML does not implement but the specification (and some editors) do."""
_YAML_1_2_CORE = re.compile(
    r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+"
    r"|[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)|null|Null|NULL|~|true|True|TRUE|false|False|FALSE)$"
)
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_NO_ANCHORS = (
    "fmt does not rewrite files that use anchors and aliases; write the values out, or leave "
    "this file out of fmt"
)
MAX_KEY = 1024
"""YAML's limit for a ``key: value`` key; longer keys need the explicit ``? key`` form."""
_NUMERAL = re.compile(r"^[-+]?[0-9]+$")
_INDICATORS = "-?:,[]{}#&*!|>'\"%@`"
_FLOW_INDICATORS = ",[]{}:?"
"""End a plain scalar inside ``{…}`` for some reader (PyYAML stops at ``?`` and ``:``)."""
_ZERO_WIDTH = (
    yaml.StreamStartToken,
    yaml.StreamEndToken,
    yaml.BlockEndToken,
    yaml.KeyToken,
    yaml.BlockMappingStartToken,
    yaml.BlockSequenceStartToken,
)


class FormatError(Exception):
    """Why a file cannot be formatted, each problem located; nothing is written."""

    def __init__(self, problems: list[Problem]):
        super().__init__("\n".join(map(str, problems)))
        self.problems = problems


def format_yaml(text: str | bytes, file: str, kind: Kind) -> str:
    """The canonical form of a tenant (``kind="tenant"``) or users file.

    Raises :class:`FormatError` for a file our loader refuses (the same located problems
    ``validate`` gives), one using anchors, or — as a safety net — one whose formatted form would
    not load to the same data with the same comments.
    """
    if isinstance(text, bytes):
        text = _decode(text, file)
    duplicates: list[Problem] = []
    try:
        data = load(text, file, duplicates)
    except YAMLProblem as exc:
        raise FormatError([exc.problem]) from None
    if duplicates:
        raise FormatError(duplicates)
    text = text.removeprefix("\ufeff")
    source = _Source(text, file)
    comments = sorted(source.all_comments())
    root = yaml.compose(text, Loader=_Loader)
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
            and not (("#" in output or comments) and _comments(output) != comments)
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


def changed_files(
    paths: Sequence[Path], config: Path
) -> tuple[list[tuple[Path, str]], int, list[Problem]]:
    """What ``fmt`` would write: (file, canonical text) for every file not already canonical,
    how many files were looked at, and every problem (then nothing may be written).

    With no path, every tenant under ``config``; a path is a tenant folder (it holds
    ``tenant.yaml``), a folder of tenant folders, or a tenant or users file.
    """
    if not paths and not tenant_names(config):
        return [], 0, [Problem(str(config), 1, 1, nothing_to_read(config))]
    files: list[tuple[Path, Kind]] = []
    problems: list[Problem] = []
    for path in paths or [config]:
        found, bad = _files_under(path, config)
        files += found
        problems += bad
    changes = []
    for path, kind in dict.fromkeys(files):
        raw = _read(path, problems)
        if raw is None:
            continue
        try:
            text = format_yaml(raw, str(path), kind)
        except FormatError as exc:
            problems += exc.problems
            continue
        if text.encode("utf-8") != raw:
            changes.append((path, text))
    return changes, len(files), problems


def _files_under(path: Path, config: Path) -> tuple[list[tuple[Path, Kind]], list[Problem]]:
    if not path.exists():
        return [], [Problem(str(path), 1, 1, "no such file or folder")]
    if (link := _leaving(path, config)) is not None:
        return [], [Problem(str(link), 1, 1, LEAVES_CONFIG)]
    if not path.is_dir():
        kind = kind_of(path)
        if kind is None:
            return [], [
                Problem(
                    str(path),
                    1,
                    1,
                    ("not a tenant or users file (tenant.yaml, users.yaml or users/**/*.yaml)"),
                )
            ]
        return [(path, kind)], []
    if (path / "tenant.yaml").exists() or (path / "users").is_dir():
        folders = [(path.parent, path.name)]
    else:
        folders = [(path, name) for name in tenant_names(path)]
        if not folders:
            return [], [
                Problem(str(path), 1, 1, ("no tenant folders here (expected TENANT/tenant.yaml)"))
            ]
    found: list[tuple[Path, Kind]] = []
    problems: list[Problem] = []
    for root, name in folders:
        files, bad = tenant_files(root, name)
        problems += [Problem(str(root / p.file), p.line, p.column, p.message) for p in bad]
        found += [(root / file, kind_of(root / file) or "users") for file in files]
    return found, problems


def _leaving(path: Path, config: Path) -> Path | None:
    """The first folder under the configuration folder on the way to ``path`` (itself
    included) that leads out of it: the loader reads nothing through such a link, so fmt
    rewrites nothing through it either, whichever file or folder under it it is given."""
    root = Path(os.path.abspath(config))
    full = Path(os.path.abspath(path))
    if not full.is_relative_to(root):
        return None
    folder = config
    for part in full.relative_to(root).parts:
        folder /= part
        if not folder.is_dir():
            return None
        if not inside(folder, config):
            return folder
    return None


def kind_of(path: Path) -> Kind | None:
    """What a file holds, by its name and place in a tenant folder."""
    if path.name == "tenant.yaml":
        return "tenant"
    if path.match("*.y*ml") and (path.name == "users.yaml" or "users" in path.parent.parts):
        return "users"
    return None


def _read(path: Path, problems: list[Problem]) -> bytes | None:
    """A regular file's bytes. ``fmt`` rewrites files, so a symbolic link is refused rather
    than replaced by a file or written through to wherever it points."""
    try:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            why = "a symbolic link; fmt formats regular files only (name its target)"
        elif not stat.S_ISREG(info.st_mode):
            why = "not a regular file"
        elif info.st_size > MAX_FILE_BYTES:
            why = f"larger than {MAX_FILE_BYTES // 2**20} MiB"
        else:
            with open(path, "rb") as handle:
                return handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        why = f"unreadable: {exc.strerror or exc}"
    problems.append(Problem(str(path), 1, 1, f"cannot format this file: {why}"))
    return None


def write(path: Path, text: str) -> None:
    """Replace the file in one step (a killed fmt leaves the old or the new file, never half
    of one), keeping its permissions."""
    mode = stat.S_IMODE(path.stat().st_mode)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _decode(raw: bytes, file: str) -> str:
    """The text as our loader reads it (UTF-8, or UTF-16 after its byte-order mark); fmt writes
    UTF-8."""
    try:
        return raw.decode("utf-16" if raw.startswith(_UTF16_BOMS) else "utf-8")
    except UnicodeDecodeError:
        pass
    try:
        load(raw, file, [])  # locates the bad byte the way validate does
    except YAMLProblem as exc:
        raise FormatError([exc.problem]) from None
    raise FormatError([Problem(file, 1, 1, "not UTF-8 text; save it as UTF-8")])


def _comments(text: str) -> list[str]:
    return sorted(_Source(text, "").all_comments())


@dataclass
class _Source:
    """The lines of a file and where its comments are: on their own lines (grouped by the next
    line that holds YAML) or at the end of a line of YAML."""

    text: str
    file: str
    lines: list[str] = field(init=False)
    own_lines: dict[int, list[int]] = field(init=False, default_factory=dict)
    """A line holding YAML → the comment and blank lines just above it."""
    end_of_line: dict[int, tuple[int, str]] = field(init=False, default_factory=dict)
    """A line holding YAML → (column, text) of the comment that ends it."""
    footer: list[int] = field(init=False, default_factory=list)
    header_gap: bool = field(init=False, default=False)
    """A blank line separated the top comment block from the YAML below it."""
    consumed: set[int] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        self.lines = self.text.splitlines()
        last_end: dict[int, int] = {}
        content: set[int] = set()
        for token in yaml.scan(self.text, Loader=_Loader):
            if isinstance(token, yaml.AnchorToken | yaml.AliasToken):
                mark = token.start_mark
                problem = Problem(self.file, mark.line + 1, mark.column + 1, _NO_ANCHORS)
                raise FormatError([problem])
            if isinstance(token, _ZERO_WIDTH):
                continue
            start, end = token.start_mark, token.end_mark
            stop = end.line - 1 if end.column == 0 and end.line > start.line else end.line
            content.update(range(start.line, stop + 1))
            last_end[stop] = max(last_end.get(stop, 0), end.column if stop == end.line else 0)
        pending: list[int] = []
        for number, line in enumerate(self.lines):
            if number in content:
                if number in last_end:
                    rest = line[last_end[number] :]
                    if rest.strip().startswith("#"):
                        column = last_end[number] + len(rest) - len(rest.lstrip())
                        self.end_of_line[number] = (column, rest.strip())
                self.own_lines[number], pending = pending, []
            else:
                pending.append(number)
        self.footer = pending

    def all_comments(self) -> Iterator[str]:
        for lines in [*self.own_lines.values(), self.footer]:
            yield from (self.lines[n].strip() for n in lines if self.lines[n].strip())
        yield from (comment for _, comment in self.end_of_line.values())

    def header(self, first: int) -> list[str]:
        """The comment block at the top of the file (up to its first blank line), which stays
        at the top whatever key comes first after formatting."""
        above = self.own_lines.get(first, [])
        start = 0
        while start < len(above) and not self.lines[above[start]].strip():
            start += 1
        end = start
        while end < len(above) and self.lines[above[end]].strip():
            end += 1
        self.own_lines[first] = above[end:]
        self.header_gap = end < len(above) and not self.lines[above[end]].strip()
        return [self.lines[n].strip() for n in above[start:end]]

    def above(self, line: int) -> tuple[bool, list[str]]:
        """The comments above a line of YAML, once: (a blank line came before them, lines)."""
        if line in self.consumed:
            return False, []
        self.consumed.add(line)
        numbers = self.own_lines.get(line, [])
        texts = [self.lines[n].strip() for n in numbers]
        blank_before = bool(texts) and not texts[0]
        comments: list[str] = []
        for text in texts:
            if text or (comments and comments[-1]):
                comments.append(text)
        while comments and not comments[-1]:
            comments.pop()
        return blank_before, comments


class _Emitter:
    def __init__(self, source: _Source, kind: Kind):
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


@functools.lru_cache(maxsize=4096)
def plain_is_safe(text: str, flow: bool = False) -> bool:
    """Every YAML reader reads ``text`` written plain as this same string."""
    if not text or text != text.strip() or text[0] in _INDICATORS:
        return False
    if ": " in text or " #" in text or text.endswith(":") or "\t" in text:
        return False
    if text.startswith("...") or (flow and any(c in _FLOW_INDICATORS for c in text)):
        return False
    if any(not c.isprintable() or c in "\x85\u2028\u2029\ufeff" for c in text):
        return False
    if _YAML_1_2_CORE.match(text) or _YAML_1_1_BOOLS.match(text):
        return False
    tag = _RESOLVER.resolve(yaml.ScalarNode, text, (True, False))
    return tag == "tag:yaml.org,2002:str"


def quoted(text: str) -> str:
    """A double-quoted YAML scalar: ``\\``, ``"`` and every character that is not printable or
    breaks a line are escaped, so the file stays one value per line."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char.isprintable() and char not in "\x85\u2028\u2029\ufeff":
            out.append(char)
        elif ord(char) <= 0xFF:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'
