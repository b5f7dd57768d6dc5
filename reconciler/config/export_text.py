"""An export file read a piece at a time: its text decoded incrementally, its CSV lines, its JSON
entries. A 300,000-user export (over 100 MiB as ``ConvertTo-Json`` indents it) is never in
memory whole, as text or as objects; what is held is one piece and one entry.

A problem that stops the reading (unreadable, too large, not UTF-8, NUL characters) is kept on
:class:`ExportText` with its line, for the caller to name in the export's terms.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MAX_EXPORT_BYTES = 256 * 2**20
"""Larger exports are refused before decoding: a UTF-8 CSV of 300,000 users is under 100 MB."""
MAX_JSON_DEPTH = 100
"""ConvertTo-Json's own limit (its largest ``-Depth``); the exports nest about 4 deep."""
PIECE_BYTES = 2**20
"""How much of the file is read and decoded at a time."""

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE, whose BOM begins it
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
CHANGED = "changed while it was read: read it again once the export is written"
SAVE_AS = (
    "UTF-8 text (nor UTF-16 after a byte-order mark); save the export as UTF-8 (-Encoding UTF8)"
)


class ExportText:
    """The text of an export file, iterated as decoded pieces (each iteration reads the file
    again): UTF-8 with or without a BOM, or UTF-16/UTF-32 after theirs. ``problem`` is
    ``(line, message)`` (line 0: the whole file) once something stopped the reading."""

    def __init__(self, path: Path, limit: int = MAX_EXPORT_BYTES):
        self.path = path
        self.limit = limit
        self.problem: tuple[int, str] | None = None
        try:
            size = os.stat(path)
        except OSError as exc:
            self.problem = (0, f"cannot read: {exc.strerror or exc}")
            return
        self._identity = _identity(size)
        if not stat.S_ISREG(size.st_mode):
            # Read more than once (a JSON export's columns first): a pipe would be empty then.
            kind = "a folder" if stat.S_ISDIR(size.st_mode) else "not a regular file (a pipe?)"
            self.problem = (0, f"cannot read: {kind}; save the export to a file first")
        elif size.st_size > limit:
            self._too_large()

    def __iter__(self) -> Iterator[str]:
        if self.problem:
            return
        try:
            with open(self.path, "rb") as handle:
                if _identity(os.fstat(handle.fileno())) != self._identity:
                    self.problem = (0, CHANGED)
                    return
                yield from self._pieces(handle)
        except OSError as exc:
            self.problem = (0, f"cannot read: {exc.strerror or exc}")

    def _pieces(self, handle: Any) -> Iterator[str]:
        data = handle.read(max(PIECE_BYTES, 4))  # a BOM is up to 4 bytes
        codec = next((name for bom, name in _BOMS if data.startswith(bom)), "utf-8-sig")
        decoder = codecs.getincrementaldecoder(codec)()
        lines, read = 0, 0
        while True:
            read += len(data)
            if read > self.limit:
                self._too_large()
                return
            try:
                piece = decoder.decode(data, final=not data)
            except UnicodeDecodeError as exc:  # exc.object: the bytes it was decoding
                piece = exc.object[: exc.start].decode(exc.encoding)
                if read == len(data):  # the first piece: UTF-16/32's BOM is still in it
                    piece = piece.removeprefix("\ufeff")
                self.problem = (lines + piece.count("\n") + 1, f"not {SAVE_AS}")
                yield piece  # the lines before the one that stops the text
                return
            if (nul := piece.find("\0")) >= 0:  # UTF-16 without its BOM: UTF-8 with NULs
                self.problem = (
                    lines + piece.count("\n", 0, nul) + 1,
                    f"holds NUL characters: not {SAVE_AS}",
                )
                yield piece[:nul]
                return
            if piece:
                lines += piece.count("\n")
                yield piece
            if not data:
                return
            data = handle.read(PIECE_BYTES)

    def _too_large(self) -> None:
        self.problem = (
            0,
            f"larger than {self.limit // 2**20} MiB, the most init reads: is it the export? "
            "(a UTF-8 CSV of 300,000 users is under 100 MB)",
        )

    def starts_like_json(self) -> bool:
        """Whether its first character other than white space opens an array or object (a
        problem met on the way is left for the reading that follows to meet at its place)."""
        found = False
        for piece in self:
            if stripped := piece.lstrip():
                found = stripped.startswith(("[", "{"))
                break
        self.problem = None
        return found


def _identity(found: os.stat_result) -> tuple[int, ...]:
    """What says a file is the one read before: a JSON export is read twice."""
    return (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns)


def lines(text: ExportText) -> Iterator[str]:
    """The text's lines, line ends kept, one at a time; never the part of a line where a
    problem stopped the text. A line longer than a piece is joined once, not piece by piece."""
    partial: list[str] = []
    for piece in text:
        parts = piece.split("\n")
        if len(parts) == 1:
            partial.append(piece)
            continue
        yield "".join(partial) + parts[0] + "\n"
        for part in parts[1:-1]:
            yield part + "\n"
        partial = [parts[-1]] if parts[-1] else []
    if partial and not text.problem:
        yield "".join(partial)


class Malformed(ValueError):
    """Not JSON: ``message`` as ``json.loads`` words it, positions counted from the start."""

    def __init__(self, message: str, line: int):
        super().__init__(message)
        self.lineno = line


class TooDeep(Exception):
    """Lists and objects nest deeper than :data:`MAX_JSON_DEPTH`."""


_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")
_CUT = 9
"""How near the window's end an error or a value's end may come from a cut: the longest
literal (``-Infinity``), which covers a number's ``.``, ``e`` or ``e+`` left waiting."""


def _after_space(text: str, pos: int) -> int:
    match = _SPACE.match(text, pos)
    assert match is not None  # the pattern matches the empty string
    return match.end()


class _Window:
    """The part of the text not consumed yet, with where it starts (for error positions)."""

    def __init__(self, pieces: Iterator[str]):
        self.pieces = pieces
        self.text = ""
        self.pos = 0
        self.start = 0  # characters consumed before ``text``
        self.line = 1  # the line ``text`` starts on
        self.column = 1  # the column ``text`` starts at

    def drop(self) -> None:
        """Forget what was consumed (between values only: positions into the text change)."""
        if self.pos > PIECE_BYTES:
            newlines = self.text.count("\n", 0, self.pos)
            self.line += newlines
            if newlines:
                self.column = self.pos - self.text.rfind("\n", 0, self.pos)
            else:
                self.column += self.pos
            self.start += self.pos
            self.text, self.pos = self.text[self.pos :], 0

    def more(self, at_least: int = 1) -> bool:
        """Add pieces, ``at_least`` characters of them if the text has that many; False at the
        end of the text."""
        added: list[str] = []
        size = 0
        while size < at_least and (piece := next(self.pieces, None)) is not None:
            added.append(piece)
            size += len(piece)
        self.text += "".join(added)
        return bool(added)

    def skip_space(self) -> str:
        """The next character other than white space ("" at the end), not consumed."""
        while True:
            self.pos = _after_space(self.text, self.pos)
            if self.pos < len(self.text):
                return self.text[self.pos]
            self.drop()
            if not self.more():
                return ""

    def value(self) -> Any:
        """The JSON value at the position, consumed. When the text ends inside it (an error at
        the window's end, an unterminated string, or a number the next piece may go on with),
        the window grows by as much again as it holds: a value of many pieces is decoded a
        few times, not once per piece."""
        self.drop()
        while True:
            try:
                value, end = _DECODER.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as exc:
                cut = len(self.text) - exc.pos <= _CUT or exc.msg.startswith("Unterminated")
                if cut and self.more(len(self.text) - self.pos):
                    continue
                raise self.malformed(exc.msg, exc.pos) from None
            if end >= len(self.text) - _CUT and self.more(len(self.text) - self.pos):
                continue  # a number the next piece may go on with ("12." + "5")
            self.pos = end
            return value

    def malformed(self, message: str, pos: int) -> Malformed:
        newlines = self.text.count("\n", 0, pos)
        line = self.line + newlines
        column = pos - self.text.rfind("\n", 0, pos) if newlines else self.column + pos
        return Malformed(f"{message}: line {line} column {column} (char {self.start + pos})", line)


def json_entries(pieces: Iterator[str], *, check_depth: bool = True) -> Iterator[Any]:
    """The entries of a top-level array one at a time, or the one value the document is; each
    checked for depth (TooDeep) unless a first reading did. Errors are :class:`Malformed`,
    worded as ``json.loads`` words them."""
    window = _Window(pieces)
    first = window.skip_space()
    if first != "[":
        window.text += "".join(window.pieces)  # one object: read whole, joined once
        try:
            value = json.loads(window.text)
        except json.JSONDecodeError as exc:
            raise window.malformed(exc.msg, exc.pos) from None
        yield shallow(value, 1) if check_depth else value
        return
    window.pos += 1
    if window.skip_space() != "]":
        while True:
            entry = window.value()
            yield shallow(entry, 2) if check_depth else entry
            after = window.skip_space()
            if after == ",":
                window.pos += 1
                window.skip_space()
            elif after == "]":
                break
            else:
                raise window.malformed("Expecting ',' delimiter", window.pos)
    window.pos += 1
    if window.skip_space():
        raise window.malformed("Extra data", window.pos)


def shallow(data: Any, depth: int) -> Any:
    """``data``, which sits ``depth`` levels down, unless lists and objects in it nest deeper
    than :data:`MAX_JSON_DEPTH` (found without recursion: printing a value nested near
    Python's recursion limit would fail). Only lists and objects are visited."""
    pending = [(data, depth)] if type(data) in _CONTAINERS else []
    while pending:
        value, level = pending.pop()
        if level > MAX_JSON_DEPTH:
            raise TooDeep
        children = value.values() if type(value) is dict else value
        pending.extend((child, level + 1) for child in children if type(child) in _CONTAINERS)
    return data


_CONTAINERS = (dict, list)
