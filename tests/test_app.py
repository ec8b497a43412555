"""The web app: its pure helpers (pipeline/app_logic.py) and its API, through gradio_client against a launched app
on a tiny checkpoint."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from pipeline import app_logic as al
from pipeline.audio import num_video_frames
from pipeline.canonical import inter_ocular
from pipeline.edits import move_point
from pipeline.face import FaceDetection
from pipeline.landmarks import LandmarkTrack
from pipeline.pipeline_talking_face import CHUNK_FRAMES
from pipeline.regions import JAW, LOWER_FACE, NOSE
from pipeline.video import iter_video_frames
from tests.conftest import speechlike

SECONDS = 2.0
FRAMES = num_video_frames(int(SECONDS * 16000), 25.0)  # 50


# ----------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def talking(astronaut_landmarks) -> LandmarkTrack:
    """40 frames of the astronaut's face whose jaw and lower lip swing open and shut twice."""
    frames = np.repeat(astronaut_landmarks[None].astype(np.float64), 40, axis=0)
    opening = 0.12 * inter_ocular(astronaut_landmarks) * (0.5 - 0.5 * np.cos(np.linspace(0, 4 * np.pi, 40)))
    for idx in list(range(5, 12)) + list(range(55, 60)) + list(range(65, 68)):
        frames[:, idx, 1] += opening
    return LandmarkTrack(frames, 25, (512, 512), reference=astronaut_landmarks)


@pytest.fixture
def inputs(astronaut, astronaut_landmarks):
    from pipeline.pipeline_talking_face import TalkingFaceInputs

    face = FaceDetection(astronaut_landmarks, (0, 0, 10, 10), 1.0, 1)
    return TalkingFaceInputs(astronaut, face, speechlike(40 / 25), 25.0)


@pytest.fixture
def session(inputs, talking) -> al.EditSession:
    return al.new_session(inputs, talking, al.NEUTRAL_CONTROLS, seed=3)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_app(folder: Path) -> Iterator[str]:
    """Launch app.py's demo on a tiny saved checkpoint (loaded through ``$TALKING_FACE_CHECKPOINT``) on a free
    localhost port; yields its URL and closes it afterwards."""
    from diffusers import DDIMScheduler

    from pipeline import MouthOpeningRegressor, TalkingFacePipeline
    from pipeline.loading import load_pipeline
    from tests.conftest import get_dummy_components
    from tests.test_face_renderer import tiny_model

    components = get_dummy_components()
    regressor = MouthOpeningRegressor(context=2)
    with torch.no_grad():  # openings of a few hundredths of the eye distance, as real ones
        regressor.filter.weight.mul_(0.05)
        regressor.filter.bias.fill_(0.03)
    tiny = TalkingFacePipeline(**components, face_renderer=tiny_model(), mouth_regressor=regressor,
                               renderer_scheduler=DDIMScheduler.from_config(components["scheduler"].config))
    tiny.save_pretrained(folder / "checkpoint")
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TALKING_FACE_CHECKPOINT", str(folder / "checkpoint"))
        mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        torch.set_num_threads(1)  # the tiny model is fastest on one thread, above all on a busy CPU
        from app import create_demo

        demo = create_demo(load_pipeline()).queue(default_concurrency_limit=4)
        port = _free_port()
        demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
        try:
            yield f"http://127.0.0.1:{port}/"
        finally:
            demo.close()
            torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def app_url(tmp_path_factory) -> Iterator[str]:
    with running_app(tmp_path_factory.mktemp("app")) as url:
        yield url


@pytest.fixture(scope="module")
def media(tmp_path_factory, astronaut) -> Path:
    folder = tmp_path_factory.mktemp("media")
    Image.fromarray(astronaut).save(folder / "photo.png")
    sf.write(folder / "speech.wav", speechlike(SECONDS), 16000)
    sf.write(folder / "silence.wav", np.zeros(16000, np.float32), 16000)
    ramp = np.linspace(0, 255, 256, dtype=np.uint8)
    Image.fromarray(np.stack([np.tile(ramp, (256, 1))] * 3, axis=-1)).save(folder / "no_face.png")
    return folder


@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


def _landmarks(client, media: Path, photo: str = "photo.png", speech: str = "speech.wav", seed: int = 0, **controls):
    from gradio_client import handle_file

    values = {"intensity": 1.0, "smile": 0.0, "smoothing": 0.0, "blink_rate": 0.0, "head_motion": 1.0, "yaw": 0.0,
              "pitch": 0.0, "roll": 0.0, **controls}
    return client.predict(handle_file(str(media / photo)), handle_file(str(media / speech)), seed, 2.0, 2,
                          *values.values(), api_name="/landmarks")


def _video_path(value) -> str:
    return value["video"] if isinstance(value, dict) else value


# ----------------------------------------------------------------------------------------------------
# Pure helpers


def test_draw_landmarks_marks_points_and_leaves_input(astronaut, astronaut_landmarks):
    before = astronaut.copy()
    out = al.draw_landmarks(astronaut, astronaut_landmarks, selected=57)
    assert out.shape == astronaut.shape and out.dtype == np.uint8
    assert np.array_equal(astronaut, before)
    x, y = np.round(astronaut_landmarks[30]).astype(int)
    assert np.abs(out[y - 1 : y + 2, x - 1 : x + 2].astype(int) - astronaut[y - 1 : y + 2, x - 1 : x + 2]).max() > 40
    yellow = (out[..., 0] > 230) & (out[..., 1] > 200) & (out[..., 2] < 60)
    assert yellow.sum() > 20  # the selected point's ring


def test_view_box_round_trip_and_crop(astronaut, astronaut_landmarks):
    view = al.ViewBox.around(astronaut_landmarks, (512, 512))
    assert 0 <= view.left and view.left + view.side <= 512 and 0 <= view.top and view.top + view.side <= 512
    inside = view.to_view(astronaut_landmarks)
    assert inside.min() > 0 and inside.max() < view.size
    assert np.allclose(view.to_image(inside), astronaut_landmarks, atol=1e-4)
    assert view.crop(astronaut).shape == (al.VIEW_SIZE, al.VIEW_SIZE, 3)
    assert al.nearest_point(astronaut_landmarks, astronaut_landmarks[33] + 1) == 33
    assert al.nearest_point(astronaut_landmarks, (-500, -500), max_distance=10) is None


def test_plot_timeline_shape_and_curves(talking):
    image = al.plot_timeline(speechlike(talking.duration), talking, frame=10, width=800, height=240)
    assert image.shape == (240, 800, 3) and image.dtype == np.uint8
    red = (image[..., 0] > 190) & (image[..., 1] < 90) & (image[..., 2] < 130)
    blue = (image[..., 2] > 190) & (image[..., 0] < 80)
    assert red.sum() > 200 and blue.sum() > 200
    keyed = al.plot_timeline(speechlike(talking.duration), talking, frame=10, width=800, height=240,
                             edits=(al.PoseKey(5, 10.0, 0.0, 0.0), al.PointEdit(30, 57, 0.0, 4.0)))
    green = (keyed[..., 1] > 140) & (keyed[..., 0] < 60) & (keyed[..., 2] < 110)
    purple = (keyed[..., 0] > 130) & (keyed[..., 2] > 180) & (keyed[..., 1] < 90)
    assert green[:24].sum() > 15 and purple[:24].sum() > 10  # ticked above the chart
    assert not ((image[..., 1] > 140) & (image[..., 0] < 60) & (image[..., 2] < 110))[:24].any()


def test_mouth_opening_and_eye_openness(talking):
    opening = al.mouth_opening(talking)
    assert opening.shape == (40,) and opening.argmax() in range(8, 13) and opening.max() > opening.min() + 0.05
    eyes = al.eye_openness(talking)
    assert np.allclose(eyes, 1.0, atol=0.05)
    blinked = al.apply_controls(talking, replace(al.NEUTRAL_CONTROLS, blink_rate=40), seed=1)
    assert al.eye_openness(blinked).min() < 0.3


def test_neutral_controls_keep_the_track(talking):
    out = al.apply_controls(talking, al.NEUTRAL_CONTROLS)
    assert np.allclose(out.frames, talking.frames, atol=1e-3) and out.frames is not talking.frames


def test_controls(talking):
    lower = list(LOWER_FACE)
    frozen = al.apply_controls(talking, replace(al.NEUTRAL_CONTROLS, intensity=0.0))
    assert np.abs(frozen.frames[:, lower] - talking.reference[lower]).max() < 1.0
    smile = al.apply_controls(talking, replace(al.NEUTRAL_CONTROLS, smile=1.0))
    d = smile.frames - talking.frames  # upright face: corners go out (x) and up (-y)
    assert d[:, 48, 0].max() < -1 and d[:, 54, 0].min() > 1 and d[:, 48, 1].max() < -1 and d[:, 64, 1].max() < -1
    assert np.allclose(d[:, list(NOSE) + list(JAW)], 0, atol=1e-3)
    smooth = al.apply_controls(talking, replace(al.NEUTRAL_CONTROLS, smoothing=3.0))
    assert np.ptp(smooth.frames[:, 57, 1]) < np.ptp(talking.frames[:, 57, 1])
    sway = al.apply_controls(talking, replace(al.NEUTRAL_CONTROLS, head_motion=2.0), seed=5)
    again = al.apply_controls(talking, replace(al.NEUTRAL_CONTROLS, head_motion=2.0), seed=5)
    assert np.array_equal(sway.frames, again.frames)
    assert np.abs(sway.frames[:, list(NOSE)] - talking.frames[:, list(NOSE)]).max() > 1


def test_click_selects_then_moves_with_easing(session):
    frame = 20
    target_point = 57
    view_xy = session.view.to_view(session.track.points2d[frame, target_point])
    selected, message = al.click(session, frame, view_xy + 1)
    assert selected.selected == target_point and "selected" in message
    assert selected.track is session.track and not selected.can_undo  # selecting is not an edit
    goal = view_xy + [0, 30]
    moved, message = al.click(selected, frame, goal, radius=3)
    assert "Moved point 57" in message and moved.selected is None and moved.can_undo
    assert np.allclose(moved.view.to_view(moved.track.points2d[frame, target_point]), goal, atol=1e-3)
    shift = np.linalg.norm(moved.track.frames[:, target_point] - session.track.frames[:, target_point], axis=-1)
    assert shift[frame - 3 : frame + 4].min() > 0 and shift[: frame - 3].max() == 0 and shift[frame + 4 :].max() == 0
    nothing, message = al.click(session, frame, (-100, -100))
    assert nothing is session and "No landmark" in message
    cancelled, message = al.click(selected, frame, view_xy)
    assert cancelled.selected is None and cancelled.track is session.track


def test_point_edits_survive_control_changes_and_undo(session):
    moved = al.with_point_moved(session, 10, 57, session.track.points2d[10, 57] + [0, 8])
    louder = al.with_controls(moved, replace(moved.controls, intensity=1.5))
    assert louder.edits == moved.edits
    delta = louder.track.frames[10, 57] - al.apply_controls(louder.base, louder.controls, louder.seed).frames[10, 57]
    assert np.allclose(delta, [0, 8, 0], atol=1e-3)
    assert al.with_controls(louder, louder.controls) is louder
    back = al.undo(louder)
    assert back.controls == moved.controls and np.allclose(back.track.frames, moved.track.frames)
    assert np.allclose(al.undo(back).track.frames, session.track.frames) and not al.undo(back).can_undo
    assert al.undo(session) is session
    cleared = al.reset(louder)
    assert cleared.edits == () and cleared.controls == session.initial_controls
    assert np.allclose(cleared.track.frames, session.track.frames) and al.undo(cleared).edits == louder.edits


def test_redo_brings_back_what_undo_took_until_a_new_change(session):
    louder = al.with_controls(session, replace(session.controls, intensity=1.5))
    smiling = al.with_controls(louder, replace(louder.controls, smile=0.5))
    back = al.undo(al.undo(smiling))
    assert back.controls == session.controls and al.redo(session) is session
    again = al.redo(al.redo(back))
    assert again.controls == smiling.controls and np.allclose(again.track.frames, smiling.track.frames)
    assert al.redo(again) is again and al.undo(again).controls == louder.controls
    branched = al.with_controls(al.undo(smiling), replace(louder.controls, smoothing=1.0))
    assert branched.future == () and al.redo(branched) is branched  # a new change ends the redo line


def test_head_pose_controls_and_keyframes(session):
    """Global yaw/pitch/roll offsets and a pose keyframe, eased in and out; both recorded in the exported track, so
    loading it restores them instead of turning the head twice; undo takes a keyframe back."""
    turned = al.with_controls(session, replace(session.controls, yaw=12.0, roll=-6.0))
    change = turned.track.pose[:, :3] - session.track.pose[:, :3]
    assert np.allclose(change[:, 0], 12.0, atol=1.0) and np.allclose(change[:, 2], -6.0, atol=1.0)
    keyed = al.with_pose_key(turned, 20, (0.0, 10.0, 0.0), radius=6)
    pitch = keyed.track.pose[:, 1] - turned.track.pose[:, 1]
    assert pitch[20] == pytest.approx(10.0, abs=1.0) and pitch.argmax() in range(19, 22)
    assert np.abs(pitch[:14]).max() < 1e-3 and np.abs(pitch[27:]).max() < 1e-3 and 0 < pitch[16] < pitch[19]
    assert keyed.edits == (al.PoseKey(20, 0.0, 10.0, 0.0, 6),) and keyed.track.info["pose_keys"] == 1
    assert np.allclose(al.undo(keyed).track.frames, turned.track.frames)
    restored = al.recorded_edits(LandmarkTrack.from_dict(al.exported_track(keyed).to_dict(decimals=3)))
    assert restored is not None
    base, controls, edits, _ = restored
    assert controls == keyed.controls and edits == keyed.edits
    with pytest.raises(IndexError):
        al.with_pose_key(session, 10_000, (1, 0, 0))


def test_render_rates_estimate_from_what_the_server_measured():
    rates = al.RenderRates({"warp": 0.01, "diffusion": 0.5}, weight=0.5)
    assert rates.estimate("warp", 256, 100) == pytest.approx(1.0)
    assert rates.estimate("warp", 512, 100) == pytest.approx(4.0)  # four times the pixels
    rates.record("diffusion", 256, 10, 2.0)  # 0.2 s a frame measured: halfway there
    assert rates.estimate("diffusion", 256, 10) == pytest.approx(3.5)
    rates.record("warp", 256, 0, 1.0)  # nothing rendered: nothing learned
    assert rates.estimate("warp", 256, 100) == pytest.approx(1.0)
    assert [al.duration_text(s) for s in (0.4, 42, 600)] == ["about a second", "about 42 s", "about 10 min"]


def test_undo_stack_is_bounded_and_with_base_is_undoable(session, talking):
    s = session
    for i in range(al.MAX_UNDO + 5):
        s = al.with_controls(s, replace(s.controls, smoothing=0.1 * (i + 1)))
    assert len(s.history) == al.MAX_UNDO
    other = talking.replace(talking.frames + [3.0, 0.0, 0.0])
    swapped = al.with_base(session, other)
    assert np.allclose(swapped.track.frames, other.frames, atol=1e-3)
    assert np.allclose(al.undo(swapped).track.frames, session.track.frames, atol=1e-3)
    longer = replace(session.inputs, audio=np.concatenate([session.inputs.audio] * 2))
    moved_on = al.with_base(session, other, inputs=longer)
    assert moved_on.inputs is longer and al.undo(moved_on).inputs is session.inputs


def test_frame_view_and_preview_video(session, tmp_path):
    image = al.frame_view(session, 5)
    assert image.shape == (al.VIEW_SIZE, al.VIEW_SIZE, 3)
    short = session.track.replace(session.track.frames[:12])
    path = al.write_preview(session.inputs.image, short, session.inputs.audio[: 12 * 640], tmp_path / "p.mp4",
                            session.view, size=128)
    frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(path))
    assert frames == 12 and seconds == pytest.approx(0.48, abs=0.05)


# ----------------------------------------------------------------------------------------------------
# The launched app, through gradio_client


def test_landmarks_endpoint(client, media):
    track_json, preview, plot, frame_png, frame, status, *sliders = _landmarks(client, media)
    track = LandmarkTrack.load(track_json)
    assert track.num_frames == FRAMES and track.image_size == (512, 512) and track.fps == 25
    assert track.info["controls"]["intensity"] == 1.0
    assert imageio_ffmpeg.count_frames_and_secs(_video_path(preview))[0] == FRAMES
    assert np.asarray(Image.open(plot)).shape[:2] == (260, 960)
    assert np.asarray(Image.open(frame_png)).shape[:2] == (al.VIEW_SIZE, al.VIEW_SIZE)
    assert f"{FRAMES} frames" in status
    same = LandmarkTrack.load(_landmarks(client, media)[0])
    assert np.allclose(same.frames, track.frames, atol=0.011)  # a seed gives the same track
    other = LandmarkTrack.load(_landmarks(client, media, seed=7)[0])
    assert not np.allclose(other.frames, track.frames, atol=0.5)
    assert (track.info["seed"], other.info["seed"]) == (0, 7)  # the seed recorded is the seed the page shows
    assert Path(track_json).name == "photo-speech-0.json"  # downloads say what they are
    assert Path(_video_path(preview)).name == "photo-speech-0-preview.mp4"


def test_edit_then_render(client, media, tmp_path):
    from gradio_client import handle_file

    base = LandmarkTrack.load(_landmarks(client, media, head_motion=0.0)[0])
    # a global control, applied to this client's session without running the model again
    louder_json, *_, status = client.predict(1.8, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, api_name="/apply_controls")
    louder = LandmarkTrack.load(louder_json)
    lower = list(LOWER_FACE)
    assert np.ptp(louder.frames[:, lower], axis=0).mean() > 1.3 * np.ptp(base.frames[:, lower], axis=0).mean()
    assert np.allclose(louder.frames[:, 36:48], base.frames[:, 36:48], atol=0.05)  # eyes untouched
    # a point moved elsewhere (here with pipeline.edits), brought back as JSON
    edited = move_point(louder, 20, 57, louder.points2d[20, 57] + [0, 12])
    edited_path = edited.save(tmp_path / "edited.json")
    loaded_json, *_ = client.predict(handle_file(str(edited_path)), handle_file(str(media / "photo.png")),
                                     handle_file(str(media / "speech.wav")), 20, api_name="/load_track")
    assert np.allclose(LandmarkTrack.load(loaded_json).frames, edited.frames, atol=0.011)
    _, video, message = client.predict(handle_file(str(media / "photo.png")), handle_file(str(media / "speech.wav")),
                                       handle_file(str(edited_path)), "Fast warp", 256, False, api_name="/render")
    frames, seconds = imageio_ffmpeg.count_frames_and_secs(video)
    assert frames == FRAMES and seconds == pytest.approx(SECONDS, abs=0.05)
    assert f"{FRAMES} frames" in message


def test_pose_keyframe_and_live_render(client, media):
    """A head-pose keyframe through the API; the render streams its chunks (when ffmpeg and ffprobe are installed:
    what plays in the page) and hands out the whole mp4 to download."""
    from gradio_client import handle_file

    import app

    base = LandmarkTrack.load(_landmarks(client, media, head_motion=0.0)[0])
    keyed_json, *_, status = client.predict(25, 10, 0.0, 0.0, 15.0, api_name="/pose_keyframe")
    keyed = LandmarkTrack.load(keyed_json)
    roll = keyed.pose[:, 2] - base.pose[:, 2]
    assert roll[25] == pytest.approx(15.0, abs=1.0) and np.abs(roll[:14]).max() < 0.1
    assert "Pose keyframe on frame 25" in status and "1 pose keyframe" in status
    job = client.submit(handle_file(str(media / "photo.png")), handle_file(str(media / "speech.wav")),
                        handle_file(keyed_json), "Fast warp", 256, False, api_name="/render")
    _, video, message = job.result()
    statuses = [update[2] for update in job.outputs()]
    assert statuses[0].startswith(f"Rendering {FRAMES} frames, about") and f"Rendered {FRAMES} frames" in message
    assert any(f"of {FRAMES} frames" in s and "left" in s for s in statuses)
    assert imageio_ffmpeg.count_frames_and_secs(video)[0] == FRAMES
    streamed = [update[0] for update in job.outputs() if isinstance(update[0], str)]
    if app.LIVE_RENDER:  # each chunk went out as it was rendered (an HLS playlist the page plays)
        chunks = -(-FRAMES // CHUNK_FRAMES["warp"])
        assert len(streamed) == chunks and all(path.endswith(".m3u8") for path in streamed)
    else:
        assert streamed == []


def test_a_downloaded_track_comes_back_with_its_sliders(client, media):
    """The app's advertised loop: download the track, upload it, nudge one slider. The upload restores the sliders
    and edits it was made with (recorded in ``info.edits``), so the nudge changes the mouth by its own effect only;
    before, every control was applied a second time (mouth opening 11 -> 18 px)."""
    from gradio_client import handle_file

    from pipeline.app_logic import mouth_opening

    made_json, *_ = _landmarks(client, media, intensity=1.6, smile=0.4, blink_rate=10.0)
    made = LandmarkTrack.load(made_json)
    assert made.info["edits"]["controls"]["intensity"] == pytest.approx(1.6)
    loaded = client.predict(handle_file(made_json), handle_file(str(media / "photo.png")),
                            handle_file(str(media / "speech.wav")), 0, api_name="/load_track")
    loaded_track, sliders = LandmarkTrack.load(loaded[0]), loaded[-8:]
    assert [s if isinstance(s, (int, float)) else s["value"] for s in sliders] == pytest.approx(
        [1.6, 0.4, 0.0, 10.0, 1.0, 0.0, 0.0, 0.0])
    assert np.allclose(loaded_track.frames, made.frames, atol=0.05)  # loading alone changes nothing
    nudged_json, *_ = client.predict(1.6, 0.45, 0.0, 10.0, 1.0, 0.0, 0.0, 0.0, 0,  # smile only
                                     api_name="/apply_controls")
    nudged = LandmarkTrack.load(nudged_json)
    assert np.abs(mouth_opening(nudged) - mouth_opening(made)).max() < 0.5  # pixels: intensity not applied twice
    # a track changed elsewhere is taken as it is, with the sliders at neutral
    changed = made.replace(made.frames + np.float32(0.5))
    changed.info.pop("edits")
    foreign = client.predict(handle_file(str(changed.save(media / "changed.json"))),
                             handle_file(str(media / "photo.png")), handle_file(str(media / "speech.wav")), 0,
                             api_name="/load_track")
    assert [s if isinstance(s, (int, float)) else s["value"] for s in foreign[-8:]] == pytest.approx(
        [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    assert np.allclose(LandmarkTrack.load(foreign[0]).frames, changed.frames, atol=0.011)


def test_dubbing_from_a_driving_video(client, media, astronaut, tmp_path):
    """An optional driving video: head, eyes and brows from it, mouth and jaw from the speech; the video's own head
    motion and blinks replace the sliders' (shown at 0); a video without a face is refused and deleted."""
    from gradio_client import handle_file

    from pipeline.video import Mp4Writer

    with Mp4Writer(tmp_path / "driver.mp4", fps=25) as writer:
        for i in range(FRAMES):
            writer.write(np.roll(astronaut, 2 * i, axis=1))
    values = [0, 2.0, 2, 1.0, 0.0, 0.0, 17.0, 1.0, 0.0, 0.0, 0.0]
    out = client.predict(handle_file(str(media / "photo.png")), handle_file(str(media / "speech.wav")), *values,
                         handle_file(str(tmp_path / "driver.mp4")), api_name="/landmarks")
    track, status, sliders = LandmarkTrack.load(out[0]), out[5], out[-8:]
    assert track.info["source"] == "dubbing" and "Dubbed" in status and track.num_frames == FRAMES
    assert [s if isinstance(s, (int, float)) else s["value"] for s in sliders][3:5] == [0.0, 0.0]
    with Mp4Writer(tmp_path / "wall.mp4", fps=25) as writer:
        writer.write(np.full((10, 200, 200, 3), 120, np.uint8))
    message = _error_message(lambda: client.predict(
        handle_file(str(media / "photo.png")), handle_file(str(media / "speech.wav")), *values,
        handle_file(str(tmp_path / "wall.mp4")), api_name="/landmarks"))
    assert "No face" in message


def test_the_mouth_blend_is_optional_recorded_and_checked(client, media):
    """``/landmarks`` takes the share of the mouth opening from the voice regressor as an optional last input: left
    out, the checkpoint's (0.9); given, that one, recorded in the track; out of 0..1, a clear message."""
    from gradio_client import handle_file

    values = [0, 2.0, 2, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, None]
    files = (handle_file(str(media / "photo.png")), handle_file(str(media / "speech.wav")))
    default = LandmarkTrack.load(client.predict(*files, *values, api_name="/landmarks")[0])
    none = LandmarkTrack.load(client.predict(*files, *values, 0.0, api_name="/landmarks")[0])
    full = LandmarkTrack.load(client.predict(*files, *values, 1.0, api_name="/landmarks")[0])
    assert (default.info["mouth_blend"], none.info["mouth_blend"], full.info["mouth_blend"]) == (0.9, 0.0, 1.0)
    gaps = [float(np.ptp(al.mouth_opening(t))) for t in (none, default, full)]
    assert not np.allclose(none.frames, full.frames) and gaps[0] != gaps[2]
    message = _error_message(lambda: client.predict(*files, *values, 2.0, api_name="/landmarks"))
    assert "greater than maximum value 1.0" in message


def test_diffusion_renderer_is_offered_and_renders(client, media, tmp_path):
    """The checkpoint has a face renderer, so the page offers the diffusion renderer next to the warp one."""
    from gradio_client import handle_file

    import app

    assert app.DIFFUSION in client.view_api(print_info=False, return_format="str")
    track_json, *_ = _landmarks(client, media)
    args = (handle_file(str(media / "photo.png")), handle_file(str(media / "speech.wav")), handle_file(track_json))
    _, video, message = client.predict(*args, app.DIFFUSION, 256, False, api_name="/render")
    _, warp_video, _ = client.predict(*args, app.WARP, 256, False, api_name="/render")
    frames, seconds = imageio_ffmpeg.count_frames_and_secs(video)
    assert frames == FRAMES and f"{FRAMES} frames" in message
    read = [np.stack(list(iter_video_frames(v))) for v in (video, warp_video)]
    assert read[0].shape == read[1].shape and not np.array_equal(read[0], read[1])


def _error_message(call) -> str:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as info:
        call()
    message = str(info.value)
    assert "Traceback" not in message and 'File "' not in message
    return message


def test_errors_are_readable_messages(client, media):
    from gradio_client import handle_file

    message = _error_message(lambda: _landmarks(client, media, photo="no_face.png"))
    assert message.startswith("No face was found in the photo.")
    message = _error_message(lambda: _landmarks(client, media, speech="silence.wav"))
    assert "silent" in message
    bad = media / "bad.json"
    bad.write_text('{"format": "talking-face-landmarks", "version": 1, "fps": 25}')
    message = _error_message(lambda: client.predict(
        handle_file(str(media / "photo.png")), handle_file(str(media / "speech.wav")), handle_file(str(bad)),
        "Fast warp", 256, False, api_name="/render"))
    assert "image_size" in message
