"""A tenant or users file as ``fmt`` reads it: its text (decoded as the loader decodes it),
its lines, and where its comments are — on their own lines, with the entry below them, or at
the end of a line — so that the layout can put each comment back beside its entry and check
afterwards that none was lost. What ``fmt`` refuses to lay out is a :class:`FormatError`, every
problem located; anchors and aliases are refused here, found while the comments are placed."""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass, field

import yaml

from reconciler.config.yamlload import YAMLProblem, load
from reconciler.errors import Problem

try:
    Loader: type = yaml.CSafeLoader
except AttributeError:  # PyYAML built without libyaml
    Loader = yaml.SafeLoader

_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_NO_ANCHORS = (
    "fmt does not rewrite files that use anchors and aliases; write the values out, or leave "
    "this file out of fmt"
)
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


def decode(raw: bytes, file: str) -> str:
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


def comments_of(text: str) -> list[str]:
    return sorted(Source(text, "").all_comments())


@dataclass
class Source:
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
        for token in yaml.scan(self.text, Loader=Loader):
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
