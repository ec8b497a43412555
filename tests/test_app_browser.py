"""The app in a real browser (headless Debian chromium through Playwright): the page's layout, upload, generate,
sliders moved with the keyboard, a point moved, the download -> reload -> upload -> nudge round trip, a render that
plays while it renders, and a playable video at the end. Skipped when chromium or playwright is missing.

Needs ``apt-get install -y chromium`` (the binary /usr/bin/chromium) and ``pip install playwright`` (the Python
package only; its own browser download is not used)."""

from __future__ import annotations

import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

import app
from pipeline.app_logic import mouth_opening
from pipeline.landmarks import LandmarkTrack
from tests.conftest import speechlike
from tests.test_app import running_app

CHROMIUM = Path("/usr/bin/chromium")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (the Python package) is not installed")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (apt-get install chromium)")

BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--autoplay-policy=no-user-gesture-required"]
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


def _wait_for(page, selector: str, *words: str) -> str:
    """The text of ``selector`` once it holds one of ``words``."""
    condition = " || ".join(f"t.includes({word!r})" for word in words)
    page.wait_for_function(f"() => {{ const t = document.querySelector({selector!r}).innerText; "
                           f"return {condition}; }}", timeout=TIMEOUT_MS)
    return page.locator(selector).inner_text()


def _wait_for_status(page, *words: str) -> str:
    return _wait_for(page, "#status", *words)


def _upload_inputs(page, folder: Path) -> None:
    page.locator("#photo input[type=file]").set_input_files(str(folder / "photo.png"))
    page.locator("#speech input[type=file]").set_input_files(str(folder / "speech.wav"))
    page.wait_for_selector("#photo img")
    page.wait_for_selector("#speech audio", state="attached")


TRACK_TAB = "Render settings and track file"


def _download(page, selector: str, path: Path, tab: str | None = None) -> Path:
    """The file behind a File component's download link (on the page's ``tab``)."""
    if tab is not None:
        page.get_by_role("tab", name=tab).click()
    link = page.locator(f"{selector} a[href]").first
    link.wait_for(state="attached")
    path.write_bytes(page.request.get(link.get_attribute("href")).body())
    return path


def _track_once(page, path: Path, ready) -> LandmarkTrack:
    """The session's track, downloaded again until ``ready(track)`` (an edit applies a moment after its status)."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while True:
        track = LandmarkTrack.load(_download(page, "#track", path, TRACK_TAB))
        if ready(track) or time.monotonic() > deadline:
            return track
        time.sleep(0.2)


def _slider_value(page, elem_id: str) -> float:
    return float(page.locator(f"#{elem_id} input[type=number]").input_value())


def _nudge(page, elem_id: str, key: str = "ArrowRight") -> None:
    """Move a slider of the "Whole track" tab one step with the keyboard, as a user tabbing through the page would."""
    page.get_by_role("tab", name="Whole track").click()
    page.locator(f"#{elem_id} input[type=range]").focus()
    page.keyboard.press(key)


def test_upload_generate_edit_render(app_url, browser, astronaut, tmp_path):
    Image.fromarray(astronaut).save(tmp_path / "photo.png")
    sf.write(tmp_path / "speech.wav", speechlike(2.0), 16000)
    shots = []

    def shot(name: str) -> None:
        path = tmp_path / f"{len(shots)}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        shots.append(path)
        print(f"screenshot: {path}")

    page = browser.new_page(viewport={"width": 1920, "height": 1080})
    page.set_default_timeout(TIMEOUT_MS)
    start = time.monotonic()
    page.goto(app_url)
    page.wait_for_selector("#generate")
    print(f"page load: {time.monotonic() - start:.2f} s")
    # photo, speech, preview and the result are on one 1080-pixel screen, with the buttons that drive them
    for part in ("#photo", "#speech", "#generate", "#preview", "#video", "#render"):
        box = page.locator(part).bounding_box()
        assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 1080, (part, box)
    _upload_inputs(page, tmp_path)
    shot("inputs")

    start = time.monotonic()
    page.click("#generate")
    page.wait_for_selector("#preview video[src]")
    print(f"click to preview: {time.monotonic() - start:.2f} s")
    assert "50 frames" in _wait_for_status(page, "Landmarks ready")
    shot("preview")

    # a slider moved with the arrow keys applies at once (not only on a mouse release)
    old_preview = page.locator("#preview video").get_attribute("src")
    _nudge(page, "intensity")
    _nudge(page, "intensity")
    assert "Controls applied" in _wait_for_status(page, "Controls applied")
    assert _slider_value(page, "intensity") == pytest.approx(1.1)
    page.wait_for_function(f"() => document.querySelector('#preview video').src !== {old_preview!r}")
    made = _track_once(page, tmp_path / "made.json", lambda t: t.info["edits"]["controls"]["intensity"] > 1.09)
    assert made.info["edits"]["controls"]["intensity"] == pytest.approx(1.1)

    # move a point: click a dot (search outwards from the middle of the face), then where it should go
    page.get_by_role("tab", name="Frames: move points, key the head pose").click()
    frame = page.locator("#frame img")
    frame.wait_for()
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
    page.click("#undo")
    _wait_for_status(page, "Undone")
    shot("undone")

    # the advertised loop: download the track, reload the page, upload it, nudge one slider
    page.reload()
    page.wait_for_selector("#generate")
    _upload_inputs(page, tmp_path)
    page.get_by_role("tab", name=TRACK_TAB).click()
    with page.expect_file_chooser() as chooser:
        page.click("#upload-track")
    chooser.value.set_files(str(tmp_path / "made.json"))
    assert "with its edits" in _wait_for_status(page, "Track loaded")
    assert _slider_value(page, "intensity") == pytest.approx(1.1)  # the sliders come back
    loaded = LandmarkTrack.load(_download(page, "#track", tmp_path / "loaded.json", TRACK_TAB))
    assert np.abs(mouth_opening(loaded) - mouth_opening(made)).max() < 0.05  # loading alone changes nothing
    _nudge(page, "smile")
    assert "Controls applied" in _wait_for_status(page, "Controls applied")
    nudged = _track_once(page, tmp_path / "nudged.json", lambda t: t.info["edits"]["controls"]["smile"] > 0)
    assert nudged.info["edits"]["controls"] == {**made.info["edits"]["controls"], "smile": pytest.approx(0.05)}
    # the smile moves the corners, not the opening: the mouth opens as before (intensity is not applied twice)
    assert np.abs(mouth_opening(nudged) - mouth_opening(made)).max() < 0.5
    shot("reloaded-and-nudged")

    # a number typed into a slider's box applies on Enter: here the head turns 8 degrees on every frame
    page.get_by_role("tab", name="Whole track").click()
    page.locator("#yaw input[type=number]").fill("8")
    page.locator("#yaw input[type=number]").press("Enter")
    turned = _track_once(page, tmp_path / "turned.json", lambda t: t.info["edits"]["controls"]["yaw"] == 8)
    assert np.median(turned.pose[:, 0] - nudged.pose[:, 0]) == pytest.approx(8.0, abs=1.0)

    # render: the video starts playing while the rest renders
    start = time.monotonic()
    page.click("#render")
    page.wait_for_function("() => { const v = document.querySelector('#video video'); "
                           "return v && v.readyState >= 2; }")
    first_frames = time.monotonic() - start
    status_at_first_frames = page.locator("#render-status").inner_text()
    _wait_for(page, "#render-status", "Rendered 50 frames")
    done = time.monotonic() - start
    print(f"click to first frames in the page: {first_frames:.2f} s; to the whole video: {done:.2f} s "
          f"(live: {app.LIVE_RENDER})")
    if app.LIVE_RENDER:  # the first frames play while the rest renders (how soon is printed above, not judged here)
        assert "Rendering" in status_at_first_frames, status_at_first_frames
    rendered = _download(page, "#video-file", tmp_path / "rendered.mp4")
    frames, seconds = imageio_ffmpeg.count_frames_and_secs(rendered)
    assert frames == 50 and seconds == pytest.approx(2.0, abs=0.1)
    shot("rendered")
    assert all(path.stat().st_size > 10_000 for path in shots)

    # a photo without a face: the error is shown and the status no longer says the landmarks are ready
    Image.new("RGB", (300, 300), (120, 130, 140)).save(tmp_path / "wall.png")
    page.locator("#photo input[type=file]").set_input_files(str(tmp_path / "wall.png"))
    page.click("#generate")
    assert "Nothing changed" in _wait_for_status(page, "Nothing changed")
