"""When a string may be written plain, and how it is quoted when it may not: a YAML file is
read by our loader, by YAML 1.1 editors and by YAML 1.2 tools, and a value one of them would
read as a number, a boolean, null or another string (``0123456``, ``+14255550100``, ``yes``,
``n``) must mean the same string to all of them."""

from __future__ import annotations

import functools
import re

import yaml

_RESOLVER = yaml.SafeLoader("")
"""YAML 1.1's implicit types (PyYAML's resolver): a plain scalar they type is quoted."""
_YAML_1_1_BOOLS = re.compile(r"^(?:y|Y|n|N)$")
"""YAML 1.1 booleans PyYAML does not implement but the specification (and some editors) do."""
_YAML_1_2_CORE = re.compile(
    r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+"
    r"|[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)|null|Null|NULL|~|true|True|TRUE|false|False|FALSE)$"
)
_INDICATORS = "-?:,[]{}#&*!|>'\"%@`"
_FLOW_INDICATORS = ",[]{}:?"
"""End a plain scalar inside ``{…}`` for some reader (PyYAML stops at ``?`` and ``:``)."""


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
