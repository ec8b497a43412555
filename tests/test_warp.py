"""Tests of the piecewise-affine warping renderer, on skimage's astronaut (a public-domain portrait)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from pipeline.canonical import inter_ocular
from pipeline.face import FaceAnalyzer
from pipeline.regions import EYELID_PAIRS, INNER_LIP, INNER_LIP_PAIRS, LEFT_EYE, NUM_POINTS, RIGHT_EYE
from pipeline.render.warp import (
    FACE_VERTICES,
    LASH_WIDTH,
    WarpRenderer,
    _affine_tables,
    destinations,
    folded_triangles,
    signed_areas,
    source_map,
    track_destinations,
)


@pytest.fixture(scope="module")
def analyzer() -> FaceAnalyzer:
    return FaceAnalyzer()


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return data.astronaut()


@pytest.fixture(scope="module")
def reference(analyzer: FaceAnalyzer, photo: np.ndarray) -> np.ndarray:
    return analyzer.detect(photo).landmarks.astype(np.float64)


@pytest.fixture(scope="module")
def crop256(photo: np.ndarray, reference: np.ndarray):
    renderer = WarpRenderer(256)
    return renderer, renderer.prepare(photo, reference)


def _down(points: np.ndarray) -> np.ndarray:
    eye = points[45] - points[36]
    return np.array([-eye[1], eye[0]]) / np.hypot(*eye)


def opened(points: np.ndarray, amount: float) -> np.ndarray:
    """Open the mouth by ``amount`` inter-ocular units: lower lip and chin down, the jaw line following."""
    out = points.copy()
    shift = amount * inter_ocular(points) * _down(points)
    for i in (55, 56, 57, 58, 59, 65, 66, 67):
        out[i] += shift
    for i in (48, 54, 60, 64):
        out[i] += 0.4 * shift
    for i in range(4, 13):
        out[i] += 0.9 * np.sin(np.pi * (i - 3) / 10) ** 0.7 * shift
    return out


def closed(points: np.ndarray) -> np.ndarray:
    """Close the mouth: the lower inner lip meets the upper one, the lower lip and chin follow."""
    out = points.copy()
    lift = np.mean([points[lower] - points[upper] for upper, lower in INNER_LIP_PAIRS], axis=0)
    for i in (55, 56, 57, 58, 59) + tuple(range(5, 12)):
        out[i] -= lift
    for upper, lower in INNER_LIP_PAIRS:
        out[lower] = out[upper]
    return out


def blinked(points: np.ndarray) -> np.ndarray:
    out = points.copy()
    for upper, lower in EYELID_PAIRS:
        out[upper] = points[lower]
    return out


def moved(points: np.ndarray, degrees: float, shift: tuple[float, float], scale: float) -> np.ndarray:
    angle = np.deg2rad(degrees)
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = points[27:36].mean(axis=0)
    return (points - centre) @ rotation.T + centre + np.asarray(shift) * inter_ocular(points)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def luminance(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64) @ [0.299, 0.587, 0.114]


def polygon_mask(shape: tuple[int, ...], points: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask.astype(bool)


def inner_gap(points: np.ndarray) -> float:
    """Mean inner-lip opening in inter-ocular units."""
    gaps = [np.linalg.norm(points[lower] - points[upper]) for upper, lower in INNER_LIP_PAIRS]
    return float(np.mean(gaps) / inter_ocular(points))


def eye_gap(points: np.ndarray) -> float:
    gaps = [np.linalg.norm(points[lower] - points[upper]) for upper, lower in EYELID_PAIRS]
    return float(np.mean(gaps) / inter_ocular(points))


def plain_crop(photo: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    x0, y0, x1, y1 = box
    h, w = photo.shape[:2]
    pads = (max(-y0, 0), max(y1 - h, 0), max(-x0, 0), max(x1 - w, 0))
    padded = cv2.copyMakeBorder(photo, *pads, cv2.BORDER_REPLICATE)
    crop = padded[y0 + pads[0] : y1 + pads[0], x0 + pads[2] : x1 + pads[2]]
    interpolation = cv2.INTER_AREA if x1 - x0 > size else cv2.INTER_CUBIC
    return cv2.resize(crop, (size, size), interpolation=interpolation)


@pytest.mark.parametrize("size", [256, 512])
def test_identity_crop(photo: np.ndarray, reference: np.ndarray, size: int) -> None:
    renderer = WarpRenderer(size)
    ctx = renderer.prepare(photo, reference)
    out = renderer.render(ctx, reference[None])
    assert out.shape == (1, size, size, 3) and out.dtype == np.uint8
    assert psnr(out[0], plain_crop(photo, ctx.box, size)) > 35.0
    # the crop holds the whole face with room around it
    points = renderer.crop_landmarks(ctx, reference)
    assert points.min() > 0.15 * size and points.max() < 0.85 * size


def test_identity_full(photo: np.ndarray, reference: np.ndarray) -> None:
    renderer = WarpRenderer(full=True)
    ctx = renderer.prepare(photo, reference)
    out = renderer.render(ctx, np.stack([reference, opened(reference, 0.15)]))
    assert out.shape == (2,) + photo.shape and out.dtype == np.uint8
    assert psnr(out[0], photo) > 45.0
    np.testing.assert_array_equal(renderer.crop_landmarks(ctx, reference), reference)
    outside = np.ones(photo.shape[:2], bool)
    x0, y0, x1, y1 = ctx.box
    outside[y0:y1, x0:x1] = False
    assert outside.mean() > 0.3
    for frame in out:
        np.testing.assert_array_equal(frame[outside], photo[outside])
    assert not np.array_equal(out[1], photo)


def _track(reference: np.ndarray) -> np.ndarray:
    frames = [reference, opened(reference, 0.1), opened(reference, 0.2), blinked(reference), closed(reference)]
    frames += [moved(opened(reference, 0.05 * i), 2.0 * i, (0.02 * i, -0.01 * i), 1.0 + 0.01 * i) for i in range(5)]
    return np.stack(frames)


@pytest.mark.parametrize("full", [False, True])
def test_chunking_is_deterministic(photo: np.ndarray, reference: np.ndarray, full: bool) -> None:
    renderer = WarpRenderer(256, full=full)
    ctx = renderer.prepare(photo, reference)
    track = _track(reference)
    whole = renderer.render(ctx, track)
    parts = np.concatenate([renderer.render(ctx, track[:3]), renderer.render(ctx, track[3:])])
    np.testing.assert_array_equal(whole, parts)
    np.testing.assert_array_equal(whole, renderer.render(ctx, track))


def test_mouth_opening(analyzer: FaceAnalyzer, crop256, reference: np.ndarray) -> None:
    renderer, ctx = crop256
    target = opened(reference, 0.15)
    base, frame = renderer.render(ctx, np.stack([reference, target]))
    points = renderer.crop_landmarks(ctx, target)
    iod = float(inter_ocular(points))

    # (a) a dark mouth inside the target inner lip, against the lips and skin around it
    inside = polygon_mask(frame.shape, points[list(INNER_LIP)])
    centre = points[list(INNER_LIP)].mean(axis=0)
    around = polygon_mask(frame.shape, centre + 1.8 * (points[list(INNER_LIP)] - centre)) & ~inside
    darkness = luminance(frame)[inside].mean() / luminance(frame)[around].mean()
    assert darkness < 0.6

    # (b) a face detector sees the mouth really open, where the target puts it
    seen_base = analyzer.detect(base).landmarks.astype(np.float64)
    seen = analyzer.detect(frame).landmarks.astype(np.float64)
    error = float(np.linalg.norm(seen - points, axis=1).mean() / iod)
    print(f"mouth open: re-detected gap {inner_gap(seen):.3f} vs {inner_gap(seen_base):.3f} IOD, "
          f"target {inner_gap(points):.3f}; mean landmark error {error:.3f} IOD; darkness {darkness:.2f}")
    assert inner_gap(seen) > inner_gap(seen_base) + 0.06  # the mesh reads the smiling base as ajar (0.12)
    assert error < 0.1


def test_closing_returns_to_identity(crop256, reference: np.ndarray) -> None:
    renderer, ctx = crop256
    frames = renderer.render(ctx, np.stack([reference, opened(reference, 0.2), reference]))
    np.testing.assert_array_equal(frames[2], frames[0])


def test_closed_mouth_hides_teeth(analyzer: FaceAnalyzer, crop256, reference: np.ndarray) -> None:
    """The astronaut smiles with her teeth showing; closing the mouth must leave only lips there."""
    renderer, ctx = crop256
    target = closed(reference)
    base, frame = renderer.render(ctx, np.stack([reference, target]))
    ref_points = renderer.crop_landmarks(ctx, reference)
    teeth = polygon_mask(frame.shape, ref_points[list(INNER_LIP)])
    lips = polygon_mask(frame.shape, ref_points[48:60]) & ~teeth

    def white(image: np.ndarray, mask: np.ndarray) -> float:
        return float((image.min(axis=-1)[mask] > 180).mean())

    assert white(base, teeth) > 0.3  # the photo's teeth
    points = renderer.crop_landmarks(ctx, target)
    # the closed lips are no whiter than the photo's lips (their highlights)
    assert white(frame, polygon_mask(frame.shape, points[48:60])) < white(base, lips) + 0.04
    seen = analyzer.detect(frame).landmarks.astype(np.float64)
    assert inner_gap(seen) < 0.5 * inner_gap(analyzer.detect(base).landmarks.astype(np.float64))


def test_the_photos_own_teeth_move_with_the_lips_without_stretching(photo: np.ndarray, reference: np.ndarray) -> None:
    """The astronaut shows her teeth. Opened 0.25 inter-ocular distances wider, her upper teeth stay where they hang
    from the upper lip, at their own size, her lower teeth come down with the lower lip, and the mouth is dark
    between them; the stretching warp alone (no photo mouth) smears the same teeth over the whole opening."""
    import dataclasses

    renderer = WarpRenderer(512)
    ctx = renderer.prepare(photo, reference)
    assert ctx.photo_mouth is not None
    target = opened(reference, 0.25)
    base, frame = renderer.render(ctx, np.stack([reference, target]))
    stretched = renderer.render(dataclasses.replace(ctx, photo_mouth=None), target[None])[0]
    bare = WarpRenderer(512, mouth_fill=False)
    smeared = bare.render(bare.prepare(ctx.photo, reference), target[None])[0]
    photo_points, points = renderer.crop_landmarks(ctx, reference), renderer.crop_landmarks(ctx, target)
    iod = inter_ocular(photo_points)
    half_width, depth = int(0.12 * iod), int(0.4 * inner_gap(photo_points) * iod)

    def patch(image: np.ndarray, x: float, y: float, rows: int) -> np.ndarray:
        """``rows`` rows of pixels below (above, if negative) the point ``(x, y)``, ``half_width`` each side."""
        x, y = int(round(x)), int(round(y))
        top, bottom = (y, y + rows) if rows > 0 else (y + rows, y)
        return image[top:bottom, x - half_width : x + half_width]

    upper_photo = patch(base, *photo_points[62], depth)  # teeth under the middle of the upper lip
    lower_photo = patch(base, *photo_points[66], -depth)  # teeth above the middle of the lower lip
    assert psnr(patch(frame, *points[62], depth), upper_photo) > 32  # same teeth, same place, same size
    assert psnr(patch(frame, *points[66], -depth), lower_photo) > 27  # carried down with the lower lip
    assert psnr(patch(smeared, *points[62], depth), upper_photo) < 24  # stretched by the warp alone
    middle = patch(frame, *(points[62] + points[66]) / 2, 3)
    assert luminance(middle).mean() < 0.35 * luminance(upper_photo).mean()  # the dark of the mouth between
    assert not np.array_equal(frame, stretched)


def test_lips_asked_to_meet_meet_and_show_lip_against_lip(crop256, reference: np.ndarray) -> None:
    """Lips asked to cross (by a rounding error of a closed mouth) or to stay a hair apart meet exactly: a fold there
    was pried open by the unfolding (3 px at 256², showing a line of the photo's teeth) and a sliver stretched the
    inside of the mouth over a line of pixels. Where they meet over the photo's open mouth, their edges are sampled
    from inside her lips (the teeth and the dark inner lip edges stay inside the closed line); a photo's own open
    mouth is left as it is."""
    import pipeline.render.warp as warp

    renderer, ctx = crop256
    iod, down = inter_ocular(reference), _down(reference)
    crossing, sliver = closed(reference), closed(reference)
    crossing[[65, 66, 67]] -= 0.01 * iod * down
    sliver[[65, 66, 67]] += 0.005 * iod * down

    def gaps(target: np.ndarray) -> np.ndarray:
        dst = warp.destinations(ctx, target[None])[0]
        return (dst[[67, 66, 65]] - dst[[61, 62, 63]]) @ _down(dst[:NUM_POINTS])

    assert np.abs(gaps(crossing)).max() < 1e-9 and np.abs(gaps(sliver)).max() < 1e-9
    original = warp.LIP_MEET
    try:
        warp.LIP_MEET = -np.inf  # lips left to cross: the unfolding pries them apart
        assert gaps(crossing).mean() > 2.0
    finally:
        warp.LIP_MEET = original
    sources = warp.lip_sources(ctx, np.array([0.0, 1.0]))
    assert np.allclose(sources[0], ctx.mesh, atol=1e-9)
    inner, outer = (list(side) for side in zip(*warp.LIP_ACROSS, strict=True))
    assert np.allclose(sources[1, inner], ctx.mesh[inner] + warp.LIP_RETRACT * (ctx.mesh[outer] - ctx.mesh[inner]))
    points = renderer.crop_landmarks(ctx, crossing)
    line = np.zeros((256, 256), np.uint8)
    cv2.polylines(line, [np.round(points[[60, 61, 62, 63, 64]]).astype(np.int32)], False, 1, 3)
    lips = renderer.render(ctx, crossing[None])[0][line.astype(bool)].astype(float)
    assert lips[:, 0].mean() > lips[:, 2].mean() + 15  # reddish, like her lips, not grey or white
    assert lips.std(axis=0).mean() > 6  # the photo's own lip texture, not a flat painted band
    at_rest = renderer.render(ctx, reference[None])[0]  # the photo's own open mouth is left as it is
    assert np.array_equal(at_rest, WarpRenderer(256).render(ctx, reference[None])[0])


def test_blink_closes_the_eyes(analyzer: FaceAnalyzer, crop256, reference: np.ndarray) -> None:
    renderer, ctx = crop256
    base, frame = renderer.render(ctx, np.stack([reference, blinked(reference)]))
    points = renderer.crop_landmarks(ctx, reference)
    iod = float(inter_ocular(points))
    for eye in (RIGHT_EYE, LEFT_EYE):
        inside = polygon_mask(frame.shape, points[list(eye)])
        below = polygon_mask(frame.shape, points[list(eye)] + 0.2 * iod * _down(points)) & ~inside
        skin_colour, skin = frame[below].mean(axis=0), luminance(frame)[below].mean()
        dark_open = (luminance(base)[inside] < 0.6 * skin).mean()
        dark_closed = (luminance(frame)[inside] < 0.6 * skin).mean()
        assert dark_open > 0.4 and dark_closed < 0.25  # only the lash line stays dark
        assert np.linalg.norm(frame[inside].mean(axis=0) - skin_colour) < 0.6 * np.linalg.norm(
            base[inside].mean(axis=0) - skin_colour
        )
    seen_base = analyzer.detect(base).landmarks.astype(np.float64)
    seen = analyzer.detect(frame).landmarks.astype(np.float64)
    print(f"blink: re-detected eye gap {eye_gap(seen):.3f} vs {eye_gap(seen_base):.3f} IOD")
    assert eye_gap(seen) < 0.75 * eye_gap(seen_base)


def test_a_half_closed_lid_covers_the_eye_instead_of_squashing_it(photo: np.ndarray, reference: np.ndarray) -> None:
    """The upper lids lowered halfway, the lower lids and the head still: below the lid's lash line the eye is the
    photo's own, pixel for pixel (the lid covers the upper half of the iris); squashed, the whole eye would be
    drawn at half height."""
    renderer = WarpRenderer(512)
    ctx = renderer.prepare(photo, reference)
    half = reference.copy()
    for upper, lower in EYELID_PAIRS:
        half[upper] = reference[upper] + 0.5 * (reference[lower] - reference[upper])
    frame = renderer.render(ctx, half[None])[0]
    points = renderer.crop_landmarks(ctx, half)
    iod = float(inter_ocular(points))
    for eye in (RIGHT_EYE, LEFT_EYE):
        open_part = polygon_mask(frame.shape, points[list(eye)])
        lash_line = points[list(eye[:4])] + 2.0 * LASH_WIDTH * iod * _down(points)  # the upper lid, lashes below
        lid = polygon_mask(frame.shape, np.concatenate([lash_line, lash_line[::-1] - iod * _down(points)]))
        kept = cv2.erode(open_part.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~lid
        assert kept.sum() > 20
        assert np.abs(frame[kept].astype(int) - ctx.source[kept].astype(int)).max() <= 2


def test_head_motion(analyzer: FaceAnalyzer, crop256, reference: np.ndarray) -> None:
    renderer, ctx = crop256
    target = moved(reference, 5.0, (0.15, -0.1), 1.04)
    base, frame = renderer.render(ctx, np.stack([reference, target]))
    points = renderer.crop_landmarks(ctx, target)
    iod = float(inter_ocular(points))
    seen = analyzer.detect(frame).landmarks.astype(np.float64)
    error = float(np.linalg.norm(seen - points, axis=1).mean() / iod)
    travel = float(np.linalg.norm(points - renderer.crop_landmarks(ctx, reference), axis=1).mean() / iod)
    print(f"head motion: target moved {travel:.3f} IOD, mean landmark error {error:.3f} IOD")
    assert travel > 0.15 and error < 0.1
    for ys, xs in ((slice(0, 12), slice(0, 12)), (slice(0, 12), slice(-12, None)), (slice(-12, None), slice(0, 12)),
                   (slice(-12, None), slice(-12, None))):
        assert np.abs(frame[ys, xs].astype(int) - base[ys, xs]).mean() < 2.0


def test_folds_the_track_asks_for_are_unfolded(crop256, reference: np.ndarray) -> None:
    """Lids closing past each other and jittered points ask the warp to fold triangles over (crossed lips would too;
    they are made to meet at their middle instead). The warp unfolds them: no destination triangle turns over, so the
    warp's Jacobian never changes sign; every pixel takes the affine of a triangle; a frame that asks for no fold is
    warped exactly as asked."""
    renderer, ctx = crop256
    iod, down = inter_ocular(reference), _down(reference)
    crossed = reference.copy()
    for upper, lower in INNER_LIP_PAIRS:
        crossed[lower] = reference[upper] - 0.05 * iod * down
    past = blinked(reference)
    for upper, _ in EYELID_PAIRS:
        past[upper] += 0.05 * iod * down
    jitter = reference + np.random.default_rng(0).normal(0.0, 0.08 * iod, reference.shape)
    frames = np.stack([crossed, past, jitter, opened(reference, 0.3)])
    asked, _ = track_destinations(ctx, frames)
    assert folded_triangles(ctx, asked).any(axis=1).tolist() == [False, True, True, False]
    upper, lower = (list(side) for side in zip(*INNER_LIP_PAIRS, strict=True))
    assert np.allclose(asked[0, upper], asked[0, lower])
    assert np.allclose(asked[0, upper], renderer.crop_landmarks(ctx, (crossed[upper] + crossed[lower]) / 2))
    dst = destinations(ctx, frames)
    _assert_no_fold(ctx, dst)
    assert np.array_equal(dst[3], asked[3])  # nothing to unfold: as asked
    moved_by = np.linalg.norm(dst[:, :NUM_POINTS] - asked[:, :NUM_POINTS], axis=-1)
    assert np.median(moved_by[:3]) < 0.02 * iod  # only the points in the folds move
    covered = np.zeros((len(ctx.triangles) + 1, 6), np.float32)  # 1 where a triangle's affine, 2 where none
    covered[:, 2], covered[-1, 2] = 1.0, 2.0
    for frame in dst:
        kinds, _ = source_map(ctx, frame, covered, (0, 0, 256, 256))
        assert (kinds == 1).all()
    assert renderer.render(ctx, frames).shape == (4, 256, 256, 3)


def _assert_no_fold(ctx, dst: np.ndarray) -> None:
    """No triangle of ``dst`` ``(T, N, 2)`` turned over: the determinant of every destination-to-source affine is
    positive (where the photo's triangle has an area: the closed mouth's slivers have none)."""
    assert not folded_triangles(ctx, dst).any()
    table = _affine_tables(dst, ctx.mesh, ctx.triangles)[:, :-1]
    jacobian = table[..., 0] * table[..., 4] - table[..., 1] * table[..., 3]
    has_area = signed_areas(ctx.mesh, ctx.triangles) > 1.0
    assert (jacobian[:, has_area] > 0).all()


def test_no_fold_under_real_head_motion_and_speech(crop256, reference: np.ndarray) -> None:
    """The head turned over the range real talking clips show (yaw ±20°, pitch ±15°, roll ±15°, and between), the
    mouth opening wide and shut, the eyes blinking: the warp field never folds."""
    from pipeline.edits import turn_head
    from pipeline.landmarks import LandmarkTrack

    rng = np.random.default_rng(1)
    poses = np.array([(y, p, r) for y in (-20, -10, 0, 10, 20) for p in (-15, 0, 15) for r in (-15, 0, 15)], float)
    faces = [opened(reference, a) for a in rng.uniform(0.0, 0.45, len(poses))]
    faces = [blinked(f) if k % 4 == 0 else closed(f) if k % 4 == 1 else f for k, f in enumerate(faces)]
    track = LandmarkTrack(np.stack(faces), 25, (512, 512), reference=reference)
    frames = turn_head(track, poses).points2d
    _assert_no_fold(crop256[1], destinations(crop256[1], frames))


def test_the_far_side_of_a_turned_face_keeps_its_outline_outside_the_eye(crop256, reference: np.ndarray) -> None:
    """Turned 15-30 degrees away, the photo's silhouette points (the top of the jaw line) would swing inside the far
    eye's corner and fold the temple; the warp keeps them outside it, as the new silhouette is, and so asks for no
    fold there. The photo's own face is left exactly as it is."""
    from pipeline.canonical import apply_transform, lift_to_3d
    from pipeline.edits import turn_head
    from pipeline.landmarks import LandmarkTrack
    from pipeline.render.warp import _outline_clearance

    renderer, ctx = crop256
    face = lift_to_3d(reference)
    yaws = np.array([-30.0, -20.0, -15.0, 15.0, 20.0, 30.0])
    track = LandmarkTrack(np.repeat(face[None], len(yaws), axis=0), 25, (512, 512), reference=face)
    frames = turn_head(track, np.stack([yaws, np.zeros_like(yaws), np.zeros_like(yaws)], axis=1)).points2d
    asked = _outline_clearance(apply_transform(ctx.to_canvas, frames))
    assert (asked < 0).any()  # the track itself swings the outline inside the eye on the far side
    dst, _ = track_destinations(ctx, frames)
    assert (_outline_clearance(dst[:, :68]) >= ctx.clearance[None] - 1e-6).all()
    temple = [k for k, tri in enumerate(ctx.triangles) if {16, 45} <= set(tri) or {0, 36} <= set(tri)]
    assert not folded_triangles(ctx, dst)[:, temple].any()
    at_rest, _ = track_destinations(ctx, reference[None])
    assert np.array_equal(at_rest[0, :68], apply_transform(ctx.to_canvas, reference))


def test_ears_and_hair_beside_a_turning_cheek_move_with_it(crop256, reference: np.ndarray) -> None:
    """Turned 15-20 degrees, the near cheek swings out past where the head's rigid motion alone puts the ear and hair
    beside it: the skin between was squashed to a hard edge at the temple (at 15 degrees to 2-4 % of its area, at 20
    turned over). The head points there follow half the jaw line's own motion across the face: at 15 degrees those
    triangles keep about a third of their area, at 20 none turns over; no frame slides them along the face."""
    import dataclasses

    from pipeline.canonical import lift_to_3d
    from pipeline.edits import turn_head
    from pipeline.landmarks import LandmarkTrack

    _, ctx = crop256
    face = lift_to_3d(reference)
    yaws = np.array([-20.0, -15.0, 15.0, 20.0])
    track = LandmarkTrack(np.repeat(face[None], len(yaws), axis=0), 25, (512, 512), reference=face)
    frames = turn_head(track, np.stack([yaws, np.zeros_like(yaws), np.zeros_like(yaws)], axis=1)).points2d
    start = FACE_VERTICES + len(ctx.carriers)
    head = set(range(start, start + ctx.num_head))
    beside = [k for k, tri in enumerate(ctx.triangles) if set(tri) & set(range(17)) and set(tri) & head]
    assert beside and ctx.head_follow.shape == (ctx.num_head, 17)
    photo_areas = signed_areas(ctx.mesh[None], ctx.triangles)[:, beside]

    def area_ratios(context) -> np.ndarray:
        dst, _ = track_destinations(context, frames)
        return signed_areas(dst, ctx.triangles)[:, beside] / photo_areas

    following = area_ratios(ctx).min(axis=1)  # yaws -20, -15, 15, 20
    rigid = area_ratios(dataclasses.replace(ctx, head_follow=np.zeros_like(ctx.head_follow))).min(axis=1)
    assert (following[1:3] > 0.3).all() and (rigid[1:3] < 0.1).all()
    assert (following > 0).all() and (rigid[[0, 3]] < 0).all()
    at_rest, _ = track_destinations(ctx, reference[None])
    assert np.allclose(at_rest[0, start : start + ctx.num_head], ctx.mesh[start : start + ctx.num_head], atol=1e-6)
    tilted = turn_head(track, np.array([[-20.0, 10.0, 14.0]] * len(yaws))).points2d[:1]  # turned, nodding, tilted
    dst, rigid = track_destinations(ctx, tilted)
    extra = (dst - rigid)[0, start : start + ctx.num_head]
    inside = (rigid[0, start : start + ctx.num_head] > 1.0).all(axis=1)  # not held at the border
    inside &= (rigid[0, start : start + ctx.num_head] < 254.0).all(axis=1)
    assert np.abs(extra[inside] @ _down(dst[0, :NUM_POINTS])).max() < 1e-6  # across the face only: no slide


def test_a_face_pushed_against_the_border_stays_in_one_piece(crop256, reference: np.ndarray) -> None:
    """A track that moves the head a third to three fifths of the crop sideways (turned or not) pushes the skull
    against the fixed border: the warp stops the face short of it, whole. Its triangles keep their shape (a rigid
    move: area ratio 1) within a quarter, never stretched several times over as when points went back alone, and the
    face still moves the way the track asks."""
    renderer, ctx = crop256
    centre = reference.mean(axis=0)
    width = ctx.box[2] - ctx.box[0]
    frames = []
    for shift in (0.3, 0.45, 0.6):
        for degrees in (0, 15, -15):
            a = np.deg2rad(degrees)
            turn = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
            frames.append((reference - centre) @ turn.T + centre + (shift * width, 0.0))
    dst = destinations(ctx, np.stack(frames))
    _assert_no_fold(ctx, dst)
    source = signed_areas(ctx.mesh[None], ctx.triangles)[0]
    face = (ctx.triangles < FACE_VERTICES).all(axis=1) & (source > 1.0)
    ratio = signed_areas(dst, ctx.triangles)[:, face] / source[face]
    assert ratio.min() > 0.7 and ratio.max() < 1.3
    moved = (dst[:, 30, 0] - ctx.mesh[30, 0]) / (renderer.size / width)  # the nose tip, in photo pixels
    assert (moved > 0.2 * 0.3 * width).all()


@pytest.mark.parametrize("size", [256, 512])
@pytest.mark.parametrize("window", [(60, 400, 160, 512), (70, 250, 160, 300)])
def test_face_near_the_border(
    analyzer: FaceAnalyzer, photo: np.ndarray, reference: np.ndarray, size: int, window: tuple[int, ...]
) -> None:
    """The face near the photo's corner: the crop slides to stay inside the photo, or, when the photo
    is too small for it, repeats the photo's edges."""
    top, bottom, left, right = window
    part = np.ascontiguousarray(photo[top:bottom, left:right])
    points = reference - (left, top)
    crop = WarpRenderer(size)
    ctx = crop.prepare(part, points)
    x0, y0, x1, y1 = ctx.box
    inside = x0 >= 0 and y0 >= 0 and x1 <= part.shape[1] and y1 <= part.shape[0]
    assert inside == (window[1] - window[0] > 300)
    out = crop.render(ctx, np.stack([points, opened(points, 0.15)]))
    assert out.shape == (2, size, size, 3) and out.dtype == np.uint8
    assert psnr(out[0], plain_crop(part, ctx.box, size)) > 35.0
    inner = crop.crop_landmarks(ctx, points)
    assert inner.min() > 0 and inner.max() < size
    full = WarpRenderer(size, full=True)
    ctx = full.prepare(part, points)
    out = full.render(ctx, np.stack([points, opened(points, 0.15), blinked(points)]))
    assert out.shape == (3,) + part.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0], part)
    seen = analyzer.detect(out[1]).landmarks.astype(np.float64)
    assert inner_gap(seen) > inner_gap(points) + 0.06  # the 0.15 opening, as the mesh front end sees it


def test_full_mode_on_a_large_photo(photo: np.ndarray, reference: np.ndarray) -> None:
    """A face region over 1024 pixels is warped on a smaller grid; the rest of the photo is untouched."""
    big = cv2.resize(photo, None, fx=5, fy=5, interpolation=cv2.INTER_CUBIC)
    points = (reference + 0.5) * 5 - 0.5
    renderer = WarpRenderer(full=True)
    ctx = renderer.prepare(big, points)
    assert ctx.downscale > 1
    out = renderer.render(ctx, np.stack([points, opened(points, 0.15)]))
    np.testing.assert_array_equal(out[0], big)
    changed = np.any(out[1] != big, axis=2)
    ys, xs = np.nonzero(changed)
    mouth = points[48:68]
    assert xs.min() >= ctx.box[0] and ys.min() >= ctx.box[1] and xs.max() < ctx.box[2] and ys.max() < ctx.box[3]
    assert mouth[:, 1].max() < ys.max()
    assert changed.mean() < 0.3  # only the lower face moves
    small = cv2.resize(out[1], photo.shape[1::-1], interpolation=cv2.INTER_AREA)
    reduced = WarpRenderer(full=True)
    expected = reduced.render(reduced.prepare(photo, reference), opened(reference, 0.15)[None])[0]
    assert psnr(small, expected) > 28.0


def test_bad_input(photo: np.ndarray, reference: np.ndarray, crop256) -> None:
    from pipeline.errors import InputError

    renderer, ctx = crop256
    with pytest.raises(InputError):
        renderer.prepare(photo, reference[:60])
    with pytest.raises(InputError):
        renderer.render(ctx, reference)
    with pytest.raises(InputError):
        renderer.render(ctx, np.full((2, 68, 2), np.nan))
    with pytest.raises(ValueError):
        WarpRenderer(8)
