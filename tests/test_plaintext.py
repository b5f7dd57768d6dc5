"""Plain-text bodies are wrapped in code, the same way for every language
(reconciler/emails/plaintext.py)."""

from __future__ import annotations

import pytest

from reconciler.emails.plaintext import WIDTH, columns, wrap_text

URL = "https://aka.ms/meetingupdatetool"


def widths(text: str) -> list[int]:
    return [columns(line) for line in text.splitlines()]


def test_a_long_paragraph_is_wrapped_at_spaces_within_78_columns() -> None:
    paragraph = " ".join(["conference"] * 40)
    wrapped = wrap_text(paragraph)
    assert max(widths(wrapped)) <= WIDTH
    assert " ".join(wrapped.split("\n")) == paragraph
    assert all(not line.endswith(" ") for line in wrapped.splitlines())


def test_short_lines_blank_lines_and_line_breaks_are_kept() -> None:
    text = "Hello Alice,\n\nLine one\nLine two\n"
    assert wrap_text(text) == text


def test_a_link_stands_on_its_own_line() -> None:
    wrapped = wrap_text(f"1. Download the Meeting Update Tool: {URL}")
    assert wrapped == f"1. Download the Meeting Update Tool:\n   {URL}"
    assert wrap_text(f"See {URL} and then continue.") == f"See\n{URL}\nand then continue."


def test_a_link_longer_than_a_line_is_never_split() -> None:
    url = "https://example.com/" + "a" * 100
    assert wrap_text(f"Open {url} now") == f"Open\n{url}\nnow"


def test_numbered_items_hang_under_their_text() -> None:
    wrapped = wrap_text("2. " + "Install and open it, then sign in with your work account. " * 3)
    first, *rest = wrapped.splitlines()
    assert first.startswith("2. Install") and rest
    assert all(line.startswith("   ") and not line.startswith("    ") for line in rest)


def test_a_phone_number_is_never_split() -> None:
    text = "x" * 60 + " call +1 425-555-0100 (Redmond, WA) now"
    assert "+1 425-555-0100" in wrap_text(text).splitlines()[1]


def test_french_spaces_before_punctuation_and_inside_guillemets_do_not_break() -> None:
    for tail in (" « Mettre à jour ».", " appel : +33 1 44 55 66 77"):
        for filler in range(40, 78):
            for line in wrap_text("x" * filler + tail).splitlines():
                assert not line.startswith((":", "»", "Mettre")), (filler, line)
                assert not line.endswith("«"), (filler, line)


JAPANESE = (
    "電話会議がお使いのアカウントで利用できるようになりました。参加者は、下記の番号に電話を"
    "かけて会議 ID を入力すると、あなたが開催する会議に電話で参加できます。"
)


def test_japanese_wraps_between_characters_counting_two_columns_each() -> None:
    wrapped = wrap_text(JAPANESE)
    assert len(wrapped.splitlines()) == 2
    assert max(widths(wrapped)) <= WIDTH
    assert wrapped.replace("\n", "") == JAPANESE, "no space is added between characters"


OPEN, CLOSE = "\uff08", "\uff09"  # fullwidth parentheses


@pytest.mark.parametrize("filler", range(60, 80))
def test_closing_punctuation_never_starts_a_line_nor_opening_ends_one(filler: int) -> None:
    text = "あ" * (filler // 2) + f"「会議」、。ツール{OPEN}PIN{CLOSE}です。"
    for line in wrap_text(text).splitlines():
        assert columns(line) <= WIDTH
        assert line[0] not in "」、。" + CLOSE, line
        assert line[-1] not in "「" + OPEN, line


def test_an_unbreakable_word_longer_than_a_line_stands_alone() -> None:
    word = "x" * 90
    assert wrap_text(f"a {word} b") == f"a\n{word}\nb"
