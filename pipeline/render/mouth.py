"""Synthesis of what a warp cannot show at the mouth: the inside of an opened mouth (a dark cavity with upper and,
wide open, lower teeth), or the photo's own teeth moved with the lips.

A warp can only stretch the pixels the photo has. When a target frame opens the mouth wider than the
photo's own, the area inside the inner lip would be a smear of stretched lip pixels; :func:`paint_mouth`
paints a plausible inside over it instead, shaped by the target's inner-lip polygon (points 60-67) and
lit like the photo (:func:`mouth_style`). A photo that shows its own teeth keeps them instead
(:class:`PhotoMouth`): the inside of its mouth is cut along the line between the lips, the upper part (upper teeth)
moves rigidly with the upper lip and the lower part (lower teeth) with the lower lip and jaw, and the gap that opens
between them is the dark of a mouth. Lips that meet over a photo whose mouth is open are the warp's to draw
(:func:`pipeline.render.warp.lip_sources`: their edges come from inside the photo's lips, so neither the teeth nor
the dark inner lip edges show along the closed line); :func:`seam_amount` says how far they have closed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..canonical import inter_ocular, similarity_transform
from ..regions import INNER_LIP, INNER_LIP_PAIRS, OUTER_LIP, STABLE

#: Inner-lip opening (in inter-ocular units) beyond the photo's own at which the synthesis is fully on.
FULL_FILL_OPENING = 0.05
#: Visible height of the upper and lower teeth, in inter-ocular units.
UPPER_TEETH = 0.085
LOWER_TEETH = 0.045
#: Openings (inter-ocular units) over which the lower teeth and the tongue fade in.
LOWER_TEETH_OPENING = (0.14, 0.26)
TONGUE_OPENING = (0.1, 0.2)
#: Height of the tongue's dome, as a fraction of the opening.
TONGUE_HEIGHT = 0.42
#: Distances of the gaps between the upper front teeth from the mouth's middle, and their half-width
#: (inter-ocular units).
TOOTH_EDGES = np.array([0.0, 0.09, 0.165])
TOOTH_GAP = 0.005
#: Width of the soft edge of the painted mouth, in inter-ocular units.
FEATHER = 0.022
#: Lips closing over a photo's open mouth: fully closed at an opening of 0, not at all from SEAM_FADE (inter-ocular
#: units) up.
SEAM_FADE = 0.03
#: Reference look of teeth and the cavity (RGB) under a skin luminance of ``REFERENCE_SKIN``.
TEETH_RGB = np.array([232.0, 222.0, 205.0])
REFERENCE_SKIN = 175.0


@dataclass(frozen=True)
class MouthStyle:
    """Colours (float32 RGB, 0-255) of the synthesised mouth, matched to one photo's lighting."""

    teeth: np.ndarray
    tongue: np.ndarray
    cavity_front: np.ndarray
    cavity_back: np.ndarray


def polygon_pixels(image: np.ndarray, polygons: list[np.ndarray], exclude: np.ndarray | None = None) -> np.ndarray:
    """The pixels ``(n, 3)`` of ``image`` inside ``polygons`` and outside ``exclude``."""
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(p).astype(np.int32) for p in polygons], 1)
    if exclude is not None:
        cv2.fillPoly(mask, [np.round(exclude).astype(np.int32)], 0)
    return image[mask.astype(bool)].astype(np.float64)


def _median(pixels: np.ndarray) -> np.ndarray:
    return np.median(pixels, axis=0) if len(pixels) else np.full(3, 128.0)


def mouth_style(image: np.ndarray, landmarks: np.ndarray) -> MouthStyle:
    """Derive the mouth colours from the photo's skin (brightness, colour cast) and lip colour."""
    pts = np.asarray(landmarks, dtype=np.float64)
    cheeks = [pts[[1, 2, 3, 48, 31, 40]], pts[[15, 14, 13, 54, 35, 47]]]
    skin = _median(polygon_pixels(image, cheeks))
    lips = _median(polygon_pixels(image, [pts[list(OUTER_LIP)]], exclude=pts[list(INNER_LIP)]))
    luminance = float(skin @ [0.299, 0.587, 0.114])
    light = float(np.clip(luminance / REFERENCE_SKIN, 0.45, 1.1))
    cast = np.clip(skin / max(skin.mean(), 1.0), 0.7, 1.3) ** 0.15
    teeth = np.clip(TEETH_RGB * light * cast, 0, 255)
    lip_hue = lips / max(lips.max(), 1.0)
    front = np.clip(lip_hue * 95.0 * light, 0, 255) * np.array([1.0, 0.62, 0.62])
    back = front * 0.12
    tongue = np.clip(lip_hue * 150.0 * light, 0, 255) * np.array([1.0, 0.5, 0.5])
    return MouthStyle(*(c.astype(np.float32) for c in (teeth, tongue, front, back)))


def inner_opening(points: np.ndarray) -> np.ndarray:
    """Inner-lip opening of each face ``(..., 68, 2)`` in inter-ocular units (0 when the lips meet)."""
    points = np.asarray(points, dtype=np.float64)
    corners = points[..., 64, :] - points[..., 60, :]
    down = np.stack([-corners[..., 1], corners[..., 0]], axis=-1)
    down /= np.maximum(np.linalg.norm(down, axis=-1, keepdims=True), 1e-9)
    gaps = [((points[..., lo, :] - points[..., up, :]) * down).sum(-1) for up, lo in INNER_LIP_PAIRS]
    return np.maximum(np.mean(gaps, axis=0), 0.0) / np.maximum(inter_ocular(points), 1e-9)


def fill_amount(target_opening: np.ndarray, photo_opening: float) -> np.ndarray:
    """How much synthesised mouth to show (0..1) for target openings wider than the photo's own."""
    x = np.clip((np.asarray(target_opening) - photo_opening) / FULL_FILL_OPENING, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def smoothstep(edge0: float | np.ndarray, edge1: float | np.ndarray, x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 (at ``edge0``) to 1 (at ``edge1``); ``edge0 > edge1`` gives a falling step."""
    span = np.asarray(edge1 - edge0, dtype=np.float32)
    t = np.clip((x - edge0) / np.where(np.abs(span) < 1e-6, np.float32(1e-6), span), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def bounding_box(points: np.ndarray, pad: float, shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """Integer box (x0, y0, x1, y1) around ``points`` grown by ``pad``, clipped to an image; None if empty."""
    x0, y0 = np.maximum(np.floor(points.min(axis=0) - pad).astype(int), 0)
    x1 = min(int(np.ceil(points[:, 0].max() + pad)) + 1, shape[1])
    y1 = min(int(np.ceil(points[:, 1].max() + pad)) + 1, shape[0])
    return (int(x0), int(y0), x1, y1) if x1 > x0 and y1 > y0 else None


@dataclass
class Band:
    """Coordinates of the pixels of a box relative to a band between two chains of points.

    Both chains run from one corner of the band to the other (``top[0]`` to ``top[-1]``); ``u`` is the
    fraction of the way from the first bottom point to the last, ``from_top`` and ``from_bottom`` the
    distances (pixels, positive inside) from each chain across the band, ``height`` the band's height.
    """

    u: np.ndarray
    from_top: np.ndarray
    from_bottom: np.ndarray
    height: np.ndarray
    width: float

    @classmethod
    def of(cls, box: tuple[int, int, int, int], top: np.ndarray, bottom: np.ndarray) -> Band:
        """The band between the chains ``top`` and ``bottom`` (smoothed as curves) over the pixels of ``box``."""
        x0, y0, x1, y1 = box
        top, bottom = smooth_chain(top), smooth_chain(bottom)
        origin = bottom[0]
        span = bottom[-1] - origin
        width = max(float(np.hypot(*span)), 1e-6)
        ex = span / width
        ey = np.array([-ex[1], ex[0]])
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        rx, ry = xs - np.float32(origin[0]), ys - np.float32(origin[1])
        u = (rx * ex[0] + ry * ex[1]) / width
        w = rx * ey[0] + ry * ey[1]
        w_top, w_bottom = (_chain_height(u, chain - origin, ex, ey, width) for chain in (top, bottom))
        return cls(u, w - w_top, w_bottom - w, np.maximum(w_bottom - w_top, 1e-3), width)


def smooth_chain(points: np.ndarray, steps: int = 4) -> np.ndarray:
    """A Catmull-Rom curve through a chain of points, ``steps`` segments between each pair."""
    points = np.asarray(points, dtype=np.float64)
    padded = np.concatenate([2 * points[:1] - points[1:2], points, 2 * points[-1:] - points[-2:-1]])
    t = np.arange(steps)[:, None, None] / steps
    p0, p1, p2, p3 = padded[:-3], padded[1:-2], padded[2:-1], padded[3:]
    curve = 0.5 * (
        2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2 + (3 * p1 - p0 - 3 * p2 + p3) * t**3
    )
    return np.concatenate([curve.transpose(1, 0, 2).reshape(-1, 2), points[-1:]])


def _chain_height(u: np.ndarray, chain: np.ndarray, ex: np.ndarray, ey: np.ndarray, width: float) -> np.ndarray:
    """Distance across the band of a chain of points at band fractions ``u`` (piecewise linear)."""
    along = np.maximum.accumulate(chain @ ex / width)
    return np.interp(u, along, chain @ ey).astype(np.float32)


def blend(frame: np.ndarray, box: tuple[int, int, int, int], colour: np.ndarray, alpha: np.ndarray) -> None:
    """Mix ``colour`` (float RGB) over the ``box`` of ``frame`` (uint8, in place) with opacity ``alpha``."""
    x0, y0, x1, y1 = box
    region = frame[y0:y1, x0:x1]
    mixed = region + (colour - region) * alpha[..., None]
    region[...] = np.clip(mixed + 0.5, 0, 255).astype(np.uint8)


def paint_mouth(frame: np.ndarray, inner: np.ndarray, amount: float, iod: float, style: MouthStyle) -> None:
    """Paint the inside of the mouth bounded by ``inner`` (points 60-67, frame pixels) into ``frame``.

    ``amount`` (0..1) scales the opacity; ``iod`` is the face's inter-ocular distance in frame pixels,
    which sets the size of the teeth and of the soft edge. ``frame`` (uint8 RGB) is changed in place.
    """
    if amount <= 0.0:
        return
    inner = np.asarray(inner, dtype=np.float64)
    feather = max(0.7, FEATHER * iod)
    box = bounding_box(inner, 3.0 * feather + 1.0, frame.shape)
    if box is None:
        return
    upper, lower = inner[[0, 1, 2, 3, 4]], inner[[0, 7, 6, 5, 4]]
    outline = np.concatenate([smooth_chain(upper), smooth_chain(lower)[::-1]])
    mask = np.zeros((box[3] - box[1], box[2] - box[0]), np.uint8)
    cv2.fillPoly(mask, [np.round((outline - box[:2]) * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    alpha = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), feather * 0.6) * (amount / 255.0)
    band = Band.of(box, upper, lower)
    height, from_upper, from_lower = band.height, band.from_top, band.from_bottom
    uc = np.clip(band.u, 0.0, 1.0)
    across_centre = np.sin(np.pi * uc)
    soft = max(0.6, 0.25 * feather)

    depth = np.sqrt(np.clip(4.0 * from_upper * from_lower / height**2, 0.0, 1.0) * across_centre)
    colour = style.cavity_front + (style.cavity_back - style.cavity_front) * depth[..., None]

    # The tongue: a dome resting on the lower lip, darker towards the back.
    dome = TONGUE_HEIGHT * height * np.sqrt(np.clip(1.0 - ((uc - 0.5) / 0.36) ** 2, 0.0, 1.0))
    tongue = smoothstep(dome, dome - 2 * soft, from_lower) * smoothstep(*TONGUE_OPENING, height / iod)
    shade = 0.5 + 0.5 * smoothstep(dome, 0.2 * dome, from_lower)
    colour += (style.tongue * shade[..., None] - colour) * tongue[..., None]

    # Lower teeth show above the lower lip only when the mouth is wide open, and darker.
    lower_len = np.minimum(LOWER_TEETH * iod, 0.3 * height)
    teeth_lo = smoothstep(lower_len, lower_len - soft, from_lower) * smoothstep(0.26, 0.38, uc)
    teeth_lo *= smoothstep(0.74, 0.62, uc) * smoothstep(*LOWER_TEETH_OPENING, height / iod)
    shade = (0.3 + 0.35 * across_centre) * (0.75 + 0.25 * smoothstep(0.0, 0.5 * lower_len, from_lower))
    colour += (style.teeth * shade[..., None] - colour) * teeth_lo[..., None]

    # Upper teeth hang from the upper lip: the middle incisors longest, the corners in shadow, faint
    # gaps between the front teeth.
    teeth_len = np.minimum(UPPER_TEETH * iod * (0.7 + 0.3 * across_centre), 0.6 * height)
    teeth_up = smoothstep(teeth_len, teeth_len - soft, from_upper) * smoothstep(0.08, 0.24, uc)
    teeth_up *= smoothstep(0.92, 0.76, uc)
    shade = (0.4 + 0.6 * across_centre**0.6) * (0.72 + 0.28 * smoothstep(0.0, 0.4 * teeth_len, from_upper))
    shade *= 1.0 - 0.22 * smoothstep(0.3 * teeth_len, teeth_len, from_upper)
    offset = np.abs(band.u - 0.5) * band.width / iod
    gaps = np.exp(-(((offset[..., None] - TOOTH_EDGES) / max(TOOTH_GAP, 0.4 / iod)) ** 2)).max(axis=-1)
    shade *= 1.0 - 0.14 * gaps
    colour += (style.teeth * shade[..., None] - colour) * teeth_up[..., None]

    blend(frame, box, colour, alpha)


def seam_amount(target_opening: np.ndarray, photo_opening: float) -> np.ndarray:
    """How far the lips have closed over a photo whose mouth is open (0..1): 1 where they meet (target opening 0),
    0 from an opening of :data:`SEAM_FADE` up, and 0 everywhere over a photo whose lips already meet."""
    if photo_opening <= SEAM_FADE:
        return np.zeros(np.shape(target_opening))
    return smoothstep(SEAM_FADE, 0.0, np.asarray(target_opening, dtype=np.float32)).astype(np.float64)


#: Inner-lip chains as positions in INNER_LIP (points 60-67): the upper lip from corner to corner (60-64), the lower
#: lip from the same corners (60, 67, 66, 65, 64), and the middle of each lip (61-63, 65-67).
UPPER_CHAIN, LOWER_CHAIN = (0, 1, 2, 3, 4), (0, 7, 6, 5, 4)
UPPER_MIDDLE, LOWER_MIDDLE = (1, 2, 3), (5, 6, 7)


@dataclass(frozen=True)
class PhotoMouth:
    """The inside of a photo's open mouth in two rigid parts. ``image``: the part of the photo around the mouth that
    they are cut from (uint8 RGB); ``points``: the photo's 68 landmarks in that patch's pixels; ``upper`` / ``lower``:
    ``(h, w)`` float32 masks of the parts over the patch, split along the line halfway between the inner lips."""

    image: np.ndarray
    points: np.ndarray
    upper: np.ndarray
    lower: np.ndarray

    @classmethod
    def of(cls, image: np.ndarray, points: np.ndarray) -> PhotoMouth | None:
        """The photo's mouth, or None where its lips meet (within :data:`SEAM_FADE`: nothing inside to keep)."""
        points = np.asarray(points, dtype=np.float64)
        if float(inner_opening(points)) <= SEAM_FADE:
            return None
        soft = max(0.7, FEATHER * float(inter_ocular(points)))  # the soft edge's width, pixels
        reach = 3.0 * soft + 2.0  # pixels, past the blur's reach
        box = bounding_box(points[list(OUTER_LIP)], 2.0 * reach, image.shape)
        if box is None:
            return None
        image = np.ascontiguousarray(image[box[1] : box[3], box[0] : box[2]])
        points = points - box[:2]
        inner = points[list(INNER_LIP)]
        upper, lower = smooth_chain(inner[list(UPPER_CHAIN)]), smooth_chain(inner[list(LOWER_CHAIN)])
        middle = (upper + lower) / 2
        # Each part reaches past its lip by the width of the soft edge the target outline is drawn with, so that
        # edge shows the lip's own pixels moving with the lip, never the dark of the mouth.
        across = inner[4] - inner[0]
        width = max(float(np.hypot(*across)), 1e-6)
        along, down = across / width, np.array([-across[1], across[0]]) / width
        ends = np.array([[-reach, 0.0]] + [[0.0, 0.0]] * (len(middle) - 2) + [[reach, 0.0]])
        masks = []
        for lip, side in ((upper, -1.0), (lower, 1.0)):
            grown = lip + side * reach * down + ends[:, :1] * along
            polygon = np.concatenate([grown, middle[::-1] + ends[::-1, :1] * along])
            mask = np.zeros(image.shape[:2], np.uint8)
            cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1)
            masks.append(cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 0.6 * soft))  # a soft cut
        return cls(image, points, *masks)

    def transforms(self, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(2, 3)`` maps from the photo to a target face's pixels for the upper and the lower part: turned and
        scaled as the head is (the similarity of the stable points), moved with the middle of each lip."""
        target = np.asarray(target, dtype=np.float64)
        linear = similarity_transform(self.points[list(STABLE)], target[list(STABLE)])[:, :2]
        inner_src, inner_dst = self.points[list(INNER_LIP)], target[list(INNER_LIP)]
        maps = []
        for middle in (UPPER_MIDDLE, LOWER_MIDDLE):
            shift = inner_dst[list(middle)].mean(axis=0) - linear @ inner_src[list(middle)].mean(axis=0)
            maps.append(np.concatenate([linear, shift[:, None]], axis=1))
        return maps[0], maps[1]


def paint_photo_mouth(frame: np.ndarray, target: np.ndarray, mouth: PhotoMouth, iod: float,
                      style: MouthStyle) -> None:
    """Redraw the inside of the mouth of ``frame`` (uint8 RGB, in place) for the ``target`` landmarks (68, frame
    pixels) from the photo's own: the dark of the mouth, then the lower part, then the upper part over it (upper
    teeth in front), all within the target's inner-lip outline. On the photo's own landmarks it changes nothing."""
    inner = np.asarray(target, dtype=np.float64)[list(INNER_LIP)]
    feather = max(0.7, FEATHER * iod)
    box = bounding_box(inner, 3.0 * feather + 1.0, frame.shape)
    if box is None:
        return
    x0, y0, x1, y1 = box
    size = (x1 - x0, y1 - y0)
    upper, lower = inner[list(UPPER_CHAIN)], inner[list(LOWER_CHAIN)]
    outline = np.concatenate([smooth_chain(upper), smooth_chain(lower)[::-1]])
    mask = np.zeros((size[1], size[0]), np.uint8)
    cv2.fillPoly(mask, [np.round((outline - box[:2]) * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    inside = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), feather * 0.6) / 255.0
    region = frame[y0:y1, x0:x1].astype(np.float32)
    parts = []
    for transform, part in zip(mouth.transforms(target), (mouth.upper, mouth.lower), strict=True):
        shifted = transform - np.array([[0.0, 0.0, x0], [0.0, 0.0, y0]])
        pixels = cv2.warpAffine(mouth.image, shifted, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        parts.append((pixels.astype(np.float32), cv2.warpAffine(part, shifted, size, flags=cv2.INTER_LINEAR)))
    (upper_pixels, upper_alpha), (lower_pixels, lower_alpha) = parts
    band = Band.of(box, upper, lower)
    depth = np.sqrt(np.clip(4.0 * band.from_top * band.from_bottom / band.height**2, 0.0, 1.0)
                    * np.sin(np.pi * np.clip(band.u, 0.0, 1.0)))
    cavity = style.cavity_front + (style.cavity_back - style.cavity_front) * depth[..., None]
    gap = inside * np.clip(1.0 - upper_alpha - lower_alpha, 0.0, 1.0)  # the parts' soft cuts add up to 1
    region += (cavity - region) * gap[..., None]
    region += (lower_pixels - region) * (inside * lower_alpha)[..., None]
    region += (upper_pixels - region) * (inside * upper_alpha)[..., None]
    frame[y0:y1, x0:x1] = np.clip(region + 0.5, 0, 255).astype(np.uint8)
