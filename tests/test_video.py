import subprocess

import imageio_ffmpeg
import numpy as np
import pytest

from pipeline.errors import InputError, NoFaceError
from pipeline.video import Mp4Writer, extract_track, iter_video_frames, probe_duration, video_fps


def ffprobe_text(path) -> str:
    """ffmpeg's description of a file's streams (the bundled binary has no ffprobe)."""
    run = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                         capture_output=True, text=True)
    return run.stderr


def audio_seconds(path) -> float:
    run = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-vn", "-f", "f32le",
                          "-ac", "1", "-ar", "16000", "-"], capture_output=True, check=True)
    return len(run.stdout) / 4 / 16000


def test_mp4_is_browser_playable_with_audio(tmp_path):
    from tests.conftest import speechlike

    audio = speechlike(1.37)
    frames = np.random.default_rng(0).integers(0, 255, (35, 64, 96, 3), dtype=np.uint8)
    out = tmp_path / "out.mp4"
    with Mp4Writer(out, fps=25, audio=audio) as writer:
        writer.write(frames[:20])
        writer.write(frames[20:])
    info = ffprobe_text(out)
    assert "h264" in info and "yuv420p" in info and "aac" in info
    n, secs = probe_duration(out)
    assert n == 35 and abs(secs - 35 / 25) < 1e-6
    assert abs(audio_seconds(out) - 1.37) < 1 / 25 + 0.03  # AAC pads a few ms
    assert abs(35 / 25 - 1.37) < 1 / 25  # video covers the audio within one frame


def test_odd_frame_size_is_cropped_to_even(tmp_path):
    out = tmp_path / "odd.mp4"
    with Mp4Writer(out, fps=25) as writer:
        writer.write(np.zeros((3, 33, 51, 3), np.uint8))
    first = next(iter_video_frames(out))
    assert first.shape == (32, 50, 3)



def test_mp4_appears_whole_or_not_at_all(tmp_path):
    """The video is encoded beside the target and renamed when complete, with the permissions of any new file; an
    error inside the block leaves an earlier file at the path untouched and nothing else behind."""
    out = tmp_path / "out.mp4"
    with Mp4Writer(out, fps=25) as writer:
        writer.write(np.zeros((3, 32, 32, 3), np.uint8))
        assert not out.exists()
    (tmp_path / "plain").touch()
    assert out.stat().st_mode == (tmp_path / "plain").stat().st_mode
    before = out.read_bytes()
    with pytest.raises(RuntimeError, match="stopped"):
        with Mp4Writer(out, fps=25) as writer:
            writer.write(np.full((3, 32, 32, 3), 200, np.uint8))
            raise RuntimeError("stopped")
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "plain"]

def _face_video(path, astronaut, n=20, blank=(5, 6)):
    """The astronaut drifting right 1 px a frame, with some frames blanked out."""
    with Mp4Writer(path, fps=25) as writer:
        for i in range(n):
            frame = np.roll(astronaut, i, axis=1)
            writer.write(np.zeros_like(frame) if i in blank else frame)


def test_extract_fills_missing_frames(tmp_path, astronaut, astronaut_landmarks, analyzer):
    video = tmp_path / "face.mp4"
    _face_video(video, astronaut)
    track, report = extract_track(video, analyzer, smoothing=0)
    assert video_fps(video) == 25 and track.fps == 25 and track.num_frames == 20
    assert report.missing_frames == [5, 6] and "2 of 20" in report.summary()
    assert track.image_size == (512, 512)
    dx = track.frames[:, :, 0].mean(axis=1) - astronaut_landmarks[:, 0].mean()
    assert np.allclose(dx, np.arange(20), atol=1.5)  # follows the drift, filled frames interpolated
    rest = track.info["rest_frame"]  # the rest face, from which retargeting reads motion
    assert 0 <= rest < 20 and np.array_equal(track.reference, track.frames[rest])


def test_extract_rejects_faceless_and_non_video(tmp_path, analyzer):
    video = tmp_path / "empty.mp4"
    with Mp4Writer(video, fps=25) as writer:
        writer.write(np.zeros((5, 64, 64, 3), np.uint8))
    with pytest.raises(NoFaceError, match="any frame"):
        extract_track(video, analyzer)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(InputError, match="not a video"):
        extract_track(text, analyzer)
