import json
import os

import numpy as np
import pytest

from pipeline.canonical import (
    apply_transform,
    from_canonical,
    inter_ocular,
    invert_transform,
    lift_to_3d,
    mean_face,
    pose_from_transform,
    rotation_angles,
    rotation_matrix,
    similarity_transform,
    to_canonical,
    transform_from_pose,
)
from pipeline.errors import TrackError
from pipeline.landmarks import LandmarkTrack, belongs_to, retarget
from pipeline.regions import EYE_OUTER_CORNERS, INNER_LIP_PAIRS, JAW, MIRROR, REGIONS, STABLE


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
    assert m.shape == (68, 3) and abs(inter_ocular(m) - 1) < 1e-3
    assert np.abs(m[EYE_OUTER_CORNERS[0], 1:] - m[EYE_OUTER_CORNERS[1], 1:]).max() < 1e-6  # level, same depth
    assert np.allclose(m[list(MIRROR)] * [-1, 1, 1], m, atol=1e-4)  # symmetric
    assert np.allclose(m[list(STABLE)].mean(axis=0), 0, atol=1e-9)  # centred on the stable points
    assert m[30, 2] < m[[36, 45], 2].min() < m[[0, 16], 2].min()  # nose tip nearest the camera, jaw ends furthest


@pytest.mark.parametrize("dim", [2, 3])
def test_similarity_transform_recovers_a_similarity_in_any_dimension(dim):
    rng = np.random.default_rng(dim)
    src = rng.normal(size=(3, 20, dim))  # a batch of 3 point sets
    rot = np.linalg.qr(rng.normal(size=(dim, dim)))[0]
    rot[:, 0] *= np.linalg.det(rot)  # a proper rotation
    matrix = np.concatenate([2.5 * rot, rng.normal(size=(dim, 1))], axis=1)
    dst = apply_transform(matrix, src)
    fitted = similarity_transform(src, dst)
    assert fitted.shape == (3, dim, dim + 1) and np.allclose(fitted, matrix)
    assert np.allclose(apply_transform(invert_transform(fitted), dst), src)


def test_canonical_removes_pose_and_round_trips(astronaut_landmarks):
    canon, matrix = to_canonical(astronaut_landmarks)
    moved = _similarity(astronaut_landmarks, 1.7, 0.3, (40, -25))
    canon2, matrix2 = to_canonical(moved)
    assert canon.shape == (68, 3) and matrix.shape == (3, 4)
    assert np.allclose(canon, canon2, atol=1e-6)
    assert abs(inter_ocular(canon) - 1) < 0.1
    assert np.allclose(from_canonical(canon2, matrix2)[:, :2], moved, atol=1e-6)
    batch, mats = to_canonical(np.stack([astronaut_landmarks, moved]))
    assert batch.shape == (2, 68, 3) and mats.shape == (2, 3, 4)


def test_a_lifted_2d_face_has_roll_but_no_yaw_or_pitch():
    flat = _similarity(mean_face()[:, :2], 80.0, np.deg2rad(12.0), (300, 200))
    lifted = lift_to_3d(flat)
    assert lifted.shape == (68, 3) and np.array_equal(lifted[:, :2], flat)
    yaw, pitch, roll, tx, ty, scale = pose_from_transform(to_canonical(flat)[1])
    assert abs(yaw) < 1e-6 and abs(pitch) < 1e-6 and roll == pytest.approx(12.0)
    assert (tx, ty, scale) == pytest.approx((300, 200, 80))


# --- head pose ---------------------------------------------------------------------------------------------------


def _posed(face: np.ndarray, yaw=0.0, pitch=0.0, roll=0.0, tx=256.0, ty=240.0, scale=80.0, depth=0.0) -> np.ndarray:
    """A canonical face seen with this pose: pixel x, y (the orthographic projection) and z (its depth)."""
    return from_canonical(face, transform_from_pose([yaw, pitch, roll, tx, ty, scale], depth))


def _pose(points: np.ndarray) -> np.ndarray:
    return pose_from_transform(to_canonical(points)[1])


def _expressive() -> np.ndarray:
    """The mean face with the mouth open and its corners pulled up and out (canonical)."""
    face = mean_face().copy()
    face[[56, 57, 58, 65, 66, 67], 1] += 0.2
    face[list(JAW[5:12]), 1] += 0.1
    face[[48, 60], 0] -= 0.05
    face[[54, 64], 0] += 0.05
    face[[48, 54, 60, 64], 1] -= 0.05
    return face


def test_pose_round_trip():
    rng = np.random.default_rng(0)
    pose = np.column_stack([rng.uniform(-179, 179, 50), rng.uniform(-89, 89, 50), rng.uniform(-179, 179, 50),
                            rng.uniform(-500, 500, (50, 2)), rng.uniform(1, 500, 50)])
    depth = rng.uniform(-100, 100, 50)
    matrix = transform_from_pose(pose, depth)
    assert matrix.shape == (50, 3, 4)
    assert np.allclose(pose_from_transform(matrix), pose, atol=1e-9)
    assert np.allclose(transform_from_pose(pose_from_transform(matrix), depth), matrix, atol=1e-12)
    assert np.allclose(rotation_angles(rotation_matrix(pose[:, :3])), pose[:, :3], atol=1e-9)


@pytest.mark.parametrize("angles", [(0, 0, 0), (25, 0, 0), (0, -20, 0), (0, 0, 30), (-35, 15, -10), (40, 25, 170)])
def test_pose_of_a_turned_face(angles):
    rng = np.random.default_rng(1)
    points = _posed(_expressive(), *angles, tx=300.0, ty=180.0, scale=95.0, depth=40.0)
    points += rng.normal(0, 0.003 * 95.0, points.shape)  # a little detector noise
    pose = _pose(points)
    assert np.abs(pose[:3] - angles).max() < 1.0
    assert np.abs(pose[3:5] - (300, 180)).max() < 1.0 and pose[5] == pytest.approx(95.0, rel=0.01)


def test_pose_signs():
    """Positive yaw: the nose moves to the image's left; positive pitch: the nose moves down; positive roll: the
    face turns clockwise in the image (the right eye, on the image's left, goes up)."""
    still = _posed(mean_face())
    assert _posed(mean_face(), yaw=10)[30, 0] < still[30, 0]
    assert _posed(mean_face(), pitch=10)[30, 1] > still[30, 1]
    rolled = _posed(mean_face(), roll=10)
    assert rolled[36, 1] < still[36, 1] and rolled[45, 1] > still[45, 1]


def test_mirrored_image_flips_yaw_and_roll():
    width = 640
    points = _posed(_expressive(), yaw=20, pitch=-12, roll=8)
    mirrored = points[list(MIRROR)] * [-1, 1, 1] + [width, 0, 0]  # x -> W - x, the face's sides swap names
    yaw, pitch, roll = _pose(points)[:3]
    assert np.allclose(_pose(mirrored)[:3], (-yaw, pitch, -roll), atol=1e-6)


def test_an_in_plane_turn_of_the_image_changes_roll_by_its_angle():
    points = _posed(_expressive(), yaw=20, pitch=-10, roll=5)
    angle = np.deg2rad(15.0)  # clockwise in the image (y points down)
    c, s = np.cos(angle), np.sin(angle)
    turn = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    centre = np.array([320.0, 240.0, 0.0])
    turned = (points - centre) @ turn.T + centre
    assert np.allclose(_pose(turned)[:3] - _pose(points)[:3], (0, 0, 15), atol=1e-6)


def test_the_expression_does_not_change_with_a_head_turn():
    face = _expressive()
    a, _ = to_canonical(_posed(face, yaw=-30, pitch=10, roll=-5, scale=60.0))
    b, _ = to_canonical(_posed(face, yaw=35, pitch=-15, roll=20, tx=100.0, scale=150.0, depth=-30.0))
    assert np.abs(a - b).max() <= 1e-6  # canonical units: inter-ocular distances
    assert np.abs(a - face).max() <= 1e-6  # the stable points are the mean face's, so nothing moves


def _turning_track(num_frames: int = 6) -> LandmarkTrack:
    """The expressive face turning its head: yaw -20..20, some pitch and roll, in a 640x480 image."""
    yaws = np.linspace(-20, 20, num_frames)
    frames = np.stack([_posed(_expressive(), yaw, 0.5 * yaw, 5.0, tx=300 + yaw) for yaw in yaws])
    return LandmarkTrack(frames, 25, (640, 480), reference=_posed(mean_face()), info={"note": "hello"})


def test_json_round_trip(tmp_path):
    track = _turning_track()
    path = track.save(tmp_path / "t.json")
    data = json.loads(path.read_text())
    assert data["format"] == "talking-face-landmarks" and data["version"] == 2
    assert data["image_size"] == [640, 480] and np.shape(data["frames"]) == (6, 68, 3)
    assert np.shape(data["pose"]) == (6, 6) and np.shape(data["reference"]) == (68, 3)
    assert np.allclose(data["pose"], track.pose, atol=0.01)  # the pose of the rounded frames
    back = LandmarkTrack.load(path)
    assert np.allclose(back.frames, track.frames, atol=0.01)
    assert np.allclose(back.reference, track.reference, atol=0.01)
    assert np.array_equal(back.pose, data["pose"])  # the file's pose is its frames' pose: nothing was re-posed
    assert back.fps == 25 and back.info["note"] == "hello"


def test_version_1_files_still_load():
    flat = _similarity(mean_face()[:, :2], 40.0, 0.2, (50, 45))
    doc = _doc(frames=[flat.tolist()] * 3, reference=flat.tolist())
    track = LandmarkTrack.from_dict(doc)
    assert track.frames.shape == (3, 68, 3) and track.reference.shape == (68, 3)
    assert np.allclose(track.points2d, flat, atol=1e-4) and np.allclose(track.frames, lift_to_3d(flat), atol=1e-4)
    assert np.allclose(track.pose[:, :3], (0, 0, np.rad2deg(0.2)), atol=1e-3)
    assert LandmarkTrack.from_dict(track.to_dict()).to_dict()["version"] == 2


def test_an_edited_pose_reposes_its_frame():
    track = LandmarkTrack.from_dict(_turning_track().to_dict())  # as loaded: rounded
    data = track.to_dict()
    data["pose"][2][0] += 15.0  # yaw
    data["pose"][2][3] += 6.0  # tx
    data["pose"][2][5] *= 1.1  # scale
    edited = LandmarkTrack.from_dict(data)
    assert np.allclose(edited.pose[2], data["pose"][2], atol=1e-3)
    before, _ = track.canonical()
    after, _ = edited.canonical()
    assert np.abs(after[2] - before[2]).max() < 1e-5  # the same expression, in the new pose
    assert np.array_equal(np.delete(edited.frames, 2, 0), np.delete(track.frames, 2, 0))
    assert np.abs(edited.frames[2] - track.frames[2]).max() > 5


def test_without_pose_the_frames_count():
    track = _turning_track()
    data = track.to_dict()
    del data["pose"]
    data["frames"][1] = (np.asarray(data["frames"][1]) + [5.0, 0.0, 0.0]).tolist()  # the head moved in the frames
    assert LandmarkTrack.from_dict(data).frames[1, :, 0] == pytest.approx(track.frames[1, :, 0] + 5.0, abs=0.01)


def _doc(**over):
    doc = {"format": "talking-face-landmarks", "version": 1, "fps": 25, "image_size": [100, 100],
           "frames": [[[50.0, 50.0]] * 68] * 3}
    doc.update(over)
    return doc


def _doc2(**over):
    face = np.round(_posed(mean_face(), tx=50.0, ty=45.0, scale=30.0), 2).tolist()
    return _doc(**{"version": 2, "frames": [face] * 3, "reference": face,
                   "pose": [[0.0, 0.0, 0.0, 50.0, 45.0, 30.0]] * 3, **over})


@pytest.mark.parametrize(
    "doc, words",
    [
        ([1, 2, 3], "JSON object"),
        (_doc(format="something-else"), "not a landmark track"),
        (_doc(version=3), "version 3 is not supported"),
        (_doc(version=True), "version True is not supported"),
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
        (_doc2(frames=[[[1, 2]] * 68]), r"'frames' has shape \[1, 68, 2\]; expected \[\[\[x, y, z\]"),
        (_doc2(reference=[[1, 2]] * 68), "'reference' has shape"),
        (_doc2(frames=[[[50, 50, 1e6]] * 68] * 3), "depths"),
        (_doc2(pose="nope"), "'pose' must be a list"),
        (_doc2(pose=[[0, 0, 0, 50, 45, 30]] * 2), "'pose' has shape"),
        (_doc2(pose=[[0, 0, 0, 50, 45]] * 3), "'pose' has shape"),
        (_doc2(pose=[[0, 0, "a", 50, 45, 30]] * 3), "'pose' must be a regular list"),
        (_doc2(pose=[[0, float("nan"), 0, 50, 45, 30]] * 3), "'pose' contains NaN"),
        (_doc2(pose=[[0, 95, 0, 50, 45, 30]] * 3), "angles"),
        (_doc2(pose=[[190, 0, 0, 50, 45, 30]] * 3), "angles"),
        (_doc2(pose=[[0, 0, 0, 50, 45, 0]] * 3), "scale"),
        (_doc2(pose=[[0, 0, 0, 5000, 45, 30]] * 3), "'pose' has .tx, ty. far outside"),
        (_doc2(pose=[[0, 0, 0, 50, 45, 400]] * 3), "'pose' puts the face far outside"),
    ],
)
def test_malformed_tracks(tmp_path, doc, words):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(TrackError, match=words):
        LandmarkTrack.load(path)


def test_valid_v2_document_loads():
    track = LandmarkTrack.from_dict(_doc2())
    assert track.frames.shape == (3, 68, 3) and np.allclose(track.pose, [0, 0, 0, 50, 45, 30], atol=0.05)


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
    assert np.allclose(out.points2d[0], photo, atol=1e-3)
    assert gap(out.points2d[1]) / photo_iod > gap(photo) / photo_iod + 0.15
    shift = (out.points2d[2] - photo).mean(axis=0)
    assert np.linalg.norm(shift) == pytest.approx(10 * photo_iod / iod, rel=0.05)
    still = retarget(track, photo, (1200, 1200), head_motion=0.0)
    assert np.allclose(still.points2d[2], photo, atol=1e-3)


def _open_mouth(points: np.ndarray, amount: float) -> np.ndarray:
    """The lower lip and chin dropped by ``amount`` inter-ocular distances (image y)."""
    out = np.array(points, dtype=np.float64)
    out[[55, 56, 57, 58, 59, 65, 66, 67, 7, 8, 9], 1] += amount * inter_ocular(points)
    return out


def test_closed_mouth_closes_an_open_photo_mouth_and_keeps_a_closed_one(astronaut_landmarks):
    from pipeline.landmarks import OPEN_MOUTH, closed_mouth

    rest = closed_mouth(mean_face())  # (the mean face's lips are 0.07 apart)
    assert np.array_equal(closed_mouth(rest), rest)  # lips that meet are kept as they are
    speaking, _ = to_canonical(lift_to_3d(astronaut_landmarks))  # she smiles with her teeth showing
    closed = closed_mouth(speaking)
    gaps = [closed[lower, 1] - closed[upper, 1] for upper, lower in INNER_LIP_PAIRS]
    opening = np.mean([speaking[b, 1] - speaking[a, 1] for a, b in INNER_LIP_PAIRS])
    assert np.allclose(gaps, 0.0) and opening > OPEN_MOUTH
    upper_face = [i for i in range(48) if i not in JAW]
    assert np.array_equal(closed[upper_face], speaking[upper_face])  # brows, eyes, nose
    assert closed[8, 1] == pytest.approx(speaking[8, 1] - opening, abs=0.02)  # the chin comes up with the lip
    assert np.array_equal(closed[[61, 62, 63]], speaking[[61, 62, 63]])  # the upper lip stays


def test_retarget_onto_an_open_mouthed_photo_closes_it_where_the_driver_closes():
    """Any reference mouth: a photo taken mid-word is driven from a closed mouth, so the driver's rest shuts it and
    the driver's opening opens it from there (before, the photo's opening was kept on every frame)."""
    from pipeline.landmarks import closed_mouth

    face = closed_mouth(mean_face())[:, :2] * 100 + 256  # a driver whose lips meet at rest
    photo = _open_mouth(face, 0.25)
    frames = np.repeat(face[None], 2, axis=0)
    frames[1] = _open_mouth(face, 0.2)
    track = LandmarkTrack(frames, 25, (512, 512), reference=face)
    out = retarget(track, photo, (512, 512))
    gap = lambda pts: np.mean([pts[b, 1] - pts[a, 1] for a, b in INNER_LIP_PAIRS])  # noqa: E731
    iod = inter_ocular(face)
    assert abs(gap(out.points2d[0])) < 0.01 * iod  # at rest: shut
    assert gap(out.points2d[1]) == pytest.approx(0.2 * iod, rel=0.1)  # opened by the driver's own amount
    upper_face = [i for i in range(48) if i not in JAW]
    assert np.allclose(out.points2d[0, upper_face], photo[upper_face], atol=0.01 * iod)  # brows, eyes: the photo's


def test_retarget_turns_the_photo_head_as_the_driver_turns_its_own():
    driver = _turning_track()  # rests facing the camera (its reference); turns and opens its mouth
    photo_angles = np.array([-10.0, 5.0, 12.0])
    photo = _posed(mean_face(), *photo_angles, tx=500.0, ty=400.0, scale=150.0)
    still = retarget(driver, photo, (1000, 800), head_motion=0.0)
    assert np.allclose(still.pose, _pose(photo), atol=1e-6)  # the photo's pose on every frame
    expression = driver.canonical()[0] - to_canonical(driver.reference)[0]
    assert np.allclose(still.canonical()[0], to_canonical(photo)[0] + expression, atol=1e-6)

    out = retarget(driver, photo, (1000, 800))
    turn = rotation_matrix(driver.pose[:, :3]) @ rotation_matrix(_pose(driver.reference)[:3]).T  # R_t R_0ᵀ
    expected = rotation_angles(turn @ rotation_matrix(photo_angles))
    assert np.allclose(out.pose[:, :3], expected, atol=1e-6)
    half = retarget(driver, photo, (1000, 800), head_motion=0.5)
    half_turn = rotation_matrix(half.pose[:, :3]) @ rotation_matrix(photo_angles).T
    angle = lambda r: np.degrees(np.arccos(np.clip((np.trace(r, axis1=-2, axis2=-1) - 1) / 2, -1, 1)))  # noqa: E731
    assert np.allclose(angle(half_turn), angle(turn) / 2, atol=1e-6)


def test_belongs_to(astronaut_landmarks):
    track = _track(astronaut_landmarks)
    assert belongs_to(track, astronaut_landmarks, (512, 512))
    assert not belongs_to(track, astronaut_landmarks, (600, 512))
    assert not belongs_to(track, astronaut_landmarks + 30, (512, 512))


@pytest.mark.parametrize("bad", ["1.5", True, False, None])
def test_coordinates_must_be_numbers(bad):
    """numpy would read "1.5" and true as numbers; a track with them is refused with a reason."""
    data = LandmarkTrack(np.full((2, 68, 3), 100.0, np.float32), 25, (512, 512)).to_dict()
    data["frames"][1][7][0] = bad
    with pytest.raises(TrackError, match="'frames' must"):
        LandmarkTrack.load(json.dumps(data).encode())


def test_save_is_whole_or_nothing(tmp_path, monkeypatch):
    """A track is written beside its path and renamed: a failure leaves the earlier file and no partial one."""
    path = LandmarkTrack(np.full((2, 68, 3), 100.0, np.float32), 25, (512, 512)).save(tmp_path / "t.json")
    before = path.read_bytes()

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        LandmarkTrack(np.full((3, 68, 3), 120.0, np.float32), 25, (512, 512)).save(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["t.json"]


def test_blend_mouth_opening_moves_only_the_lower_lip_and_jaw_to_the_asked_opening(astronaut_landmarks):
    from pipeline.landmarks import blend_mouth_opening, closed_mouth, inner_lip_gap, opening_weights

    neutral = closed_mouth(to_canonical(lift_to_3d(astronaut_landmarks))[0])[:, :2]
    rng = np.random.default_rng(0)
    motion = rng.normal(0, 0.01, (20, 68, 2))
    sampled = inner_lip_gap(neutral[None] + motion) - inner_lip_gap(neutral)
    asked = np.linspace(0.0, 0.3, 20)
    assert np.array_equal(blend_mouth_opening(motion, neutral, asked, 0.0), motion)
    exact = blend_mouth_opening(motion, neutral, asked, 1.0)
    assert np.allclose(inner_lip_gap(neutral[None] + exact) - inner_lip_gap(neutral), asked)
    half = blend_mouth_opening(motion, neutral, asked, 0.5)
    assert np.allclose(inner_lip_gap(neutral[None] + half) - inner_lip_gap(neutral), (sampled + asked) / 2)
    still = opening_weights(neutral) == 0  # the upper lip, eyes, brows, nose: untouched; x never changes
    assert np.array_equal(exact[:, still], motion[:, still]) and np.array_equal(exact[..., 0], motion[..., 0])
    with pytest.raises(ValueError, match="share"):
        blend_mouth_opening(motion, neutral, asked, 1.5)
    with pytest.raises(ValueError, match="frames"):
        blend_mouth_opening(motion, neutral, asked[:5], 0.5)


def test_at_fps_keeps_the_motions_timing():
    """A 30 fps track brought to 25 fps: frame k is the motion at k / 25 s; the last frame is held at the end."""
    face = mean_face() * 100 + 200
    seconds = np.arange(30) / 30.0  # 1 s at 30 fps, the face sliding right 60 px a second
    track = LandmarkTrack(np.stack([face + (60 * t, 0, 0) for t in seconds]), 30, (512, 512), reference=face)
    slower = track.at_fps(25)
    assert slower.fps == 25 and slower.num_frames == 25 and slower.info["resampled_from_fps"] == 30
    shift = slower.frames[:, 0, 0] - face[0, 0]
    assert np.allclose(shift, 60 * np.arange(25) / 25, atol=1e-3)
    assert np.array_equal(slower.reference, track.reference)
    assert track.at_fps(30) is track
    assert track.at_fps(60).num_frames == 60 and np.allclose(track.at_fps(60).frames[-1], track.frames[-1])
