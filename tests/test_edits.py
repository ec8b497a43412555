import numpy as np
import pytest

from pipeline.canonical import inter_ocular
from pipeline.edits import add_blinks, blink_profile, move_point, scale_motion, smooth
from pipeline.landmarks import LandmarkTrack
from pipeline.regions import EYELID_PAIRS, LOWER_FACE


@pytest.fixture
def talking(astronaut_landmarks) -> LandmarkTrack:
    """50 frames: the jaw and lower lip swing with a sinusoid, plus detector-like jitter."""
    rng = np.random.default_rng(0)
    iod = inter_ocular(astronaut_landmarks)
    frames = np.repeat(astronaut_landmarks[None].astype(np.float64), 50, axis=0)
    opening = 0.1 * iod * (0.5 - 0.5 * np.cos(np.linspace(0, 4 * np.pi, 50)))
    for idx in (list(range(5, 12)) + list(range(55, 60)) + list(range(65, 68))):
        frames[:, idx, 1] += opening
    frames += rng.normal(0, 0.3, frames.shape)
    return LandmarkTrack(frames, 25, (512, 512), reference=astronaut_landmarks)


def test_smooth_reduces_jitter_and_keeps_motion(talking):
    out = smooth(talking, 1.5)
    jitter = lambda f: np.abs(np.diff(f, 2, axis=0)).mean()  # noqa: E731
    assert jitter(out.frames) < 0.5 * jitter(talking.frames)
    assert np.ptp(out.frames[:, 57, 1]) > 0.8 * np.ptp(talking.frames[:, 57, 1])
    assert smooth(talking, 0).frames is not talking.frames


def test_scale_motion(talking):
    frozen = scale_motion(talking, 0.0)
    # lower face returns to rest (up to the tiny pose changes jitter causes)
    err = np.abs(frozen.frames[:, list(LOWER_FACE)] - talking.reference[list(LOWER_FACE)]).max()
    assert err < 1.5
    same = scale_motion(talking, 1.0)
    assert np.allclose(same.frames, talking.frames, atol=1e-3)
    more = scale_motion(talking, 2.0)
    assert np.ptp(more.frames[:, 57, 1]) > 1.7 * np.ptp(talking.frames[:, 57, 1])
    assert np.allclose(more.frames[:, 36:48], talking.frames[:, 36:48], atol=1e-3)  # eyes untouched


def test_blinks_close_the_eyes_at_the_given_times(talking):
    out = add_blinks(talking, times=[0.4])
    profile = blink_profile(talking.num_frames, 25, [0.4])
    shut = int(np.argmax(profile))
    assert profile[shut] == pytest.approx(1.0) and 10 <= shut <= 13
    for upper, lower in EYELID_PAIRS:
        gap_before = np.linalg.norm(talking.frames[shut, upper] - talking.frames[shut, lower])
        gap_shut = np.linalg.norm(out.frames[shut, upper] - out.frames[shut, lower])
        assert gap_shut < 0.15 * gap_before + 0.5
    assert np.allclose(out.frames[:5], talking.frames[:5], atol=1e-3)  # open before the blink
    assert np.allclose(out.frames[-5:], talking.frames[-5:], atol=1e-3)  # and after it
    assert out.info["blinks"] == [0.4]


def test_random_blinks_are_seeded(talking):
    long = talking.replace(np.repeat(talking.frames[:1], 1500, axis=0))  # 60 s
    a, b = add_blinks(long, rate_per_minute=15, seed=1), add_blinks(long, rate_per_minute=15, seed=1)
    assert a.info["blinks"] == b.info["blinks"] and 7 <= len(a.info["blinks"]) <= 25
    assert add_blinks(long, rate_per_minute=15, seed=2).info["blinks"] != a.info["blinks"]


def test_move_point_eases_into_neighbours(talking):
    target = talking.points2d[20, 57] + np.array([0.0, 10.0])
    out = move_point(talking, 20, 57, target, radius_frames=4)
    delta = out.frames[:, 57, 1] - talking.frames[:, 57, 1]
    assert np.allclose(out.points2d[20, 57], target, atol=1e-4)
    assert np.array_equal(out.frames[:, 57, 2], talking.frames[:, 57, 2])  # (x, y) keeps the depth
    deeper = move_point(talking, 20, 57, [*target, talking.frames[20, 57, 2] + 5.0], radius_frames=0)
    assert deeper.frames[20, 57, 2] == pytest.approx(talking.frames[20, 57, 2] + 5.0)
    assert 0 < delta[18] < delta[19] < 10 and 0 < delta[22] < delta[21] < 10
    assert np.allclose(delta[:15], 0) and np.allclose(delta[26:], 0)
    others = np.delete(np.arange(68), 57)
    assert np.array_equal(out.frames[:, others], talking.frames[:, others])
    with pytest.raises(IndexError):
        move_point(talking, 50, 57, target)


def test_head_motion_moves_the_whole_face_gently(talking):
    from pipeline.edits import add_head_motion

    still = talking.replace(np.repeat(talking.frames[:1], 250, axis=0))
    moved = add_head_motion(still, amount=1.0, seed=3)
    iod = inter_ocular(talking.reference)
    shift = np.linalg.norm(moved.frames - still.frames, axis=-1).mean(axis=1)  # (T,)
    assert shift[0] < 1e-6 and 0.002 * iod < shift.max() < 0.15 * iod
    canon_still, _ = still.canonical()
    canon_moved, _ = moved.canonical()
    assert np.allclose(canon_still, canon_moved, atol=1e-6)  # pose only: the expression is unchanged
    assert np.allclose(add_head_motion(still, 0.0).frames, still.frames)
    assert np.array_equal(add_head_motion(still, 1.0, seed=3).frames, moved.frames)


def test_turn_head_changes_the_pose_by_the_angles_and_keeps_the_expression(talking):
    from pipeline.edits import turn_head

    turned = turn_head(talking, (10.0, -5.0, 8.0))
    change = turned.pose[:, :3] - talking.pose[:, :3]
    assert np.allclose(change.mean(axis=0), [10.0, -5.0, 8.0], atol=1.0)
    assert np.allclose(turned.canonical()[0], talking.canonical()[0], atol=1e-4)  # the same expression
    per_frame = np.zeros((talking.num_frames, 3))
    per_frame[20:30, 0] = 15.0
    keyed = turn_head(talking, per_frame)
    yaw = keyed.pose[:, 0] - talking.pose[:, 0]
    assert np.allclose(yaw[20:30], 15.0, atol=1.0) and np.abs(yaw[:20]).max() < 1e-3
    assert np.allclose(turn_head(talking, (0, 0, 0)).frames, talking.frames)
    with pytest.raises(ValueError, match="finite"):
        turn_head(talking, (np.nan, 0, 0))


def test_eased_weights_peak_on_the_frame_and_vanish_past_the_radius():
    from pipeline.edits import eased

    weights = eased(30, 10, 4)
    assert weights[10] == 1.0 and weights[5] == 0.0 and weights[15] == 0.0 and 0 < weights[6] < weights[8] < 1
    assert np.allclose(weights[6:10], weights[11:15][::-1])
    assert eased(5, 0, 10)[0] == 1.0 and eased(5, 0, 10).shape == (5,)
