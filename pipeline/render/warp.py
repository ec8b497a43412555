"""Fast landmark-driven renderer: piecewise-affine warping of one photo to follow a landmark track.

:meth:`WarpRenderer.prepare` does all per-photo work once: it fixes the output crop (or, in full mode,
the face region of the photo), builds a triangle mesh over the 68 landmarks plus extra points and
records the photo's colours for what a warp cannot show. The mesh has these kinds of vertices:

* the 68 landmarks, which follow the target frame, and midpoints on the inner-lip and eye outlines
  (Catmull-Rom curves through the landmarks), so open lips and lids stay round;
* eyelid creases between each brow and eye, carried by their brow point (turning and scaling with
  the head), so a blink stretches the upper-lid skin over the eye instead of pulling the brow down;
* head points (forehead row above the brows, a skull arc mirrored from the jaw, the ears), which move
  rigidly with the per-frame similarity of the stable points, so head motion carries the whole head, those beside
  the face also with the jaw line's own motion (a turning cheek carries the ear and hair beside it);
* anchors on the border of the region, which never move, so the background stays put.

The topology is a Delaunay triangulation computed once, with the lip, eye, brow and jaw outlines
forced in as edges (so the upper lip never stretches into the lower one, nor the eyelids into each
other). :meth:`WarpRenderer.render` then moves the vertices of any triangle the track would fold over until none
does (:func:`unfold`: the warp's Jacobian never changes sign), and, for each frame, rasterises the destination
triangles into an index image (folded triangles first, should any be left, so valid ones win), turns it into a
per-pixel source map with a table of per-triangle affines and samples the photo with ``cv2.remap``. Lips asked to
meet (or to cross) meet exactly; where they meet over a photo's open mouth, their edges are sampled from inside the
photo's lips (:func:`lip_sources`), so the closed line shows lip against lip, not squashed teeth; likewise the inside of
each eye samples the photo through copies of its upper lid's vertices taken down by the eye's closure
(:func:`lid_sources`), so a lowering lid covers the iris instead of squashing it. Last it paints what
the photo does not have: the inside of a mouth opened wider than the photo's, or the photo's own teeth moved with
the lips (:mod:`pipeline.render.mouth`), and the skin of an upper lid closing over the eye, mirrored from under the
eye, with a lash line.

Full mode warps a region of the photo at its own resolution; a region over ``MAX_WORK_SIDE`` pixels
is warped on a grid shrunk by a whole factor, and only the area that moves is enlarged back and
blended in, so huge photos stay fast and their still parts keep every pixel.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import Delaunay

from ..canonical import apply_transform, inter_ocular, invert_transform
from ..errors import InputError
from ..images import load_image
from ..regions import (
    EYELID_PAIRS,
    INNER_LIP,
    INNER_LIP_PAIRS,
    JAW,
    LEFT_BROW,
    NUM_POINTS,
    OUTER_LIP,
    RIGHT_BROW,
    STABLE,
)
from .mouth import (
    Band,
    MouthStyle,
    PhotoMouth,
    blend,
    bounding_box,
    fill_amount,
    inner_opening,
    mouth_style,
    paint_mouth,
    paint_photo_mouth,
    polygon_pixels,
    seam_amount,
    smoothstep,
)

#: Side of the output crop and of the full-mode region, in face sizes (landmark bounding box side).
#: The crop shrinks towards MIN_CROP_SCALE rather than leave a small photo, and slides to stay inside
#: it; only what still falls outside is filled by repeating the photo's edge.
CROP_SCALE = 2.2
MIN_CROP_SCALE = 2.0
REGION_SCALE = 2.5
#: The crop centre sits this many face sizes above the nose tip.
CENTRE_RAISE = 0.1
#: Full mode warps regions wider than this many pixels on a grid shrunk by a whole factor, and
#: upsamples only the area that changes (pixels moved by more than CHANGE_THRESHOLD photo pixels).
MAX_WORK_SIDE = 1024
CHANGE_THRESHOLD = 0.25
#: Forehead points sit this far (inter-ocular units) above the brows.
FOREHEAD_RAISE = 0.42
#: Ear points sit this far (fractions of the jaw width) outside the ends of the jaw.
EAR_OFFSET = 0.2
#: Upper and lower outline (corner, lid, lid, corner) of each eye (right, left), the brow points above
#: the upper one, and the pairs of lid points that meet in a blink.
UPPER_EYELIDS = ((36, 37, 38, 39), (42, 43, 44, 45))
LOWER_EYELIDS = ((36, 41, 40, 39), (42, 47, 46, 45))
BROWS_ABOVE = ((18, 19, 20, 21), (22, 23, 24, 25))
EYE_LID_PAIRS = (EYELID_PAIRS[:2], EYELID_PAIRS[2:])
#: Eyelid creases sit this fraction of the way from the upper eye outline to the brow.
CREASE_FRACTION = 0.4
#: The closing lid is painted with the photo's lid skin from these closures (1 - opening / photo's) on.
LID_PAINT_CLOSURE = (0.25, 0.9)
#: The lid skin is mirrored from under the eye, from this far (inter-ocular units) below the lid line.
LID_MIRROR_GAP = 0.08
#: Thickness of the painted lash line, inter-ocular units.
LASH_WIDTH = 0.016
#: Photo eyes opened less than this (inter-ocular units) are taken as closed: no lid painting.
MIN_EYE_OPENING = 0.02
#: Head points closer than this (inter-ocular units) to another mesh point are dropped.
MIN_SPACING = 0.15
#: The far side of a turned face: the jaw line's upper points (per side, from the top down) and the eye corner and brow
#: end they must stay outside of, along the eyes' axis, by OUTLINE_CLEARANCE eye distances (or by what the photo
#: shows, if less). Turned away, the photo's silhouette points would swing inside the eye (the new silhouette is the
#: temple just outside it) and the skin between them would fold.
FAR_SIDE = (((16, 15, 14, 13), (45, 26)), ((0, 1, 2, 3), (36, 17)))
OUTLINE_CLEARANCE = 0.05
#: Head points beside the face (ears, temples, hair) follow the jaw line's own motion beyond the head's rigid motion,
#: along the eyes' axis only: each takes OUTLINE_FOLLOW_SHARE of the jaw points' extra motion weighted by a Gaussian
#: of their distance (OUTLINE_FOLLOW_REACH eye distances), times a Gaussian of its distance to the nearest jaw point
#: (OUTLINE_FOLLOW_FALLOFF). A turning head's near cheek swings out past where the rigid motion puts the ear beside
#: it; held there, the skin between them was squashed into a hard edge at the temple. Followed fully, the hair's
#: outline bent into a corner at the ear in strong turns; followed in both directions, a tilted turn slid the face
#: down against the hair.
OUTLINE_FOLLOW_SHARE = 0.5
OUTLINE_FOLLOW_REACH = 0.5
OUTLINE_FOLLOW_FALLOFF = 0.8
#: Lips that meet over a photo's open mouth take their edges from this share of the way into each lip (from its inner
#: towards its outer outline, in the photo): the photo's inner lip edges, dark where they meet the teeth, and the teeth
#: themselves stay inside the closed line instead of showing along it.
LIP_RETRACT = 0.3
#: Inner lips closer than this (inter-ocular units) meet: a sliver of a gap would stretch the inside of the mouth
#: across it.
LIP_MEET = 0.01
#: Inner-lip points and the outer-lip point across each lip from them (the corners' from the outer corners).
LIP_ACROSS = ((60, 48), (61, 50), (62, 51), (63, 52), (64, 54), (65, 56), (66, 57), (67, 58))
#: Head points are kept this far (fraction of the region side) inside the region border.
BORDER_MARGIN = 0.04
#: Mouth and eye openings forced on the layout used to triangulate (inter-ocular units).
LAYOUT_GAP = 0.06
#: Anchors per region side (corners included).
ANCHORS_PER_SIDE = 5
#: Destination triangles with less area than this (square pixels) get a plain translation.
MIN_AREA = 1e-3
#: Unfolding (:func:`unfold`): relaxation steps towards the neighbours' motion, then halvings towards the head's
#: motion, then bisections of the share of the whole frame's motion away from the photo's own mesh.
UNFOLD_SMOOTHING_STEPS = 20
UNFOLD_RIGID_STEPS = 20
UNFOLD_BISECTIONS = 12
#: ...keeping every triangle between the head and the border at this share of its area in the photo or more.
MIN_BORDER_AREA = 0.25


#: Outlines (corner to corner) that get a curve midpoint between each pair of landmarks.
CURVES = (
    (60, 61, 62, 63, 64),
    (60, 67, 66, 65, 64),
    (36, 37, 38, 39),
    (36, 41, 40, 39),
    (42, 43, 44, 45),
    (42, 47, 46, 45),
)


def _chain(indices: tuple[int, ...]) -> list[tuple[int, int]]:
    return [(indices[i], indices[i + 1]) for i in range(len(indices) - 1)]


def _curve_midpoints() -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Weights ``(D, 68)`` giving the Catmull-Rom midpoints of :data:`CURVES` from the landmarks, and
    the outline edges through them (midpoint ``d`` is mesh vertex ``NUM_POINTS + d``)."""
    rows, edges = [], []
    for curve in CURVES:
        for i, (a, b) in enumerate(_chain(curve)):
            row = np.zeros(NUM_POINTS)
            row[a] += 9 / 16
            row[b] += 9 / 16
            # the neighbours beyond each end; past a corner, the mirror image of the next point
            for near, far, k in ((a, b, i - 1), (b, a, i + 2)):
                if 0 <= k < len(curve):
                    row[curve[k]] -= 1 / 16
                else:
                    row[near] -= 2 / 16
                    row[far] += 1 / 16
            vertex = NUM_POINTS + len(rows)
            rows.append(row)
            edges += [(a, vertex), (vertex, b)]
    return np.asarray(rows), edges


MIDPOINT_WEIGHTS, _CURVE_EDGES = _curve_midpoints()
#: Outline edges the triangulation must contain.
CONSTRAINED_EDGES = (
    _CURVE_EDGES
    + _chain(OUTER_LIP + OUTER_LIP[:1])
    + [(48, 60), (54, 64)]
    + _chain(RIGHT_BROW)
    + _chain(LEFT_BROW)
    + _chain(JAW)
)
#: Mesh vertices before the eyelid creases: the landmarks and the curve midpoints.
FACE_VERTICES = NUM_POINTS + len(MIDPOINT_WEIGHTS)


def _midpoints_of(curve: tuple[int, ...]) -> list[int]:
    """Mesh vertices of the curve midpoints of one of :data:`CURVES`, in order along it."""
    start = NUM_POINTS + sum(len(c) - 1 for c in CURVES[: CURVES.index(curve)])
    return list(range(start, start + len(curve) - 1))


#: Both eyes' upper lid lines between their corners (landmarks and curve midpoints). Triangles inside an eye sample the
#: photo through copies of these vertices (:func:`lid_sources`), so a closing lid covers the eye, not squashes it.
UPPER_LID_VERTICES = tuple(v for upper in UPPER_EYELIDS for v in (*upper[1:3], *_midpoints_of(upper)))


@dataclass
class WarpContext:
    """Everything :meth:`WarpRenderer.render` needs about one photo; computed once, never modified."""

    full: bool
    photo: np.ndarray  # (H, W, 3) uint8 RGB, the input photo
    source: np.ndarray  # what the warp samples: the crop at output size, or (full mode) the region at canvas size
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in photo pixels: the crop square (may leave the photo) or region
    to_canvas: np.ndarray  # (2, 3) photo pixels -> canvas pixels (the output crop, or the warp's working grid)
    canvas_size: tuple[int, int]  # width, height of the canvas
    downscale: int  # full mode: photo pixels per canvas pixel (1 unless the region is huge); crop mode: 1
    triangles: np.ndarray  # (K, 3) int32 vertex indices, counter-clockwise on the layout
    lid_triangles: np.ndarray  # (K, 3) the same, inside the eyes through copies of the upper lid vertices (N + j)
    adjacency: np.ndarray  # (N, N) float64: 1 where two vertices share a triangle edge
    mesh: np.ndarray  # (N, 2) float64 canvas positions of the mesh vertices in the photo
    carriers: np.ndarray  # (A,) brow point carrying each crease vertex (vertices FACE_VERTICES : +A)
    num_head: int  # the next num_head vertices move with the head (rigidly, plus head_follow); the rest are anchors
    head_follow: np.ndarray  # (num_head, 17) share of each jaw point's non-rigid motion each head point takes
    grid_x: np.ndarray  # (h, w) float32 canvas x of each pixel
    grid_y: np.ndarray  # (h, w) float32 canvas y of each pixel
    style: MouthStyle
    photo_opening: float  # the photo's inner-lip opening, inter-ocular units
    photo_mouth: PhotoMouth | None  # the inside of the photo's open mouth, in output pixels (None: lips meet)
    eye_openings: np.ndarray  # (2,) the photo's eye openings (right, left), inter-ocular units
    lid_colours: np.ndarray  # (2, 3) float32 RGB of each upper lid's skin
    lash_colours: np.ndarray  # (2, 3) float32 RGB of each upper lash line
    clearance: np.ndarray  # (2, 4) least distance (eye distances) of each FAR_SIDE outline point outside its eye


def _similarities(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarities ``(T, 2, 3)`` taking the points ``src (n, 2)`` to each ``dst (T, n, 2)``."""
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=1)
    s, d = src - mu_s, dst - mu_d[:, None]
    norm = max(float((s**2).sum()), 1e-12)
    a = (s[:, 0] * d[..., 0] + s[:, 1] * d[..., 1]).sum(-1) / norm
    b = (s[:, 0] * d[..., 1] - s[:, 1] * d[..., 0]).sum(-1) / norm
    matrices = np.empty((len(dst), 2, 3))
    matrices[:, 0, 0], matrices[:, 0, 1], matrices[:, 1, 0], matrices[:, 1, 1] = a, -b, b, a
    matrices[:, :, 2] = mu_d - np.einsum("tij,j->ti", matrices[:, :, :2], mu_s)
    return matrices


def _cross(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    return float((a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]))


def _crosses(p: np.ndarray, a: int, b: int, c: int, d: int) -> bool:
    """Whether segments ``ab`` and ``cd`` cross at a point inside both."""
    return (
        _cross(p[a], p[b], p[c]) * _cross(p[a], p[b], p[d]) < 0
        and _cross(p[c], p[d], p[a]) * _cross(p[c], p[d], p[b]) < 0
    )


def _edge_index(tris: list[list[int]]) -> dict[tuple[int, int], int]:
    return {(t[i], t[(i + 1) % 3]): k for k, t in enumerate(tris) for i in range(3)}


def _force_edge(p: np.ndarray, tris: list[list[int]], a: int, b: int) -> None:
    """Flip edges until ``ab`` is an edge of the triangulation (Sloan 1993); gives up on degenerate input."""
    edges = _edge_index(tris)
    if (a, b) in edges or (b, a) in edges:
        return
    queue = deque(
        (c, d) for (c, d) in edges if c < d and (d, c) in edges and not {c, d} & {a, b} and _crosses(p, a, b, c, d)
    )
    budget = 50 * len(queue) + 100
    while queue and budget > 0:
        budget -= 1
        c, d = queue.popleft()
        k1, k2 = edges.get((c, d)), edges.get((d, c))
        if k1 is None or k2 is None:
            continue
        e = next(v for v in tris[k1] if v not in (c, d))
        f = next(v for v in tris[k2] if v not in (c, d))
        if not _crosses(p, c, d, e, f):  # the quad is not convex: try again after other flips
            queue.append((c, d))
            continue
        tris[k1], tris[k2] = [e, c, f], [f, d, e]
        edges = _edge_index(tris)
        if not {e, f} & {a, b} and _crosses(p, a, b, e, f):
            queue.append((e, f))


def _triangulate(layout: np.ndarray) -> np.ndarray:
    """Delaunay triangles of ``layout`` with :data:`CONSTRAINED_EDGES` forced in, counter-clockwise."""
    tris = [
        [int(a), int(b), int(c)] if _cross(layout[a], layout[b], layout[c]) > 0 else [int(a), int(c), int(b)]
        for a, b, c in Delaunay(layout).simplices
    ]
    for a, b in CONSTRAINED_EDGES:
        _force_edge(layout, tris, a, b)
    return np.asarray(tris, dtype=np.int32)


def _layered_triangles(triangles: np.ndarray, layout: np.ndarray) -> np.ndarray:
    """``triangles`` with those inside an eye (all corners on its outline, centroid inside it on the ``layout``)
    taking their upper lid vertices as copies: vertex ``UPPER_LID_VERTICES[j]`` becomes ``N + j``,
    ``N = len(layout)``."""
    layered = triangles.copy()
    copies = {v: len(layout) + j for j, v in enumerate(UPPER_LID_VERTICES)}
    for upper, lower in zip(UPPER_EYELIDS, LOWER_EYELIDS, strict=True):
        upper_mids, lower_mids = _midpoints_of(upper), _midpoints_of(lower)
        ring = [v for k in range(3) for v in (upper[k], upper_mids[k])]
        ring += [v for k in (3, 2, 1) for v in (lower[k], lower_mids[k - 1])]  # back along the lower lid
        polygon = layout[ring].astype(np.float32)
        outline = set(ring)
        for k, corners in enumerate(triangles):
            centre = layout[corners].mean(axis=0)
            if set(corners.tolist()) <= outline and cv2.pointPolygonTest(polygon, tuple(map(float, centre)), False) > 0:
                layered[k] = [copies.get(int(v), int(v)) for v in corners]
    return layered


def _moved_face(ctx: WarpContext, points: list[int], towards: list[int], share: np.ndarray) -> np.ndarray:
    """The photo's landmarks and curve midpoints ``(T, FACE_VERTICES, 2)`` with each landmark of ``points`` moved
    ``share`` ``(T, len(points))`` of the way to its partner in ``towards`` (the midpoints follow them)."""
    landmarks = np.repeat(ctx.mesh[None, :NUM_POINTS], len(share), axis=0)
    landmarks[:, points] += share[..., None] * (ctx.mesh[towards] - ctx.mesh[points])
    return np.concatenate([landmarks, np.einsum("dn,tnj->tdj", MIDPOINT_WEIGHTS, landmarks)], axis=1)


def lid_sources(ctx: WarpContext, closure: np.ndarray) -> np.ndarray:
    """Where the inside of each eye samples the photo along its upper lid, ``(T, U, 2)`` for the vertices of
    :data:`UPPER_LID_VERTICES`, given each eye's closure ``(T, 2)`` in ``[0, 1]`` (1 - opening / the photo's): the
    photo's lid line taken that share of the way towards the lower lid. The eye's visible part then keeps the photo's
    scale (a lid lowered to half covers the upper half of the iris instead of squashing it to half)."""
    upper, lower = (list(side) for side in zip(*EYELID_PAIRS, strict=True))
    eye = [k for k, pairs in enumerate(EYE_LID_PAIRS) for _ in pairs]  # the eye of each pair
    return _moved_face(ctx, upper, lower, closure[:, eye])[:, list(UPPER_LID_VERTICES)]


def _down_vectors(points: np.ndarray) -> np.ndarray:
    """Unit vectors ``(..., 2)`` perpendicular to the eye line, pointing from the brows to the chin."""
    eye = points[..., 45, :] - points[..., 36, :]
    down = np.stack([-eye[..., 1], eye[..., 0]], axis=-1)
    return down / np.maximum(np.linalg.norm(down, axis=-1, keepdims=True), 1e-9)


def _eye_openings(points: np.ndarray) -> np.ndarray:
    """Openings ``(..., 2)`` of the right and left eye of faces ``(..., 68, 2)``, inter-ocular units."""
    down = _down_vectors(points)[..., None, :]
    openings = []
    for pairs in EYE_LID_PAIRS:
        upper, lower = [p for p, _ in pairs], [q for _, q in pairs]
        openings.append(((points[..., lower, :] - points[..., upper, :]) * down).sum(-1).mean(-1))
    return np.maximum(np.stack(openings, axis=-1), 0.0) / np.maximum(inter_ocular(points), 1e-9)[..., None]


def _lid_colours(photo: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Colour of each upper lid's skin and of its lash line, ``(2, 3)`` each.

    The lid colour mixes the photo's lid (between lashes and crease, often made up or shadowed) with
    more of the skin just under the eye, which keeps a closed lid skin-coloured and lit like its place.
    """
    iod = float(inter_ocular(ref))
    down = _down_vectors(ref)
    lids, lashes = [], []
    for outline, lower, brows in zip(UPPER_EYELIDS, LOWER_EYELIDS, BROWS_ABOVE, strict=False):
        eye, brow, under = ref[list(outline)], ref[list(brows)], ref[list(lower)]
        rows = [eye + f * (brow - eye) for f in (-0.08, 0.12, 0.2, 0.5)]
        lid = polygon_pixels(photo, [np.concatenate([rows[2], rows[3][::-1]])])
        lash = polygon_pixels(photo, [np.concatenate([rows[0], rows[1][::-1]])])
        cheek = polygon_pixels(photo, [np.concatenate([under + 0.04 * iod * down, (under + 0.16 * iod * down)[::-1]])])
        skin = np.median(cheek, axis=0) if len(cheek) else np.full(3, 170.0)
        lids.append(0.6 * (np.median(lid, axis=0) if len(lid) else skin) + 0.4 * skin)
        lashes.append(np.percentile(lash, 10, axis=0) if len(lash) else np.full(3, 40.0))
    return np.asarray(lids, np.float32), np.asarray(lashes, np.float32)


def _paint_eyelid(
    frame: np.ndarray,
    crease: np.ndarray,
    lid: np.ndarray,
    amount: float,
    iod: float,
    skin: np.ndarray,
    lash: np.ndarray,
) -> None:
    """Cover a closing eye with lid skin and a lash line, between its ``crease`` and ``lid`` outlines (4 points).

    The skin is the frame's own skin under the eye, mirrored up over the lid (so it has the texture and
    light of that place), tinted with the photo's lid colour ``skin`` and shaded round.
    """
    if amount <= 0.0:
        return
    lash_width = max(0.8, LASH_WIDTH * iod)
    box = bounding_box(np.concatenate([crease, lid]), 2.0 * lash_width + 1.0, frame.shape)
    if box is None:
        return
    band = Band.of(box, crease, lid)
    above_lid, height = band.from_bottom, band.height
    u = np.clip(band.u, 0.0, 1.0)
    bulge = np.sin(np.pi * u)
    along = smoothstep(-0.02, 0.2, band.u) * smoothstep(1.02, 0.8, band.u)
    cover = smoothstep(1.0, 0.45, above_lid / height) * smoothstep(-0.5 * lash_width, 0.0, above_lid)
    thickness = lash_width * (0.45 + 0.55 * np.sqrt(bulge))
    line = smoothstep(thickness, 0.2 * thickness, above_lid) * smoothstep(-0.6 * thickness, 0.0, above_lid)

    span = lid[-1] - lid[0]
    down = np.array([-span[1], span[0]]) / max(float(np.hypot(*span)), 1e-6)
    ys, xs = np.mgrid[box[1] : box[3], box[0] : box[2]].astype(np.float32)
    reach = (2.0 * np.maximum(above_lid, 0.0) + LID_MIRROR_GAP * iod).astype(np.float32)
    map_x, map_y = xs + reach * np.float32(down[0]), ys + reach * np.float32(down[1])
    mirrored = cv2.remap(frame, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    shade = 0.9 + 0.08 * bulge * smoothstep(0.0, 0.5, above_lid / height)
    colour = (0.5 * mirrored + 0.5 * skin) * shade[..., None]
    colour += (lash - colour) * (0.85 * line)[..., None]
    blend(frame, box, colour, amount * along * np.maximum(cover, line))


def _head_points(ref: np.ndarray, taken: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Points that move rigidly with the head, extrapolated from the face ``ref`` (68 points).

    Only points inside the canvas and away from the ``taken`` mesh points and each other are kept.
    """
    iod = float(inter_ocular(ref))
    forehead = ref[[17, 19, 21, 22, 24, 26]] - FOREHEAD_RAISE * iod * _down_vectors(ref)
    a, b = ref[0], ref[16]
    axis = (b - a) / max(float(np.hypot(*(b - a))), 1e-9)
    jaw = ref[[2, 5, 8, 11, 14]]
    feet = a + np.outer((jaw - a) @ axis, axis)
    skull = 2.0 * feet - jaw  # the jaw mirrored over the line through its ends: the top of the head
    ears = np.array([a - EAR_OFFSET * (b - a), b + EAR_OFFSET * (b - a)])
    margin = BORDER_MARGIN * max(size)
    kept: list[np.ndarray] = []
    for point in np.concatenate([forehead, ears, skull]):
        inside = margin <= point[0] <= size[0] - 1 - margin and margin <= point[1] <= size[1] - 1 - margin
        others = np.concatenate([taken, np.reshape(kept, (-1, 2))])
        if inside and np.hypot(*(others - point).T).min() >= MIN_SPACING * iod:
            kept.append(point)
    return np.reshape(kept, (-1, 2))


def _outline_follow(head: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``(len(head), 17)``: how much of each jaw point's motion beyond the head's rigid motion each head point takes
    (:data:`OUTLINE_FOLLOW_SHARE`, :data:`OUTLINE_FOLLOW_REACH`, :data:`OUTLINE_FOLLOW_FALLOFF`); ``ref`` is the face
    (68 points, same pixels)."""
    distance = np.linalg.norm(head[:, None] - ref[None, list(JAW)], axis=-1) / float(inter_ocular(ref))
    weights = np.exp(-0.5 * (distance / OUTLINE_FOLLOW_REACH) ** 2)
    weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
    falloff = np.exp(-0.5 * (distance.min(axis=1, initial=np.inf) / OUTLINE_FOLLOW_FALLOFF) ** 2)
    return OUTLINE_FOLLOW_SHARE * weights * falloff[:, None]


def _anchors(size: tuple[int, int]) -> np.ndarray:
    """Fixed points just outside the canvas border, so every pixel lies inside the mesh."""
    w, h = size
    xs, ys = np.linspace(-1.0, w, ANCHORS_PER_SIDE), np.linspace(-1.0, h, ANCHORS_PER_SIDE)
    top = np.stack([xs, np.full_like(xs, -1.0)], 1)
    bottom = np.stack([xs, np.full_like(xs, h)], 1)
    left = np.stack([np.full_like(ys[1:-1], -1.0), ys[1:-1]], 1)
    right = np.stack([np.full_like(ys[1:-1], w), ys[1:-1]], 1)
    return np.concatenate([top, bottom, left, right])


def _set_gaps(landmarks: np.ndarray, pairs: tuple[tuple[int, int], ...], below: np.ndarray,
              gap: np.ndarray) -> np.ndarray:
    """``landmarks`` ``(T, 68, 2)`` with each (upper, lower) pair that is less than ``below`` ``(T,)`` apart along the
    face's down direction (or crossed) set ``gap`` ``(T,)`` apart about its middle; the input when none is."""
    upper, lower = (list(side) for side in zip(*pairs, strict=True))
    down = _down_vectors(landmarks)  # (T, 2)
    close = np.einsum("tnj,tj->tn", landmarks[:, lower] - landmarks[:, upper], down) < below[:, None]
    if not close.any():
        return landmarks
    landmarks = landmarks.copy()
    middle = (landmarks[:, upper] + landmarks[:, lower]) / 2
    half = (gap[:, None] / 2 * down)[:, None]  # (T, 1, 2)
    for side, spread in ((upper, middle - half), (lower, middle + half)):
        landmarks[:, side] = np.where(close[..., None], spread, landmarks[:, side])
    return landmarks


def _open_layout(mesh: np.ndarray) -> np.ndarray:
    """The mesh with closed mouth and eyes pulled open, so their outlines triangulate cleanly."""
    layout = mesh.copy()
    gap = np.array([LAYOUT_GAP * float(inter_ocular(layout[:NUM_POINTS]))])
    landmarks = _set_gaps(layout[None, :NUM_POINTS], INNER_LIP_PAIRS + EYELID_PAIRS, gap, gap)[0]
    layout[:NUM_POINTS] = landmarks
    layout[NUM_POINTS:FACE_VERTICES] = MIDPOINT_WEIGHTS @ landmarks
    return layout


def _adjacency(triangles: np.ndarray, count: int) -> np.ndarray:
    """``(count, count)`` 0/1 matrix of the vertices that share a triangle edge."""
    adjacency = np.zeros((count, count))
    for a, b in ((0, 1), (1, 2), (2, 0)):
        adjacency[triangles[:, a], triangles[:, b]] = adjacency[triangles[:, b], triangles[:, a]] = 1.0
    return adjacency


def folded_triangles(ctx: WarpContext, dst: np.ndarray) -> np.ndarray:
    """``(T, K)`` True where a destination triangle of ``dst`` ``(T, N, 2)`` is folded over (turned over: negative
    area). A triangle already turned over in the photo's own mesh (a sliver between lips the photo shows crossed)
    does not count: the warp only keeps what the photo has."""
    return (signed_areas(dst, ctx.triangles) < -MIN_AREA) & (signed_areas(ctx.mesh, ctx.triangles) >= -MIN_AREA)


def _affine_tables(dst: np.ndarray, src: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Per-triangle affines from destination to source, ``(T, K + 1, 6)`` float32 rows (ax, bx, cx, ay, by, cy);
    ``src`` is one mesh ``(N, 2)`` for every frame or one a frame ``(T, N, 2)``.

    ``source_x = ax * x + bx * y + cx`` (likewise y) inside each destination triangle. Degenerate
    destination triangles get the translation of their centroid. The extra last row is the identity.
    """
    d = dst[:, triangles]  # (T, K, 3, 2)
    s = np.broadcast_to(src[..., triangles, :], d.shape)
    d1, d2 = d[:, :, 1] - d[:, :, 0], d[:, :, 2] - d[:, :, 0]
    det = d1[..., 0] * d2[..., 1] - d2[..., 0] * d1[..., 1]
    ok = np.abs(det) > 2 * MIN_AREA
    safe = np.where(ok, det, 1.0)
    tables = np.zeros(dst.shape[:1] + (len(triangles) + 1, 6))
    for axis in (0, 1):
        s0, s1, s2 = s[:, :, 0, axis], s[:, :, 1, axis], s[:, :, 2, axis]
        a = ((s1 - s0) * d2[..., 1] - (s2 - s0) * d1[..., 1]) / safe
        b = (d1[..., 0] * (s2 - s0) - d2[..., 0] * (s1 - s0)) / safe
        a = np.where(ok, a, 1.0 if axis == 0 else 0.0)
        b = np.where(ok, b, 0.0 if axis == 0 else 1.0)
        shift = s.mean(axis=2)[..., axis] - a * d.mean(axis=2)[..., 0] - b * d.mean(axis=2)[..., 1]
        tables[:, :-1, 3 * axis : 3 * axis + 3] = np.stack([a, b, shift], axis=-1)
    tables[:, -1] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    return tables.astype(np.float32)


def lip_sources(ctx: WarpContext, closing: np.ndarray) -> np.ndarray:
    """Where each frame samples the photo ``(T, N, 2)``: the photo's mesh, with the inner lip points of frames whose
    lips meet over the photo's open mouth (``closing`` ``(T,)``, 0..1) taken :data:`LIP_RETRACT` of the way into their
    lip (the inner-lip curve midpoints with them)."""
    sources = np.repeat(ctx.mesh[None], len(closing), axis=0)
    if not np.any(closing > 0):
        return sources
    inner, outer = (list(side) for side in zip(*LIP_ACROSS, strict=True))
    share = np.repeat(LIP_RETRACT * np.asarray(closing)[:, None], len(inner), axis=1)
    sources[:, :FACE_VERTICES] = _moved_face(ctx, inner, outer, share)
    return sources


def destinations(ctx: WarpContext, frames: np.ndarray) -> np.ndarray:
    """Canvas positions ``(T, N, 2)`` of all mesh vertices for target landmark frames ``(T, 68, 2)``, unfolded
    (:func:`unfold`)."""
    dst, rigid = track_destinations(ctx, frames)
    return unfold(dst, rigid, ctx)


def signed_areas(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Twice the signed area ``(..., K)`` of each triangle (counter-clockwise on the layout: positive)."""
    corners = points[..., triangles, :]  # (..., K, 3, 2)
    e1, e2 = corners[..., 1, :] - corners[..., 0, :], corners[..., 2, :] - corners[..., 0, :]
    return e1[..., 0] * e2[..., 1] - e1[..., 1] * e2[..., 0]


def unfold(dst: np.ndarray, rigid: np.ndarray, ctx: WarpContext) -> np.ndarray:
    """``dst`` ``(T, N, 2)`` changed only where a triangle folds over (negative area: its affine would mirror the
    photo, the warp's Jacobian changing sign), so that none does.

    Where the track asks for a fold (lips crossing, a brow crease over its eye in a turn, the skull pushed against
    the border by a tilt), the offending vertices are moved, a little at a time, until no triangle folds: first
    their motion away from the head's own (``rigid``: the frame's similarity of the stable points applied to the
    photo's mesh) is relaxed towards their neighbours' (:data:`UNFOLD_SMOOTHING_STEPS`), then shrunk towards the
    head's (:data:`UNFOLD_RIGID_STEPS`). Where even the head's motion folds against the border anchors (which never
    move: the head pushed out of the crop), the whole frame's motion is scaled back towards the photo's own mesh,
    which folds nothing, as little as keeps it unfolded (:data:`UNFOLD_BISECTIONS`): the face stops short of the
    border in one piece instead of some of its points going back alone and stretching the skin between them.
    Frames without a fold are returned untouched, so the common case costs one area test."""
    folded = np.flatnonzero(folded_triangles(ctx, dst).any(axis=1))
    if not len(folded):
        return dst
    dst = dst.copy()
    movable = np.arange(len(ctx.mesh)) < FACE_VERTICES + len(ctx.carriers) + ctx.num_head  # not the anchors
    for t in folded:
        points, head = dst[t], rigid[t]
        for step in range(UNFOLD_SMOOTHING_STEPS + UNFOLD_RIGID_STEPS):
            bad = folded_triangles(ctx, points[None])[0]
            if not bad.any():
                break
            vertices = np.unique(ctx.triangles[bad])
            vertices = vertices[movable[vertices]]
            if step < UNFOLD_SMOOTHING_STEPS:
                motion = points - head
                neighbours = ctx.adjacency[vertices] @ motion / ctx.adjacency[vertices].sum(axis=1)[:, None]
                points[vertices] = head[vertices] + 0.5 * (motion[vertices] + neighbours)
            else:
                points[vertices] = 0.5 * (points[vertices] + head[vertices])
        else:  # the steps ran out: the last one may have unfolded the frame, or the border is in the way
            if folded_triangles(ctx, points[None])[0].any():
                points[:] = _scaled_back(ctx, points)
    return dst


def _scaled_back(ctx: WarpContext, points: np.ndarray) -> np.ndarray:
    """``ctx.mesh + share * (points - ctx.mesh)`` for the largest share in [0, 1) (to :data:`UNFOLD_BISECTIONS`
    halvings) at which no triangle folds and none between the head and the border keeps less than
    :data:`MIN_BORDER_AREA` of its area (squeezed to a sliver, it would show as a tear); share 0 is the photo's own
    mesh."""
    source = signed_areas(ctx.mesh, ctx.triangles)
    border = (ctx.triangles >= FACE_VERTICES + len(ctx.carriers)).any(axis=1) & (source > MIN_AREA)
    low, high = 0.0, 1.0
    for _ in range(UNFOLD_BISECTIONS):
        middle = 0.5 * (low + high)
        trial = ctx.mesh + middle * (points - ctx.mesh)
        squeezed = signed_areas(trial, ctx.triangles)[border] < MIN_BORDER_AREA * source[border]
        if folded_triangles(ctx, trial[None])[0].any() or squeezed.any():
            high = middle
        else:
            low = middle
    return ctx.mesh + low * (points - ctx.mesh)


def _outline_clearance(points: np.ndarray) -> np.ndarray:
    """``(..., 2, 4)``: how far (eye distances, along the eyes' axis) each FAR_SIDE outline point of faces
    ``(..., 68, 2)`` lies outside its side's eye corner and brow end (negative: inside)."""
    across = points[..., 45, :] - points[..., 36, :]
    iod = np.maximum(np.linalg.norm(across, axis=-1), 1e-9)[..., None]  # (..., 1)
    across = across / iod
    sides = []
    for (outline, limits), sign in zip(FAR_SIDE, (1.0, -1.0), strict=True):
        along = sign * (points[..., list(outline) + list(limits), :] @ across[..., :, None])[..., 0]  # (..., 6)
        count = len(outline)
        sides.append((along[..., :count] - along[..., count:].max(axis=-1, keepdims=True)) / iod)
    return np.stack(sides, axis=-2)


def _outline_outside_eyes(landmarks: np.ndarray, clearance: np.ndarray) -> np.ndarray:
    """``landmarks`` ``(T, 68, 2)`` with each FAR_SIDE outline point pushed out along the eyes' axis where it comes
    closer to its eye than ``clearance`` ``(2, 4)`` allows (the far side of a turn); others untouched."""
    short = clearance[None] - _outline_clearance(landmarks)  # (T, 2, 4), eye distances
    if not (short > 1e-9).any():
        return landmarks
    landmarks = landmarks.copy()
    across = landmarks[:, 45] - landmarks[:, 36]  # (T, 2), one eye distance long
    for side, ((outline, _), sign) in enumerate(zip(FAR_SIDE, (1.0, -1.0), strict=True)):
        push = np.maximum(short[:, side], 0.0)  # (T, 4)
        landmarks[:, list(outline)] += sign * push[..., None] * across[:, None]
    return landmarks


def _lips_meet(landmarks: np.ndarray) -> np.ndarray:
    """``landmarks`` ``(T, 68, 2)`` with each inner-lip pair whose lower point lies above its upper one (lips asked to
    cross, if only by a rounding error of a closed mouth) or less than :data:`LIP_MEET` below it put together at
    their middle: lips that meet, not a fold for :func:`unfold` to pry open nor a sliver that stretches the inside of
    the mouth over a line of pixels."""
    return _set_gaps(landmarks, INNER_LIP_PAIRS, LIP_MEET * inter_ocular(landmarks), np.zeros(len(landmarks)))


def track_destinations(ctx: WarpContext, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Canvas positions ``(T, N, 2)`` of all mesh vertices for target landmark frames ``(T, 68, 2)`` as the track
    asks (the far side's outline kept outside the eye: :func:`_outline_outside_eyes`), and where the head's own
    motion alone (the similarity of the stable points) would put them."""
    landmarks = _lips_meet(_outline_outside_eyes(apply_transform(ctx.to_canvas, frames), ctx.clearance))
    midpoints = np.einsum("dn,tnj->tdj", MIDPOINT_WEIGHTS, landmarks)
    stable = list(STABLE)
    motion = _similarities(ctx.mesh[stable], landmarks[:, stable])
    linear = motion[:, :, :2]
    start = FACE_VERTICES + len(ctx.carriers)
    offsets = ctx.mesh[FACE_VERTICES:start] - ctx.mesh[ctx.carriers]
    creases = landmarks[:, ctx.carriers] + np.einsum("tij,nj->tni", linear, offsets)
    rigid = np.einsum("tij,nj->tni", linear, ctx.mesh) + motion[:, None, :, 2]
    outline_motion = landmarks[:, list(JAW)] - rigid[:, list(JAW)]
    down = _down_vectors(landmarks)
    across = np.stack([down[:, 1], -down[:, 0]], axis=-1)  # (T, 2): the eyes' axis, unit length
    outline_motion = np.einsum("tn,tj->tnj", np.einsum("tnj,tj->tn", outline_motion, across), across)
    head = rigid[:, start : start + ctx.num_head] + np.einsum("hj,tjk->thk", ctx.head_follow, outline_motion)
    head = np.clip(head, 1.0, np.array(ctx.canvas_size) - 2.0)  # ears and hair beside the cheeks; inside the border
    anchors = ctx.mesh[start + ctx.num_head :]
    dst = np.concatenate(
        [landmarks, midpoints, creases, head, np.broadcast_to(anchors, (len(frames),) + anchors.shape)], axis=1
    )
    rigid[:, start + ctx.num_head :] = anchors
    return dst, rigid


def source_map(
    ctx: WarpContext, dst: np.ndarray, table: np.ndarray, box: tuple[int, int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Canvas source coordinates ``(map_x, map_y)`` of the canvas pixels in ``box`` (x0, y0, x1, y1).

    ``dst`` are the mesh vertices of one frame, ``table`` its :func:`_affine_tables` rows. Each pixel
    takes the affine of the destination triangle it lies in; where triangles overlap (a fold), an
    unfolded one wins; the last row of ``table`` is for pixels no triangle covers.
    """
    x0, y0, x1, y1 = box
    ids = np.full((y1 - y0, x1 - x0), len(ctx.triangles), np.uint16)
    corners = np.round((dst[ctx.triangles] - (x0, y0)) * 16).astype(np.int32)
    e1, e2 = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    for k in np.argsort(area > 0, kind="stable"):  # folded and flat triangles first: valid ones paint over them
        cv2.fillConvexPoly(ids, corners[k], int(k), cv2.LINE_8, 4)
    gx, gy = ctx.grid_x[y0:y1, x0:x1], ctx.grid_y[y0:y1, x0:x1]
    ax, bx, cx, ay, by, cy = (np.take(table[:, i], ids) for i in range(6))
    return ax * gx + bx * gy + cx, ay * gx + by * gy + cy


class WarpRenderer:
    """Render a photo's face following landmark frames, by piecewise-affine warping (CPU, no model).

    ``size`` is the side of the output in crop mode; ``full`` pastes the warped face region back into
    the whole photo instead; ``mouth_fill`` paints teeth and a dark cavity into mouths opened wider than
    the photo's, and closed lips where the lips meet over a photo's open mouth.
    """

    def __init__(self, size: int = 256, full: bool = False, mouth_fill: bool = True) -> None:
        if int(size) < 32:
            raise ValueError(f"The output size must be at least 32 pixels; got {size}.")
        self.size = int(size)
        self.full = bool(full)
        self.mouth_fill = bool(mouth_fill)

    def prepare(self, image: np.ndarray, reference: np.ndarray) -> WarpContext:
        """image: (H,W,3) uint8 RGB photo; reference: (68,2) landmarks of the face in that photo (pixels)."""
        photo = load_image(image)
        ref = np.asarray(reference, dtype=np.float64)
        if ref.shape != (NUM_POINTS, 2) or not np.isfinite(ref).all():
            raise InputError(f"The reference landmarks must be {NUM_POINTS} finite (x, y) points; got {ref.shape}.")
        if inter_ocular(ref) < 1.0:
            raise InputError("The reference landmarks are degenerate (the eye corners coincide).")
        height, width = photo.shape[:2]
        face = float(max(np.ptp(ref[:, 0]), np.ptp(ref[:, 1])))
        centre = ref[30] - (0.0, CENTRE_RAISE * face)
        if self.full:
            side = REGION_SCALE * face
        else:
            side = max(min(CROP_SCALE * face, min(width, height)), MIN_CROP_SCALE * face)
        side = max(int(round(side)), 8)
        x0, y0 = (_slide(int(round(c - side / 2)), side, extent)
                  for c, extent in zip(centre, (width, height), strict=True))
        if self.full:
            box = (max(x0, 0), max(y0, 0), min(x0 + side, width), min(y0 + side, height))
            downscale = -(-max(box[2] - box[0], box[3] - box[1]) // MAX_WORK_SIDE)
            scale = 1.0 / downscale
            source = _shrunk_region(photo, box, downscale)
            canvas = (source.shape[1], source.shape[0])
        else:
            box = (x0, y0, x0 + side, y0 + side)
            downscale, scale = 1, self.size / side
            canvas = (self.size, self.size)
            source = resized_crop(photo, box, self.size)
        to_canvas = np.array([[scale, 0.0, (0.5 - box[0]) * scale - 0.5], [0.0, scale, (0.5 - box[1]) * scale - 0.5]])
        ref_canvas = apply_transform(to_canvas, ref)
        eyes, brows = np.ravel(UPPER_EYELIDS), np.ravel(BROWS_ABOVE)
        creases = ref_canvas[eyes] + CREASE_FRACTION * (ref_canvas[brows] - ref_canvas[eyes])
        face_vertices = np.concatenate([ref_canvas, MIDPOINT_WEIGHTS @ ref_canvas, creases])
        head = _head_points(ref_canvas, face_vertices, canvas)
        mesh = np.concatenate([face_vertices, head, _anchors(canvas)])
        style = mouth_style(photo, ref)
        lid_colours, lash_colours = _lid_colours(photo, ref)
        layout = _open_layout(mesh)
        triangles = _triangulate(layout)
        grid_x, grid_y = np.meshgrid(np.arange(canvas[0], dtype=np.float32), np.arange(canvas[1], dtype=np.float32))
        ctx = WarpContext(
            full=self.full,
            photo=photo,
            source=source,
            box=box,
            to_canvas=to_canvas,
            canvas_size=canvas,
            downscale=downscale,
            triangles=triangles,
            lid_triangles=_layered_triangles(triangles, layout),
            adjacency=_adjacency(triangles, len(mesh)),
            mesh=mesh,
            carriers=brows,
            num_head=len(head),
            head_follow=_outline_follow(head, ref_canvas),
            grid_x=grid_x,
            grid_y=grid_y,
            style=style,
            photo_opening=float(inner_opening(ref)),
            photo_mouth=PhotoMouth.of(photo, ref) if self.full else PhotoMouth.of(source, ref_canvas),
            eye_openings=_eye_openings(ref),
            lid_colours=lid_colours,
            lash_colours=lash_colours,
            clearance=np.minimum(_outline_clearance(ref), OUTLINE_CLEARANCE),
        )
        for value in vars(ctx).values():
            if isinstance(value, np.ndarray):
                value.setflags(write=False)
        return ctx

    def crop_landmarks(self, ctx: WarpContext, points: np.ndarray) -> np.ndarray:
        """Photo pixels -> output-frame pixels, ``(..., 68, 2)`` (full mode: unchanged)."""
        points = np.asarray(points, dtype=np.float64)
        return points.copy() if ctx.full else apply_transform(ctx.to_canvas, points)

    def render(self, ctx: WarpContext, frames: np.ndarray) -> np.ndarray:
        """frames: (T,68,2) target landmarks in the PHOTO's pixel space -> (T,S,S,3) uint8 (crop mode)
        or (T,H,W,3) uint8 (full mode: the face region warped and pasted back into the whole photo)."""
        frames = np.asarray(frames, dtype=np.float64)
        if frames.ndim != 3 or frames.shape[1:] != (NUM_POINTS, 2) or not np.isfinite(frames).all():
            raise InputError(f"Landmark frames must be finite, shaped (T, {NUM_POINTS}, 2); got {frames.shape}.")
        dst = destinations(ctx, frames)
        openings = inner_opening(frames)
        closing = seam_amount(openings, ctx.photo_opening) if self.mouth_fill else np.zeros(len(frames))
        closure = 1.0 - _eye_openings(frames) / np.maximum(ctx.eye_openings, 1e-6)
        open_eyes = ctx.eye_openings > MIN_EYE_OPENING  # a photo's closed eye has no lid to lower or paint
        sources = np.concatenate([lip_sources(ctx, closing), lid_sources(ctx, np.clip(closure, 0.0, 1.0) * open_eyes)],
                                 axis=1)
        lid_line = dst[:, list(UPPER_LID_VERTICES)]
        tables = _affine_tables(np.concatenate([dst, lid_line], axis=1), sources, ctx.lid_triangles)
        face = dst[:, : FACE_VERTICES + len(ctx.carriers)]  # landmarks, midpoints, creases; output pixels below
        if ctx.full:
            face = apply_transform(invert_transform(ctx.to_canvas), face)
            out = np.empty((len(frames),) + ctx.photo.shape, np.uint8)
        else:
            out = np.empty((len(frames), ctx.canvas_size[1], ctx.canvas_size[0], 3), np.uint8)
        mouth = fill_amount(openings, ctx.photo_opening) if self.mouth_fill else np.zeros(len(frames))
        lids = smoothstep(*LID_PAINT_CLOSURE, closure) * open_eyes
        iods = inter_ocular(face[:, :NUM_POINTS])
        for t in range(len(frames)):
            if ctx.full:
                out[t] = ctx.photo
                _paste_warp(ctx, dst[t], tables[t], out[t])
            else:
                map_x, map_y = source_map(ctx, dst[t], tables[t], (0, 0) + ctx.canvas_size)
                out[t] = cv2.remap(ctx.source, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            if ctx.photo_mouth is not None and self.mouth_fill:
                paint_photo_mouth(out[t], face[t, :NUM_POINTS], ctx.photo_mouth, float(iods[t]), ctx.style)
            else:
                paint_mouth(out[t], face[t, list(INNER_LIP)], float(mouth[t]), float(iods[t]), ctx.style)
            for eye, outline in enumerate(UPPER_EYELIDS):
                creases = face[t, FACE_VERTICES + 4 * eye : FACE_VERTICES + 4 * eye + 4]
                _paint_eyelid(
                    out[t], creases, face[t, list(outline)], float(lids[t, eye]), float(iods[t]),
                    ctx.lid_colours[eye], ctx.lash_colours[eye],
                )
        return out


def _paste_warp(ctx: WarpContext, dst: np.ndarray, table: np.ndarray, frame: np.ndarray) -> None:
    """Full mode: warp the part of the region that moves and write it into ``frame`` (a photo copy).

    On a shrunk canvas, the warped patch is enlarged only where pixels really move and blended in with
    a soft mask, so whatever stays put keeps the photo's own sharp pixels.
    """
    moved = np.abs(dst[ctx.triangles] - ctx.mesh[ctx.triangles]).max(axis=(1, 2)) > 1e-3
    if not moved.any():
        return
    corners = dst[ctx.triangles[moved]].reshape(-1, 2)
    pad = 2 if ctx.downscale == 1 else 6
    x0, y0 = np.clip(np.floor(corners.min(axis=0)).astype(int) - pad, 0, None)
    x1, y1 = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + pad + 1, ctx.canvas_size)
    if x1 <= x0 or y1 <= y0:
        return
    map_x, map_y = source_map(ctx, dst, table, (x0, y0, x1, y1))
    patch = cv2.remap(ctx.source, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    k, (bx, by) = ctx.downscale, ctx.box[:2]
    if k == 1:
        frame[by + y0 : by + y1, bx + x0 : bx + x1] = patch
        return
    shift = np.abs(map_x - ctx.grid_x[y0:y1, x0:x1]) + np.abs(map_y - ctx.grid_y[y0:y1, x0:x1])
    changed = cv2.dilate((shift > CHANGE_THRESHOLD / k).astype(np.float32), np.ones((3, 3), np.uint8))
    alpha = np.minimum(cv2.GaussianBlur(changed, (0, 0), 1.0) * 2.0, 1.0)
    rows, cols = np.nonzero(alpha.any(axis=1))[0], np.nonzero(alpha.any(axis=0))[0]
    if len(rows) == 0:
        return
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    # Whole-factor upsampling keeps canvas pixel i on photo pixels k*i .. k*i + k - 1 exactly.
    up = cv2.resize(patch[r0:r1, c0:c1], None, fx=k, fy=k, interpolation=cv2.INTER_LINEAR)
    alpha = alpha[r0:r1, c0:c1]
    top, left = by + k * (y0 + r0), bx + k * (x0 + c0)
    roi = frame[top : min(top + up.shape[0], ctx.box[3]), left : min(left + up.shape[1], ctx.box[2])]
    up = up[: roi.shape[0], : roi.shape[1]]
    core = cv2.resize((alpha >= 1.0).astype(np.uint8), None, fx=k, fy=k, interpolation=cv2.INTER_NEAREST)
    cv2.copyTo(up, core[: roi.shape[0], : roi.shape[1]], roi)
    # the soft edge, blended block by block (each canvas pixel covers k x k photo pixels)
    ey, ex = np.nonzero((alpha > 0.0) & (alpha < 1.0))
    dy, dx = np.divmod(np.arange(k * k), k)
    ny, nx = (ey[:, None] * k + dy).ravel(), (ex[:, None] * k + dx).ravel()
    weight = np.repeat(alpha[ey, ex], k * k)[:, None]
    keep = (ny < roi.shape[0]) & (nx < roi.shape[1])
    ny, nx, weight = ny[keep], nx[keep], weight[keep]
    roi[ny, nx] = (roi[ny, nx] * (1.0 - weight) + up[ny, nx] * weight + 0.5).astype(np.uint8)


def _shrunk_region(photo: np.ndarray, box: tuple[int, int, int, int], factor: int) -> np.ndarray:
    """The ``box`` of the photo shrunk by a whole ``factor`` (pixel blocks averaged; edges replicated to fill)."""
    x0, y0, x1, y1 = box
    region = photo[y0:y1, x0:x1]
    if factor == 1:
        return region
    h, w = region.shape[:2]
    padded = cv2.copyMakeBorder(region, 0, -h % factor, 0, -w % factor, cv2.BORDER_REPLICATE)
    return cv2.resize(padded, (padded.shape[1] // factor, padded.shape[0] // factor), interpolation=cv2.INTER_AREA)


def _slide(start: int, side: int, extent: int) -> int:
    """Move a span of ``side`` starting at ``start`` inside ``[0, extent)``, or over all of it if longer."""
    low, high = sorted((0, extent - side))
    return min(max(start, low), high)


def resized_crop(photo: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """The square ``box`` of the photo (edges replicated where it leaves the photo), resized to ``size``."""
    x0, y0, x1, y1 = box
    height, width = photo.shape[:2]
    inner = photo[max(y0, 0) : min(y1, height), max(x0, 0) : min(x1, width)]
    pads = (max(-y0, 0), max(y1 - height, 0), max(-x0, 0), max(x1 - width, 0))
    crop = cv2.copyMakeBorder(inner, *pads, cv2.BORDER_REPLICATE) if any(pads) else inner
    interpolation = cv2.INTER_AREA if x1 - x0 > size else cv2.INTER_CUBIC
    return cv2.resize(crop, (size, size), interpolation=interpolation)
