"""Escaping values for where they land: a terminal line, JSON, or markdown in a pull-request
comment.

Values come from YAML in a pull request. Validation refuses control and invisible characters in
free text, but the outputs do not rely on it (values also come from older states and files):
anything a terminal would act on (ANSI escapes, C1 controls, bidi overrides) is shown as a
visible ``\\u...`` escape, and in markdown every value is a code span it cannot leave, where no
link, image, mention or HTML is live.

The CI runner reading our output acts on lines too: Azure Pipelines on ``##vso[`` and ``##[``
anywhere in a line, GitHub Actions on ``##[`` anywhere and on ``::`` starting a line (set a
variable, mask a value, stop reading commands). Every printed value has the first character of
those sequences escaped (``\\x23#vso[``, ``\\x3a:error``), wherever it ends up on the line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

_JOINERS = frozenset("\u200c\u200d")
_BACKTICKS = re.compile(r"`+")
_INLINE_MARKUP = re.compile(r"([\\`*_\[\]<>!|~&:@#])")
_LIVE_WORD = re.compile(
    r"""[@#!~%$&^]["\w]|[*\[]\w+:|//|\S\.\S|(?<![a-z0-9])(?:gh-\d|[0-9a-f]{7,40}(?![a-z0-9]))""",
    re.IGNORECASE,
)
"""What a forge turns into a link or a notification even when escaped: mentions and references
(``@team``, ``#12``, ``GH-12``, ``owner/repo#12``, ``!3``, ``~label``, ``%milestone``,
GitLab's ``[vulnerability:1]`` and ``*iteration:1``...), commit SHAs (7 to 40 hex digits, such
as ``deadbeef``), URLs and bare domains (``evil.example``)."""
_SPACES = re.compile(r"( +)")
_WORKFLOW_COMMAND = re.compile(r"#(?=#(?:vso)?\[)|:(?=:)", re.IGNORECASE)
"""The character that starts a CI logging command (``##vso[``, ``##[``, ``::``)."""
_NOT_PRINTABLE_ASCII = re.compile(r"[^\x20-\x7e\n]+")


def visible(text: str) -> str:
    """``text`` with every character a terminal would not simply print written as an escape
    (``\\x1b``, ``\\u202e``...), ZWNJ and ZWJ kept (they spell names), and no CI logging
    command in it (``\\x23#vso[``, ``\\x3a:``): one line of the log that does nothing but
    show the text."""
    return _inert(_printable(text, _escape), _escape)


def _inert(text: str, escape: Callable[[str], str]) -> str:
    """``text`` with the first character of every CI logging command escaped."""
    if "##" not in text and "::" not in text:
        return text
    return _WORKFLOW_COMMAND.sub(lambda start: escape(start.group()), text)


def _printable(text: str, escape: Callable[[str], str]) -> str:
    if text.isprintable():
        return text
    return "".join(
        char if char.isprintable() or char in _JOINERS else escape(char) for char in text
    )


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _json_escape(char: str) -> str:
    return json.dumps(char)[1:-1]


def json_text(value: Any, **options: Any) -> str:
    """``value`` as readable JSON (UTF-8 text kept) in which every character a terminal would
    act on, and the first of every CI logging command, is a JSON ``\\u`` escape: the same data
    for any parser, nothing live on a screen or in a CI log."""
    text = json.dumps(value, ensure_ascii=False, **options)
    text = _NOT_PRINTABLE_ASCII.sub(lambda run: _printable(run.group(), _json_escape), text)
    return _inert(text, lambda char: f"\\u{ord(char):04x}")


def shown(value: Any) -> str:
    """A value as one visible line: text as is, anything else (numbers, mappings) as JSON."""
    return visible(value) if isinstance(value, str) else json_text(value)


def code_span(value: Any) -> str:
    """``value`` as a markdown code span it cannot break out of: the fence is one backtick
    longer than the longest run inside, padded when the value starts or ends with a backtick
    or a space. ``|`` is escaped: GFM splits table cells before reading code spans, and shows
    ``\\|`` as ``|`` in a cell."""
    text = shown(value) or " "
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    fence = "`" * (longest + 1)
    if text[:1] in ("`", " ") or text[-1:] in ("`", " "):
        text = f" {text} "
    text = text.replace("|", "\\|")
    return f"{fence}{text}{fence}"


def markdown_text(text: str) -> str:
    """Plain text inside a line of markdown. A word that a forge would link or notify from
    whatever its escaping (a mention, a reference, a URL, a domain) is a code span; in the
    others the punctuation that starts inline markup (emphasis, code, links, images, HTML,
    entities, emoji, tables) is backslash-escaped."""
    return "".join(
        code_span(word) if _LIVE_WORD.search(word) else _INLINE_MARKUP.sub(r"\\\1", word)
        for word in _SPACES.split(visible(text))
    )
