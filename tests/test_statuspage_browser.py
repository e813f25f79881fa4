"""The status page in a real headless Chromium (Debian's package; `.ci/run` installs
it). The browser must be there: without it this test fails, never skips. What a person
sees is asserted on the DOM Chromium built (JavaScript off), and screenshots of the
page and of the email digest are saved under docs/."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import zlib
from datetime import timedelta
from pathlib import Path

import pytest
from seeded_store import NOW, seed
from statuspage_harness import Served

from flowbot import report
from flowbot.digest import digest_body

DOCS = Path(__file__).resolve().parent.parent / "docs"
# The README's screenshots are refreshed with FLOWBOT_UPDATE_SCREENSHOTS=1; otherwise
# each run saves its own under pytest's temporary folder (a test must not edit docs/).
UPDATE = os.environ.get("FLOWBOT_UPDATE_SCREENSHOTS") == "1"


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "chromium is not installed: apt-get install -y chromium (as .ci/run does)"
    return found


def browse(
    url: str, profile: Path, *extra: str, javascript: bool = False
) -> subprocess.CompletedProcess[str]:
    """Chromium on `url`. JavaScript is off unless asked for, by the profile's content
    setting (this Chromium's --blink-settings=scriptEnabled=false also stops
    --dump-dom and --screenshot from producing anything)."""
    if not javascript:
        (profile / "Default").mkdir(parents=True, exist_ok=True)
        (profile / "Default" / "Preferences").write_text(
            '{"profile": {"default_content_setting_values": {"javascript": 2}}}'
        )
    return subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
         *extra, url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def pixels(png: Path) -> set[tuple[int, int, int]]:
    """The colours of a PNG (8-bit RGB or RGBA, not interlaced), decoded with zlib."""
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (size,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + size]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        pos += 12 + size
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6)
    step = 4 if colour == 6 else 3
    raw, stride, prev, seen = zlib.decompress(idat), width * step, bytearray(width * step), set()
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for i in range(stride):
            a = line[i - step] if i >= step else 0
            b, c = prev[i], prev[i - step] if i >= step else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        seen.update(tuple(line[i : i + 3]) for i in range(0, stride, step))
        prev = line
    return seen


def near(colours: set[tuple[int, int, int]], hex_colour: str, slack: int = 8) -> bool:
    want = tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return any(all(abs(a - b) <= slack for a, b in zip(c, want, strict=True)) for c in colours)


@pytest.fixture
def served(tmp_path):
    with Served(tmp_path) as s:
        yield s


def test_the_profile_really_turns_javascript_off(tmp_path):
    page = tmp_path / "js.html"
    page.write_text('<p id="x">static</p><script>x.textContent = "script ran"</script>')
    on = browse(page.as_uri(), tmp_path / "on", "--dump-dom", javascript=True).stdout
    assert '<p id="x">script ran</p>' in on
    off = browse(page.as_uri(), tmp_path / "off", "--dump-dom").stdout
    assert '<p id="x">static</p>' in off


def test_a_person_sees_the_firing_incident_and_the_strip_with_javascript_off(served, tmp_path):
    done = browse(served.url + "/", tmp_path / "profile", "--dump-dom")
    dom = done.stdout
    assert "<h1>Status</h1>" in dom, done.stderr[-2000:]
    incident = re.search(r'<tr class="incident[^"]*">(.*?)</tr>', dom, re.S)
    assert incident and "run-failed" in incident.group(1) and "critical" in incident.group(1)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom  # the name, shown as text
    assert "<script>alert(1)</script>" not in dom
    crm = re.search(r'<tr class="flow state-alerting">(.*?)</tr>', dom, re.S)
    assert crm, dom[:2000]
    cells = re.findall(
        r'data-status="(\w+)".*?fill="(#[0-9a-f]{6})".*?>([✓✗…?])</text>', crm.group(1), re.S
    )
    assert cells == [("success", "#1b7f3b", "✓"), ("success", "#1b7f3b", "✓"),
                     ("failed", "#c62828", "✗"), ("failed", "#c62828", "✗")]  # fmt: skip
    assert "last 4 runs: 2 succeeded, 2 failed" in crm.group(1)
    assert "No active silences" not in dom and "web-*" in dom


def test_the_filter_form_works_without_javascript(served, tmp_path):
    dom = browse(served.url + "/?state=ok", tmp_path / "profile", "--dump-dom").stdout
    assert re.findall(r'<tr class="flow state-(\w+)">', dom) == ["ok", "ok", "ok"]
    assert '<option value="ok" selected="">' in dom


def test_with_javascript_off_the_page_shows_red_and_green_runs(served, tmp_path):
    page = (DOCS if UPDATE else tmp_path) / "statuspage.png"
    done = browse(served.url + "/", tmp_path / "p1", f"--screenshot={page}",
                  "--window-size=1280,1000", "--hide-scrollbars")  # fmt: skip
    assert page.is_file() and page.stat().st_size > 10_000, done.stderr[-2000:]
    colours = pixels(page)
    assert near(colours, "#c62828") and near(colours, "#1b7f3b")  # failed and good runs


def test_a_screenshot_of_the_email_digest(tmp_path):
    store = seed(tmp_path / "digest.db")
    try:
        day = report.gather(store, NOW - timedelta(days=1), NOW, ["prod", "dev"])
    finally:
        store.close()
    html = tmp_path / "digest.html"
    html.write_text(digest_body(day, "email")["html"], encoding="utf-8")
    shot = (DOCS if UPDATE else tmp_path) / "digest-email.png"
    done = browse(html.as_uri(), tmp_path / "p2", f"--screenshot={shot}",
                  "--window-size=1280,420", "--hide-scrollbars")  # fmt: skip
    assert shot.is_file() and shot.stat().st_size > 5_000, done.stderr[-2000:]
