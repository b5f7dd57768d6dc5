"""Every email type in every shipped language, on a phone: rendered by Debian's headless Chromium
at 320 px (small phones), 375 px (most phones) and 600 px (the desktop layout's full width).

Nothing may be wider than the screen — a French label or a phone number that does not wrap cuts
the details box off on the right — and a screenshot shows each width really painted the email.
Helpers (and why phone widths are ``<iframe>``s) are in ``tests/fixtures/browser.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.emails import TEMPLATE_TYPES, TemplateSet, sample_context
from tests.fixtures.browser import Frame, crop, frames_page, is_blank, measure_widths, screenshot

WIDTHS = (320, 375, 600)
LOCALES = TemplateSet().locales()
BRAND_BLUE = (0x0F, 0x6C, 0xBD)  # the details box's border and the Meeting Update Tool button
GAP = 8  # frames_page puts this many pixels right of each frame


def email_html(locale: str, email_type: str, *, preview: bool = False) -> str:
    """The HTML part of one email with sample values: a toll-free number, the dynamic-ID note
    and a display name, so every optional row and paragraph is there to be measured."""
    context = sample_context(email_type, preview=preview)
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
