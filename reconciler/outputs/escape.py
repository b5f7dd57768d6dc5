"""Escaping values for where they land: a terminal line, or markdown in a pull-request comment.

Values come from YAML in a pull request. Validation refuses control and invisible characters in
free text, but the outputs do not rely on it (values also come from older states and files):
anything a terminal would act on (ANSI escapes, C1 controls, bidi overrides) is shown as a
visible ``\\u...`` escape, and in markdown every value is a code span it cannot leave, where no
link, image, mention or HTML is live.
"""

from __future__ import annotations

import json
import re
from typing import Any

_JOINERS = frozenset("\u200c\u200d")
_BACKTICKS = re.compile(r"`+")
_INLINE_MARKUP = re.compile(r"([\\`*_\[\]<>!|~&:@#])")


def visible(text: str) -> str:
    """``text`` with every character a terminal would not simply print written as an escape
    (``\\x1b``, ``\\u202e``...); ZWNJ and ZWJ, which spell names, are kept."""
    if text.isprintable():
        return text
    return "".join(
        char if char.isprintable() or char in _JOINERS else _escape(char) for char in text
    )


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def shown(value: Any) -> str:
    """A value as one visible line: text as is, anything else (numbers, mappings) as JSON."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return visible(text)


def code_span(value: Any, *, in_table: bool = True) -> str:
    """``value`` as a markdown code span it cannot break out of: the fence is one backtick
    longer than the longest run inside, padded when the value starts or ends with a backtick
    or a space. In a table, ``|`` is escaped (GFM splits cells before reading code spans)."""
    text = shown(value) or " "
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    fence = "`" * (longest + 1)
    if text[:1] in ("`", " ") or text[-1:] in ("`", " "):
        text = f" {text} "
    if in_table:
        text = text.replace("|", "\\|")
    return f"{fence}{text}{fence}"


def markdown_text(text: str) -> str:
    """Plain text inside a line of markdown: the punctuation that starts inline markup
    (emphasis, code, links, images, HTML, entities, emoji, tables) backslash-escaped, and ``@``
    followed by a word joiner so no mention notifies anyone."""
    return _INLINE_MARKUP.sub(r"\\\1", visible(text)).replace("\\@", "@\u2060")
