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
            with open(path, "rb") as handle:
                size = os.fstat(handle.fileno())
        except OSError as exc:
            self.problem = (0, f"cannot read: {exc.strerror or exc}")
            return
        if stat.S_ISREG(size.st_mode) and size.st_size > limit:
            self._too_large()

    def __iter__(self) -> Iterator[str]:
        if self.problem:
            return
        try:
            with open(self.path, "rb") as handle:
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
            pending = decoder.getstate()[0]
            try:
                piece = decoder.decode(data, final=not data)
            except UnicodeDecodeError as exc:
                piece = (pending + data)[: exc.start].decode(codec)
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


def lines(text: ExportText) -> Iterator[str]:
    """The text's lines, line ends kept, one at a time; never the part of a line where a
    problem stopped the text."""
    partial = ""
    for piece in text:
        parts = (partial + piece).split("\n")
        partial = parts.pop()
        for part in parts:
            yield part + "\n"
    if partial and not text.problem:
        yield partial


class Malformed(ValueError):
    """Not JSON: ``message`` as ``json.loads`` words it, positions counted from the start."""

    def __init__(self, message: str, line: int):
        super().__init__(message)
        self.lineno = line


class TooDeep(Exception):
    """Lists and objects nest deeper than :data:`MAX_JSON_DEPTH`."""


_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")


class _Window:
    """The part of the text not consumed yet, with where it starts (for error positions)."""

    def __init__(self, pieces: Iterator[str]):
        self.pieces = pieces
        self.text = ""
        self.pos = 0
        self.start = 0  # characters consumed before ``text``
        self.line = 1  # the line ``text`` starts on
        self.column = 1  # the column ``text`` starts at

    def more(self) -> bool:
        """Add the next piece; False at the end of the text."""
        piece = next(self.pieces, None)
        if piece is None:
            return False
        if self.pos > PIECE_BYTES:  # drop what was consumed
            consumed = self.text[: self.pos]
            newlines = consumed.count("\n")
            self.line += newlines
            self.column = (
                len(consumed) - consumed.rfind("\n") if newlines else self.column + len(consumed)
            )
            self.start += self.pos
            self.text, self.pos = self.text[self.pos :], 0
        self.text += piece
        return True

    def skip_space(self) -> str:
        """The next character other than white space ("" at the end), not consumed."""
        while True:
            match = _SPACE.match(self.text, self.pos)
            self.pos = match.end() if match else self.pos
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.more():
                return ""

    def value(self) -> Any:
        """The JSON value at the position, consumed; read on while the text may continue it."""
        while True:
            try:
                value, end = _DECODER.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as exc:
                if self.more():
                    continue
                raise self.malformed(exc.msg, exc.pos) from None
            if end == len(self.text) and self.more():
                continue  # a number or literal the next piece may go on with
            self.pos = end
            return value

    def malformed(self, message: str, pos: int) -> Malformed:
        newlines = self.text.count("\n", 0, pos)
        line = self.line + newlines
        column = pos - self.text.rfind("\n", 0, pos) if newlines else self.column + pos
        return Malformed(f"{message}: line {line} column {column} (char {self.start + pos})", line)


def json_entries(pieces: Iterator[str]) -> Iterator[Any]:
    """The entries of a top-level array one at a time, or the one value the document is; each
    checked for depth (TooDeep). Errors are :class:`Malformed`, worded as ``json.loads`` words
    them."""
    window = _Window(pieces)
    first = window.skip_space()
    if first != "[":
        while window.more():
            pass
        try:
            value = json.loads(window.text)
        except json.JSONDecodeError as exc:
            raise window.malformed(exc.msg, exc.pos) from None
        yield shallow(value, 1)
        return
    window.pos += 1
    if window.skip_space() != "]":
        while True:
            yield shallow(window.value(), 2)
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
    Python's recursion limit would fail)."""
    pending = [(data, depth)]
    while pending:
        value, level = pending.pop()
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            if level > MAX_JSON_DEPTH:
                raise TooDeep
            pending.extend((child, level + 1) for child in value)
    return data
