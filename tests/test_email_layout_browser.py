"""Every email type in every shipped language, on a phone: rendered by Debian's headless Chromium
at 320 px (small phones), 375 px (most phones) and 600 px (the desktop layout's full width).

Nothing may be wider than the screen — a French label or a phone number that does not wrap cuts
the details box off on the right — and a screenshot shows each width really painted the email.
Helpers (and why phone widths are ``<iframe>``s) are in ``tests/fixtures/browser.py``.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from reconciler.emails import DETAIL_TYPES, TEMPLATE_TYPES, TemplateSet, sample_context
from tests.fixtures.browser import (
    Frame,
    chromium_binary,
    crop,
    frames_page,
    is_blank,
    measure_widths,
    probe_frames,
    screenshot,
)
from tests.fixtures.system import missing_program

WIDTHS = (320, 375, 600)
LOCALES = TemplateSet().locales()
BRAND_BLUE = (0x0F, 0x6C, 0xBD)  # the details box's border and the Meeting Update Tool button
GAP = 8  # frames_page puts this many pixels right of each frame


LONG_WORD = "Mönchengladbachzentralbahnhofsvorplatz"
"""38 letters in one word: a location or display name that no screen width fits unbroken."""
CJK = ("ja", "zh-CN")


def email_html(
    locale: str, email_type: str, *, preview: bool = False, long_words: bool = False
) -> str:
    """The HTML part of one email with sample values: a toll-free number, the dynamic-ID note
    and a display name, so every optional row and paragraph is there to be measured; with
    ``long_words``, the name and the numbers' locations are one :data:`LONG_WORD` each."""
    context = sample_context(
        email_type, preview=preview, display_name=LONG_WORD if long_words else "Alice Martin"
    )
    if long_words:
        for key in ("dial_in", "toll_free"):
            if context.get(key) is not None:
                context[key] = dataclasses.replace(context[key], location=LONG_WORD)
    return TemplateSet().render(locale, email_type, context)[2]


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, int]]:
    frames = [
        Frame(
            f"{locale} {email_type}{' preview' if preview else ''} @{width}",
            width,
            email_html(locale, email_type, preview=preview),
        )
        for locale in LOCALES
        for email_type in TEMPLATE_TYPES
        for preview in (False, True)
        for width in WIDTHS
    ]
    frames.append(Frame("too wide @320", 320, '<div style="width:700px">x</div>'))
    return measure_widths(frames, tmp_path_factory.mktemp("measure"))


def test_the_measurement_sees_an_overflowing_page(measured: dict[str, tuple[int, int]]) -> None:
    inner, scroll = measured["too wide @320"]
    assert inner == 320 and scroll >= 700


@pytest.mark.parametrize("locale", LOCALES)
def test_no_email_is_wider_than_a_phone_screen(
    measured: dict[str, tuple[int, int]], locale: str
) -> None:
    mine = {name: sizes for name, sizes in measured.items() if name.startswith(f"{locale} ")}
    assert len(mine) == len(TEMPLATE_TYPES) * 2 * len(WIDTHS)
    for name, (inner, _) in mine.items():
        assert inner == int(name.rsplit("@", 1)[1]), name
    overflowing = {
        name: f"{scroll} px in {inner}" for name, (inner, scroll) in mine.items() if scroll > inner
    }
    assert overflowing == {}


@pytest.mark.parametrize("locale", LOCALES)
def test_screenshots_at_every_width_show_the_email(locale: str, tmp_path: Path) -> None:
    page = tmp_path / "widths.html"
    frames = [Frame(str(width), width, email_html(locale, "enabled")) for width in WIDTHS]
    page.write_text(frames_page(frames, 1000), encoding="utf-8")
    image = screenshot(
        page.as_uri(), tmp_path / f"{locale}.png", window=(sum(WIDTHS) + GAP * len(WIDTHS), 1000)
    )
    left = 0
    for width in WIDTHS:
        frame = crop(image, left, left + width)
        assert not is_blank(frame), f"{locale} at {width} px"
        assert frame.pixels(step=2)[BRAND_BLUE] > 50, f"{locale} at {width} px: no details box"
        left += width + GAP


PHONE_WIDTHS = (320, 375)
_LINES_OF_EACH_NUMBER = """(w, d) => ({
  width: [w.innerWidth, d.documentElement.scrollWidth],
  numbers: [...d.querySelectorAll('a[href^="tel:"]')].map(a => a.getClientRects().length),
})"""


@pytest.fixture(scope="module")
def long_words(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    frames = [
        Frame(
            f"{locale} {email_type} @{width}",
            width,
            email_html(locale, email_type, long_words=True),
        )
        for locale in LOCALES
        for email_type in TEMPLATE_TYPES
        for width in PHONE_WIDTHS
    ]
    return probe_frames(frames, tmp_path_factory.mktemp("long"), _LINES_OF_EACH_NUMBER)


@pytest.mark.parametrize("locale", LOCALES)
def test_a_name_or_location_of_one_long_word_wraps_inside_a_phone_screen(
    long_words: dict[str, Any], locale: str
) -> None:
    mine = {name: found for name, found in long_words.items() if name.startswith(f"{locale} ")}
    assert len(mine) == len(TEMPLATE_TYPES) * len(PHONE_WIDTHS)
    overflowing = {
        name: f"{scroll} px in {inner}"
        for name, found in mine.items()
        for inner, scroll in [found["width"]]
        if scroll > inner
    }
    assert overflowing == {}


@pytest.mark.parametrize("locale", LOCALES)
def test_a_phone_number_never_breaks_across_lines(long_words: dict[str, Any], locale: str) -> None:
    mine = {name: found for name, found in long_words.items() if name.startswith(f"{locale} ")}
    numbers = {name: found["numbers"] for name, found in mine.items()}
    with_details = [n for n in numbers if n.split()[1] in DETAIL_TYPES]
    assert with_details and all(numbers[n] for n in with_details), "numbers were measured"
    assert {name: lines for name, lines in numbers.items() if set(lines) - {1}} == {}


_CJK_GLYPHS = """(w, d) => {
  const cjk = /[\u3040-\u30ff\u4e00-\u9fff]/;
  const p = [...d.querySelectorAll("p")].find(e => cjk.test(e.textContent));
  const style = w.getComputedStyle(p);
  const chars = [...new Set([...d.body.textContent].filter(c => cjk.test(c)))].slice(0, 6);
  const canvas = d.createElement("canvas");
  canvas.width = canvas.height = 48;
  const g = canvas.getContext("2d");
  g.font = style.font;
  const drawn = chars.map(c => {
    g.clearRect(0, 0, 48, 48);
    g.fillText(c, 4, 36);
    return Array.from(g.getImageData(0, 0, 48, 48).data).join();
  });
  return {chars: chars.length, shapes: new Set(drawn).size,
          widths: chars.map(c => g.measureText(c).width / parseFloat(style.fontSize))};
}"""


def has_font_for(language: str) -> bool:
    """Whether fontconfig knows a font for ``language`` (what Chromium falls back to)."""
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        return False
    found = subprocess.run(
        [fc_list, f":lang={language}", "family"], capture_output=True, text=True, check=False
    )
    return bool(found.stdout.strip())


def test_japanese_and_chinese_are_drawn_with_a_cjk_font(tmp_path: Path) -> None:
    """Each character its own glyph, one em wide: not the identical empty boxes a browser
    draws without a CJK font (.ci/run installs Debian's fonts-noto-cjk)."""
    chromium_binary()  # without Chromium: skipped as every layout test is
    for locale in CJK:
        if not has_font_for(locale.split("-")[0]):
            missing_program(f"a font for {locale}", "apt-get install -y fonts-noto-cjk")
    frames = [Frame(f"{locale}", 375, email_html(locale, "enabled")) for locale in CJK]
    found = probe_frames(frames, tmp_path, _CJK_GLYPHS)
    for locale in CJK:
        glyphs = found[locale]
        assert glyphs["chars"] == 6 and glyphs["shapes"] == 6, (locale, glyphs)
        assert all(0.9 <= width <= 1.1 for width in glyphs["widths"]), (locale, glyphs)
