import json

import numpy as np
import pytest

from pipeline.canonical import from_canonical, inter_ocular, mean_face, to_canonical
from pipeline.errors import TrackError
from pipeline.landmarks import LandmarkTrack, belongs_to, retarget
from pipeline.regions import EYE_OUTER_CORNERS, INNER_LIP_PAIRS, MIRROR, REGIONS


def _track(points: np.ndarray, n: int = 10, size=(512, 512)) -> LandmarkTrack:
    return LandmarkTrack(np.repeat(points[None], n, axis=0), 25, size, reference=points)


def _similarity(points, scale, angle, shift):
    c, s = np.cos(angle), np.sin(angle)
    return scale * points @ np.array([[c, -s], [s, c]]).T + np.asarray(shift)


def test_regions_cover_all_points_once():
    indices = sorted(i for r in REGIONS.values() for i in r)
    assert indices == list(range(68))
    assert all(MIRROR[MIRROR[i]] == i for i in range(68))


def test_mean_face_is_canonical():
    m = mean_face()
    assert abs(inter_ocular(m) - 1) < 1e-3
    assert abs(m[EYE_OUTER_CORNERS[0], 1] - m[EYE_OUTER_CORNERS[1], 1]) < 1e-6
    assert np.allclose(m[list(MIRROR)] * [-1, 1], m, atol=1e-4)  # symmetric


def test_canonical_removes_pose_and_round_trips(astronaut_landmarks):
    canon, matrix = to_canonical(astronaut_landmarks)
    moved = _similarity(astronaut_landmarks, 1.7, 0.3, (40, -25))
    canon2, matrix2 = to_canonical(moved)
    assert np.allclose(canon, canon2, atol=1e-6)
    assert abs(inter_ocular(canon) - 1) < 0.1
    assert np.allclose(from_canonical(canon2, matrix2), moved, atol=1e-6)
    batch, mats = to_canonical(np.stack([astronaut_landmarks, moved]))
    assert batch.shape == (2, 68, 2) and mats.shape == (2, 2, 3)


def test_json_round_trip(tmp_path, astronaut_landmarks):
    track = _track(astronaut_landmarks)
    track.info["note"] = "hello"
    path = track.save(tmp_path / "t.json")
    data = json.loads(path.read_text())
    assert data["format"] == "talking-face-landmarks" and data["version"] == 1
    assert data["image_size"] == [512, 512] and len(data["frames"]) == 10 and len(data["frames"][0]) == 68
    back = LandmarkTrack.load(path)
    assert np.allclose(back.frames, track.frames, atol=0.01)
    assert np.allclose(back.reference, track.reference, atol=0.01)
    assert back.fps == 25 and back.info["note"] == "hello"


def _doc(**over):
    doc = {"format": "talking-face-landmarks", "version": 1, "fps": 25, "image_size": [100, 100],
           "frames": [[[50.0, 50.0]] * 68] * 3}
    doc.update(over)
    return doc


@pytest.mark.parametrize(
    "doc, words",
    [
        ([1, 2, 3], "JSON object"),
        (_doc(format="something-else"), "not a landmark track"),
        (_doc(version=2), "version 2 is not supported"),
        (_doc(fps=0), "'fps'"),
        (_doc(fps="25"), "'fps'"),
        (_doc(image_size=[100]), "image_size"),
        (_doc(image_size=[0, 100]), "image_size"),
        (_doc(frames=[]), "shape"),
        (_doc(frames=[[[1, 2]] * 67]), "shape"),
        (_doc(frames=[[[1, 2, 3]] * 68]), "shape"),
        (_doc(frames=[[[1, 2]] * 68, [[1, 2]] * 67]), "regular list"),
        (_doc(frames=[[["a", 2]] * 68]), "regular list"),
        (_doc(frames="nope"), "must be a list"),
        (_doc(frames=[[[5000, 2]] * 68]), "far outside"),
        (_doc(reference=[[1, 2]] * 3), "'reference' has shape"),
    ],
)
def test_malformed_tracks(tmp_path, doc, words):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(TrackError, match=words):
        LandmarkTrack.load(path)


def test_non_finite_and_broken_json(tmp_path):
    path = tmp_path / "nan.json"
    path.write_text(json.dumps(_doc(frames=[[[float("nan"), 1.0]] * 68])))
    with pytest.raises(TrackError, match="NaN"):
        LandmarkTrack.load(path)
    with pytest.raises(TrackError, match="not valid JSON"):
        LandmarkTrack.load(b"{\"format\": ")
    with pytest.raises(TrackError, match="nested too deeply"):
        LandmarkTrack.load(b"[" * 100000 + b"]" * 100000)
    with pytest.raises(TrackError, match="does not exist"):
        LandmarkTrack.load(tmp_path / "missing.json")


def test_retarget_onto_same_face_is_identity(astronaut_landmarks):
    track = _track(astronaut_landmarks)
    out = retarget(track, astronaut_landmarks, (512, 512))
    assert np.allclose(out.frames, track.frames, atol=1e-3)


def test_retarget_transfers_mouth_opening_and_head_motion(astronaut_landmarks):
    photo = _similarity(astronaut_landmarks, 2.0, 0.1, (100, 50))  # another "person": bigger, tilted
    driver = astronaut_landmarks.copy()
    frames = np.repeat(driver[None], 3, axis=0)
    iod = inter_ocular(driver)
    frames[1, 57:60] += [0, 0.2 * iod]  # open the lower lip on frame 1
    frames[1, 65:68] += [0, 0.2 * iod]
    frames[2] += [10, 0]  # head moves right on frame 2
    track = LandmarkTrack(frames, 25, (512, 512), reference=driver)
    out = retarget(track, photo, (1200, 1200))
    gap = lambda pts: np.mean([np.linalg.norm(pts[b] - pts[a]) for a, b in INNER_LIP_PAIRS])  # noqa: E731
    photo_iod = inter_ocular(photo)
    assert np.allclose(out.frames[0], photo, atol=1e-3)
    assert gap(out.frames[1]) / photo_iod > gap(photo) / photo_iod + 0.15
    shift = (out.frames[2] - photo).mean(axis=0)
    assert np.linalg.norm(shift) == pytest.approx(10 * photo_iod / iod, rel=0.05)
    still = retarget(track, photo, (1200, 1200), head_motion=0.0)
    assert np.allclose(still.frames[2], photo, atol=1e-3)


def test_belongs_to(astronaut_landmarks):
    track = _track(astronaut_landmarks)
    assert belongs_to(track, astronaut_landmarks, (512, 512))
    assert not belongs_to(track, astronaut_landmarks, (600, 512))
    assert not belongs_to(track, astronaut_landmarks + 30, (512, 512))
