"""Schema patterns mean in our validator what they mean in the JSON Schema standard (ECMA-262),
which editors use: no trailing newline after ``$``, ASCII digits only. Checked against a real
ECMA-262 engine (``regress``) on generated values, for every pattern the schemas publish."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import regress
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.config.schema import check, ecma_regex, fast_check
from reconciler.resources import data_dir
from tests.helpers.tenants import tenant_doc, write_tenant
from tests.helpers.workspace import NewWorkspace


def published_patterns() -> list[str]:
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("pattern"), str):
                found.add(node["pattern"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in data_dir("schemas").glob("*.json"):
        walk(json.loads(path.read_text(encoding="utf-8")))
    return sorted(found)


PATTERNS = published_patterns()
CONSTRUCTS = [
    r"^a.b$",
    r"^\s*x\s*$",
    r"^[\sx]+$",
    r"^\S+$",
    r"^\w+$",
    r"^\W$",
    r"\bab\b",
    r"^\D+$",
    r"^\d+\$$",
    r"^[$.]+$",
    r"(a|b)$",
]
r"""What the translation to Python changes beyond today's schemas: ``.``, ``\s``, ``\w``, ``\b``,
``\d``, and ``$`` or ``.`` escaped or in a class (left as they are)."""
TRICKY_PIECES = [
    "\n",
    "\r",
    "\r\n",
    "\u2028",
    "\x00",
    " ",
    "\u0660",
    "\uff11",
    "\u0967",
    "é",
    "+",
    "-",
    "a",
    "Z",
    "https://",
    "http://",
    "~",
    "\x7f",
    "\u00a0",
    "\ufeff",
    "\x85",
    "\x1c",
    "\u2000",
    "_",
    "$",
    ".",
]
TRICKY = st.sampled_from(TRICKY_PIECES)


def near_misses(pattern: str) -> st.SearchStrategy[str]:
    """Strings that match ``pattern`` in ECMA, then edited at their ends: where ``$`` and the
    character classes differ between engines."""
    valid = st.from_regex(ecma_regex(pattern), fullmatch=True)
    return st.one_of(
        valid,
        st.tuples(valid, TRICKY).map("".join),
        st.tuples(TRICKY, valid).map("".join),
        st.tuples(valid, st.lists(TRICKY, max_size=3).map("".join), valid).map("".join),
        st.text(max_size=20),
    )


def with_one_tricky_piece(value: str) -> list[str]:
    """``value`` and copies of it with one character replaced by a tricky piece: where ``.``
    and the classes differ inside a value. Every position of a value up to 40 characters; of a
    longer one (the language-tag pattern makes some of hundreds), its first and last 20 and
    every fourth in between: the 300 examples put every kind of character there."""
    edge = 20
    positions = range(len(value))
    if len(value) > 2 * edge:
        positions = [
            *range(edge),
            *range(edge, len(value) - edge, 4),
            *range(len(value) - edge, len(value)),
        ]
    return [value] + [
        value[:i] + char + value[i + 1 :] for i in positions for char in TRICKY_PIECES
    ]


def test_every_published_schema_pattern_is_checked() -> None:
    assert {r"^[0-9]{7}$", r"^[a-z0-9-]{1,63}$", r"^\+[1-9][0-9]{6,14}$"} <= set(PATTERNS)


@pytest.mark.parametrize("pattern", PATTERNS + CONSTRUCTS)
def test_patterns_match_exactly_what_ecma_262_matches(pattern: str) -> None:
    ecma, translated = regress.Regex(pattern), ecma_regex(pattern)

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(value=near_misses(pattern))
    def agree(value: str) -> None:
        for edited in with_one_tricky_piece(value):
            ours = translated.search(edited) is not None
            assert ours == (ecma.find(edited) is not None), edited

    agree()


@pytest.mark.parametrize(
    "value",
    [
        "1234567\n",
        "\u0661\u0662\u0663\u0664\u0665\u0666\u0667",
        "\uff11\uff12\uff13\uff14\uff15\uff16\uff17",
        "1234567\r",
    ],
)
def test_a_conference_id_with_a_trailing_newline_or_foreign_digits_is_refused(value: str) -> None:
    user = {"license": True, "conference_id": value}
    assert check(user, "users.schema.json", "u.yaml", definition="user")
    predicate = fast_check("users.schema.json", "user")
    assert predicate is not None and not predicate(user)


def test_two_users_cannot_share_a_conference_id_through_a_trailing_newline(
    new_workspace: NewWorkspace,
) -> None:
    ws = new_workspace()
    users = (
        'users:\n  a@acme.com: {license: true, conference_id: "1234567\\n"}\n'
        "  b@acme.com: {license: true, conference_id: '1234567'}\n"
    )
    write_tenant(ws.config, "acme", tenant_doc(), users)
    for command in (["validate"], ["plan"], ["apply", "--auto-approve"]):
        result = ws.run(*command)
        assert result.code == 1 and "Traceback" not in result.output, str(result)
        assert result.stderr.splitlines()[0] == (
            "acme/users.yaml:2:46: conference_id: '1234567\\n' must be exactly 7 digits, "
            'e.g. "8412345"'
        )
        assert not Path(ws.state).exists() and not ws.maildir.exists()
