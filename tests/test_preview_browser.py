"""The previews in a real browser: Debian's headless Chromium loads index.html and an email page,
takes screenshots and dumps the DOM.

Without Chromium these tests are skipped with the command that installs it; ``.ci/run`` installs
it and makes them mandatory (``tests/fixtures/system.py``). ``CHROMIUM`` may name another binary.
Screenshots are decoded with the standard library only (PNG chunks, zlib, scanline filters).
"""

from __future__ import annotations

import html
import os
import shutil
import struct
import subprocess
import tempfile
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import main
from tests.fixtures.system import missing_program

ROOT = Path(__file__).resolve().parent.parent
WINDOW = (1000, 1300)
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
    # A sandboxed <iframe srcdoc> (the email body) otherwise gets its own renderer process,
    # which a headless screenshot may capture before it painted: a blank frame, at random.
    "--disable-features=IsolateSandboxedIframes",
    f"--window-size={WINDOW[0]},{WINDOW[1]}",
]
EMAIL_BANNER = (0xFD, 0xE7, 0xE9)  # the PREVIEW banner inside the email's own HTML body
PAGE_HEADER = (0xA4, 0x26, 0x2C)  # the preview pages' red header bar


def chromium_binary() -> str:
    candidate = os.environ.get("CHROMIUM") or "/usr/bin/chromium"
    if os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        missing_program("Chromium", "apt-get install -y chromium, or set CHROMIUM to a "
                        "Chromium binary")
    return found


def chromium(*args: str) -> subprocess.CompletedProcess[bytes]:
    """One headless run with a fresh, throw-away profile."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        result = subprocess.run(
            [chromium_binary(), *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True, timeout=120, check=False,
            env={**os.environ, "HOME": profile},
        )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    return result


def screenshot(url: str, target: Path) -> Image:
    chromium(f"--screenshot={target}", url)
    assert target.is_file(), f"no screenshot written for {url}"
    return read_png(target.read_bytes())


def dump_dom(url: str) -> str:
    return chromium("--dump-dom", url).stdout.decode("utf-8")


def load(url: str, target: Path) -> tuple[Image, str]:
    """Screenshot and DOM dump of one page, the two browsers running side by side."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        shot = pool.submit(screenshot, url, target)
        dom = pool.submit(dump_dom, url)
        return shot.result(), dom.result()


# ----------------------------------------------------------------- PNG, standard library only

@dataclass
class Image:
    width: int
    height: int
    channels: int
    rows: list[bytes]

    def pixels(self, step: int = 1) -> Counter[tuple[int, ...]]:
        """RGB colours of every ``step``-th pixel of every ``step``-th row."""
        counts: Counter[tuple[int, ...]] = Counter()
        c = self.channels
        for row in self.rows[::step]:
            for x in range(0, self.width * c, c * step):
                counts[tuple(row[x:x + 3])] += 1
        return counts


def read_png(data: bytes) -> Image:
    """Decode an 8-bit, non-interlaced RGB/RGBA PNG (what Chromium writes), checking CRCs."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    assert header is not None, "no IHDR"
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = width * channels
    assert len(raw) == height * (stride + 1), "truncated image data"
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        _unfilter(kind, line, previous, channels)
        rows.append(bytes(line))
        previous = line
    return Image(width, height, channels, rows)


def _unfilter(kind: int, line: bytearray, up: bytearray, bpp: int) -> None:
    if kind == 0:
        return
    if kind == 2:  # Up, most rows of a screenshot: byte-wise add without carries (SWAR)
        n = len(line)
        a, b = int.from_bytes(line, "big"), int.from_bytes(up, "big")
        low, high = int.from_bytes(b"\x7f" * n, "big"), int.from_bytes(b"\x80" * n, "big")
        line[:] = (((a & low) + (b & low)) ^ ((a ^ b) & high)).to_bytes(n, "big")
        return
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + ((left + up[i]) >> 1)) & 0xFF
        elif kind == 4:
            corner = up[i - bpp] if i >= bpp else 0
            p = left + up[i] - corner
            pa, pb, pc = abs(p - left), abs(p - up[i]), abs(p - corner)
            pred = left if pa <= pb and pa <= pc else up[i] if pb <= pc else corner
            line[i] = (line[i] + pred) & 0xFF
        else:
            raise AssertionError(f"unknown PNG filter {kind}")


def is_blank(image: Image) -> bool:
    """One colour covers (nearly) everything: what a page that failed to render looks like."""
    counts = image.pixels(step=4)
    total = sum(counts.values())
    return len(counts) < 4 or counts.most_common(1)[0][1] > 0.99 * total


# ------------------------------------------------------------------------------- the tests

@pytest.fixture(scope="module")
def previews(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("browser")
    shutil.copytree(ROOT / "tenants", work / "tenants")
    out = work / "previews"
    result = CliRunner().invoke(main, ["preview", "--out", str(out),
                                       "--config", str(work / "tenants"),
                                       "--state", str(work / "state" / "state.db"),
                                       "--templates", str(ROOT / "templates")],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
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
    assert document.rows == [(u, "enabled") for u in (
        "alice@contoso.com", "bob@contoso.com", "chloe@contoso.com", "dan@contoso.com")]
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
