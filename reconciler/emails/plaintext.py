"""Plain-text bodies that read well in any mail client, whatever the language.

Templates keep each paragraph on one line, so translators never count columns; the rendered text
is wrapped here instead, the same way for every locale:

* lines hold at most :data:`WIDTH` columns (RFC 5322 §2.1.1 recommends 78 characters). Wide
  characters (Japanese, Chinese) count two columns, so a line is never more than 78 characters
  and never wider than 78 columns in a fixed-width font;
* a line breaks at spaces, and between two wide characters, but never before closing punctuation
  (``。``, ``、``, ``」``…) or after opening punctuation (``「``…) — the usual kinsoku rules;
* a link (``https://…``) stands alone on its own line, so clients linkify it and nothing is glued
  to it; a token longer than a line (a long link) is never split;
* a phone number (``+1 425-555-0100``) is never split across lines;
* continuation lines of a numbered or bulleted item are indented under its text.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

WIDTH = 78
"""Columns per line (RFC 5322 §2.1.1: "SHOULD be no more than 78 characters")."""

_LINK = r"(?:https?://|mailto:)\S+"
_TOKENS = re.compile(
    rf"(?P<link>{_LINK})"
    r"|(?P<phone>\+\d{1,3}(?:[ \-]\d+)+)"
    r"|(?P<space> +)"
    r"|(?P<word>[^ ])"
)
_HAS_LINK = re.compile(_LINK)
_ITEM = re.compile(r"(\s*)(?:\d{1,2}[.)]|[-*•])\s+")
"""A numbered or bulleted list item, whose continuation lines hang under its text."""
_CLAUSE_MARKS = (
    "COMMA",
    "FULL STOP",
    "COLON",
    "EXCLAMATION",
    "QUESTION",
    "ELLIPSIS",
    "MIDDLE DOT",
    "TWO DOT LEADER",
)


@functools.cache
def never_starts_line(char: str) -> bool:
    """Closing brackets and quotes, clause punctuation (``、``, ``。``, ``,``, ``:``…), small
    kana and the prolonged sound mark: kinsoku rules keep them off the start of a line (Spanish
    ``¡`` and ``¿`` open a clause and may)."""
    category, name = unicodedata.category(char), unicodedata.name(char, "")
    if category in ("Pe", "Pf"):
        return True
    if category == "Po" and not name.startswith("INVERTED"):
        return any(mark in name for mark in _CLAUSE_MARKS)
    return name.startswith(("HIRAGANA LETTER SMALL", "KATAKANA LETTER SMALL")) or name in (
        "KATAKANA-HIRAGANA PROLONGED SOUND MARK",
        "IDEOGRAPHIC ITERATION MARK",
    )


@functools.cache
def never_ends_line(char: str) -> bool:
    """Opening brackets and quotes stay with what they open."""
    return unicodedata.category(char) in ("Ps", "Pi")


@dataclass
class _Piece:
    """An unbreakable run of text and whether a space separated it from the previous one."""

    text: str
    spaced: bool
    alone: bool = False
    """A link: a line of its own."""

    @property
    def width(self) -> int:
        return columns(self.text)


def columns(text: str) -> int:
    """Display columns of ``text``: East Asian wide and fullwidth characters take two."""
    if text.isascii():  # every ASCII character is narrow
        return len(text)
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def wrap_text(text: str, width: int = WIDTH) -> str:
    """``text`` with every line wrapped to ``width`` columns (see the module docstring).

    Line breaks already in ``text`` are kept; blank lines stay blank; trailing spaces go.
    """
    return "\n".join(line for source in text.split("\n") for line in _wrap_line(source, width))


def _wrap_line(line: str, width: int) -> Iterator[str]:
    """One source line as wrapped lines; a line that fits and has no link to set apart is
    kept exactly as written (spacing included)."""
    line = line.rstrip()
    if columns(line) <= width and not _HAS_LINK.search(line):  # most lines: nothing to do
        yield line
        return
    item = _ITEM.match(line)
    lead = item.group(0) if item else line[: len(line) - len(line.lstrip())]
    pieces = list(_pieces(line[len(lead) :]))
    if columns(line) <= width and not (any(p.alone for p in pieces) and len(pieces) > 1):
        yield line
        return
    hang = " " * columns(lead) if item else lead
    current, current_width = lead, columns(lead)
    bare, after_link = True, False  # bare: nothing but the lead on the current line yet
    for piece in pieces:
        gap = 1 if piece.spaced and not bare else 0
        fits = current_width + gap + piece.width <= width
        if not bare and (piece.alone or after_link or not fits):
            yield current
            current, current_width, bare, gap = hang, columns(hang), True, 0
        current += " " * gap + piece.text
        current_width += gap + piece.width
        bare, after_link = False, piece.alone
    yield current


def _pieces(text: str) -> Iterator[_Piece]:
    """The unbreakable pieces of one line's text, in order.

    A piece is a link, a phone number, a run of narrow characters between spaces, or one wide
    character, glued to the piece before it where no break is allowed: before a character
    that never starts a line, after one that never ends a line, space or not.
    """
    pieces: list[_Piece] = []
    spaced = False
    for match in _TOKENS.finditer(text):
        kind, value = match.lastgroup, match.group()
        if kind == "space":
            spaced = True
            continue
        if kind == "word":
            previous = pieces[-1] if pieces else None
            narrow = columns(value) == 1
            if (
                previous is not None
                and not previous.alone
                and (
                    (narrow and not spaced and columns(previous.text[-1]) == 1)
                    or never_starts_line(value)
                    or never_ends_line(previous.text[-1])
                )
            ):
                # French puts a space before ":" and inside « »; it must not break either.
                previous.text += (" " if spaced else "") + value
                spaced = False
                continue
        pieces.append(_Piece(value, spaced, alone=kind == "link"))
        spaced = False
    yield from pieces
