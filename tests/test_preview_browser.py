"""The previews in a real browser: Debian's headless Chromium loads index.html and an email page,
takes screenshots and dumps the DOM (helpers in ``tests/fixtures/browser.py``).
"""

from __future__ import annotations

import html
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.fixtures.browser import WINDOW, Frame, is_blank, load, measure_widths, screenshot
from tests.helpers.tenants import copy_example
from tests.helpers.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
EMAIL_BANNER = (0xFD, 0xE7, 0xE9)  # the PREVIEW banner inside the email's own HTML body
PAGE_HEADER = (0xA4, 0x26, 0x2C)  # the preview pages' red header bar


# ------------------------------------------------------------------------------- the tests


@pytest.fixture(scope="module")
def previews(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = Workspace.create(tmp_path_factory.mktemp("browser"))
    copy_example(ws.config)
    out = ws.root / "previews"
    result = ws.cli(
        "preview",
        "--out",
        str(out),
        "--config",
        str(ws.config),
        "--state",
        ws.state,
        "--templates",
        str(ROOT / "templates"),
    )
    assert result.code == 0, str(result)
    return out


class Document(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.rows: list[tuple[str, str]] = []
        self.srcdoc: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "tr" and "data-user" in values:
            self.rows.append((str(values["data-user"]), str(values["data-type"])))
        if tag == "iframe" and values.get("srcdoc"):
            self.srcdoc.append(str(values["srcdoc"]))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(dom: str) -> Document:
    document = Document()
    document.feed(dom)
    return document


def test_png_reader_and_blank_detection(tmp_path: Path) -> None:
    """The checks below can fail: an empty page is judged blank."""
    empty = tmp_path / "empty.html"
    empty.write_text("<!DOCTYPE html><html><body></body></html>", encoding="utf-8")
    image = screenshot(empty.as_uri(), tmp_path / "empty.png")
    assert (image.width, image.height) == WINDOW
    assert is_blank(image)


def test_index_renders_in_chromium(previews: Path, tmp_path: Path) -> None:
    url = (previews / "index.html").as_uri()
    image, dom = load(url, tmp_path / "index.png")
    assert (image.width, image.height) == WINDOW
    assert not is_blank(image)
    assert image.pixels(step=2)[PAGE_HEADER] > 1000  # the styled header bar was painted

    document = parse(dom)
    text = " ".join(document.text)
    assert "PREVIEW: Audio Conferencing emails" in text
    assert "Tenant contoso" in text and "4 email(s) in 1 tenant(s)" in text
    assert document.rows == [
        (u, "enabled")
        for u in ("alice@contoso.com", "bob@contoso.com", "chloe@contoso.com", "dan@contoso.com")
    ]
    assert "new user with Audio Conferencing" in text


def test_email_page_renders_in_chromium(previews: Path, tmp_path: Path) -> None:
    page = previews / "contoso" / "0001-alice@contoso.com-enabled.html"
    image, dom = load(page.as_uri(), tmp_path / "email.png")
    assert not is_blank(image)
    colours = image.pixels(step=2)
    assert colours[PAGE_HEADER] > 1000
    # the email's own HTML body rendered inside the sandboxed frame (its PREVIEW banner)
    assert colours[EMAIL_BANNER] > 1000

    document = parse(dom)
    text = " ".join(document.text)
    assert "PREVIEW: enabled email to alice@contoso.com" in text
    assert "alice@contoso.com" in text and "Alice Martin" in text
    assert "[PREVIEW] Audio Conferencing is now set up for you" in text
    assert "••••••" in text  # plain-text body, PIN masked
    (body,) = document.srcdoc
    body = html.unescape(body) if "&lt;" in body else body
    assert "PREVIEW — not sent" in body and "••••••" in body
    assert "<script" not in body.lower()


def test_preview_pages_fit_a_phone_screen(previews: Path, tmp_path: Path) -> None:
    """The index (wide tables), an email page (long Message-ID, the email in a frame) and a
    sample page at 320, 375 and 600 px: nothing wider than the screen; a wide table scrolls
    inside its box."""
    pages = {
        "index": previews / "index.html",
        "email": previews / "contoso" / "0003-chloe@contoso.com-enabled.html",
        "sample": previews / "_locales" / "de" / "enabled.html",
    }
    frames = [
        Frame(f"{name} @{width}", width, path.read_text(encoding="utf-8"))
        for name, path in pages.items()
        for width in (320, 375, 600)
    ]
    measured = measure_widths(frames, tmp_path)
    assert {name: inner for name, (inner, _) in measured.items()} == {
        f.name: f.width for f in frames
    }
    assert {name: scroll for name, (inner, scroll) in measured.items() if scroll > inner} == {}
