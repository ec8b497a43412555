"""The app in a real browser (headless Debian chromium through Playwright): upload, generate, move a point,
render, and a playable video at the end. Skipped when chromium or playwright is missing.

Needs ``apt-get install -y chromium`` (the binary /usr/bin/chromium) and ``pip install playwright`` (the Python
package only; its own browser download is not used)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import soundfile as sf
from PIL import Image

from tests.conftest import speechlike
from tests.test_app import running_app

CHROMIUM = Path("/usr/bin/chromium")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (the Python package) is not installed")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (apt-get install chromium)")

BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update"]
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("app")) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        yield browser
        browser.close()


def _status(page) -> str:
    return page.locator("#status").inner_text()


def _wait_for_status(page, *words: str) -> str:
    condition = " || ".join(f"t.includes({word!r})" for word in words)
    page.wait_for_function(f"() => {{ const t = document.querySelector('#status').innerText; return {condition}; }}",
                           timeout=TIMEOUT_MS)
    return _status(page)


def test_upload_generate_edit_render(app_url, browser, astronaut, tmp_path):
    Image.fromarray(astronaut).save(tmp_path / "photo.png")
    sf.write(tmp_path / "speech.wav", speechlike(2.0), 16000)
    shots = []

    def shot(name: str) -> None:
        path = tmp_path / f"{len(shots)}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        shots.append(path)
        print(f"screenshot: {path}")

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    start = time.monotonic()
    page.goto(app_url)
    page.wait_for_selector("#generate")
    print(f"page load: {time.monotonic() - start:.2f} s")
    page.locator("#photo input[type=file]").set_input_files(str(tmp_path / "photo.png"))
    page.locator("#speech input[type=file]").set_input_files(str(tmp_path / "speech.wav"))
    page.wait_for_selector("#photo img")
    page.wait_for_selector("#speech audio", state="attached")
    shot("inputs")

    start = time.monotonic()
    page.click("#generate")
    page.wait_for_selector("#preview video[src]")
    page.wait_for_selector("#frame img")
    print(f"click to preview: {time.monotonic() - start:.2f} s")
    assert "50 frames" in _wait_for_status(page, "Landmarks ready")
    shot("preview")

    # move a point: click a dot (search outwards from the middle of the face), then where it should go
    frame = page.locator("#frame img")
    box = frame.bounding_box()
    message = ""
    for dx, dy in [(0, 0), (0, 0.08), (0.08, 0), (-0.08, 0), (0, -0.08), (0.1, 0.12), (-0.1, 0.12)]:
        frame.click(position={"x": box["width"] * (0.5 + dx), "y": box["height"] * (0.5 + dy)})
        message = _wait_for_status(page, "selected", "No landmark")
        if "selected" in message:
            break
    assert "selected" in message, message
    shot("selected")
    old_preview = page.locator("#preview video").get_attribute("src")
    frame.click(position={"x": box["width"] * 0.5, "y": box["height"] * 0.7})
    assert "1 point edit" in _wait_for_status(page, "Moved point")
    page.wait_for_function(f"() => document.querySelector('#preview video').src !== {old_preview!r}")
    shot("moved")

    start = time.monotonic()
    page.click("#render")
    page.wait_for_selector("#video video[src]")
    duration = page.evaluate(
        """async () => {
            const video = document.querySelector('#video video');
            if (!(video.duration > 0)) {
                await new Promise((resolve, reject) => {
                    video.addEventListener('loadedmetadata', resolve, {once: true});
                    video.addEventListener('error', () => reject(new Error('the video did not load')), {once: true});
                    video.load();
                });
            }
            return video.duration;
        }"""
    )
    print(f"click to rendered video: {time.monotonic() - start:.2f} s, duration {duration:.2f} s")
    assert duration == pytest.approx(2.0, abs=0.1)
    assert "Rendered 50 frames" in page.locator("#render-status").inner_text()
    shot("rendered")
    assert all(path.stat().st_size > 10_000 for path in shots)

    # a photo without a face: the error is shown and the status no longer says the landmarks are ready
    Image.new("RGB", (300, 300), (120, 130, 140)).save(tmp_path / "wall.png")
    page.locator("#photo input[type=file]").set_input_files(str(tmp_path / "wall.png"))
    page.click("#generate")
    assert "Nothing changed" in _wait_for_status(page, "Nothing changed")
