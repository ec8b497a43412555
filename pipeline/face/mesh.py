"""The dense 3D face mesh (MediaPipe Face Mesh, 468 points with depth) and its fixed map to the iBUG 68 points.

The mesh network sees a 192 x 192 crop of the face, rotated so the eyes are level and 1.5 times the face's size,
and returns 468 points in crop pixels with a depth ``z`` in the same units (``z`` grows away from the camera) and
a face-presence score. :class:`FaceMesh` makes the crop from a detector box or from the previous frame's mesh
(tracking, as MediaPipe does in videos) and maps the points back into the photo.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..models.conv_graph import ConvGraph

NUM_MESH_POINTS = 468
#: Mesh vertex of each iBUG 68 point, in iBUG order (jaw, brows, nose, eyes, outer lip, inner lip). Point 0 is on
#: the image's left (the subject's right) in an unmirrored photo, as in iBUG. The inner lip is the mesh's inner lip
#: ring (78 / 308 at the corners, 13 / 14 at the centre), so the mouth opening is the gap between the lips.
IBUG68_FROM_MESH = (
    127, 234, 132, 58, 172, 136, 150, 176, 152, 400, 379, 365, 397, 288, 361, 454, 356,  # jaw 0-16 (face oval)
    70, 63, 105, 66, 107,  # right brow 17-21 (upper edge)
    336, 296, 334, 293, 300,  # left brow 22-26
    168, 197, 5, 4,  # nose bridge 27-30
    75, 97, 2, 326, 305,  # nose base 31-35
    33, 160, 158, 133, 153, 144,  # right eye 36-41
    362, 385, 387, 263, 373, 380,  # left eye 42-47
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,  # outer lip 48-59
    78, 82, 13, 312, 308, 317, 14, 87,  # inner lip 60-67
)
assert len(IBUG68_FROM_MESH) == 68
#: Mesh vertices of the outer eye corners (subject's right, left): they level the crop.
EYE_CORNERS = (33, 263)
#: The crop is this many times the face's size (MediaPipe's value).
CROP_SCALE = 1.5
#: Below this presence score the mesh has lost the face (tracking then falls back to the detector).
MIN_PRESENCE = 0.5
#: :meth:`FaceMesh.refine` re-crops until the points move less than this share of the crop's side between passes.
SETTLED = 0.01


@dataclass
class MeshResult:
    """468 points ``(468, 3)`` in photo pixels (x, y; z in the same units, away from the camera) and the score."""

    points: np.ndarray
    presence: float


@dataclass
class Roi:
    """A rotated square around a face: centre (pixels), side (pixels) and rotation (radians, counter-clockwise)."""

    centre: np.ndarray
    side: float
    angle: float

    @staticmethod
    def around(points: np.ndarray, right_eye: np.ndarray, left_eye: np.ndarray, scale: float = CROP_SCALE) -> Roi:
        """The square that holds ``points`` (x, y) with the eye line level, enlarged by ``scale``."""
        dx, dy = left_eye - right_eye
        angle = float(np.arctan2(-dy, dx))  # the eye line's angle in a y-up frame
        cos, sin = np.cos(angle), np.sin(angle)
        rot = np.array([[cos, -sin], [sin, cos]])  # turns the image so the eye line is level
        centre0 = points.mean(axis=0)
        local = (points - centre0) @ rot.T
        lo, hi = local.min(axis=0), local.max(axis=0)
        centre = centre0 + ((lo + hi) / 2) @ rot  # the box centre back in the image
        return Roi(centre=centre, side=float(max(hi - lo)) * scale, angle=angle)

    def crop_matrix(self, size: int) -> np.ndarray:
        """The 2x3 affine taking photo pixels into the ``size`` x ``size`` crop."""
        cos, sin = np.cos(self.angle), np.sin(self.angle)
        k = size / self.side
        rot = k * np.array([[cos, -sin], [sin, cos]])
        return np.hstack([rot, (size / 2 - rot @ self.centre)[:, None]])


class FaceMesh:
    """Runs the mesh model on crops of a photo."""

    def __init__(self, model: ConvGraph) -> None:
        self.model = model.eval()
        self.size = int(model.config.input_size)

    @torch.no_grad()
    def __call__(self, rgb: np.ndarray, roi: Roi) -> MeshResult:
        """The mesh of the face in ``roi`` of ``rgb`` ``(H, W, 3)`` uint8."""
        import cv2

        matrix = roi.crop_matrix(self.size)
        crop = cv2.warpAffine(rgb, matrix, (self.size, self.size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT)
        low, high = self.model.config.input_range
        batch = torch.from_numpy(crop).permute(2, 0, 1)[None].float() * ((high - low) / 255.0) + low
        raw, presence = self.model(batch)  # (1, 1404, 1, 1), (1, 1, 1, 1)
        local = raw.reshape(NUM_MESH_POINTS, 3).numpy().astype(np.float64)
        inverse = cv2.invertAffineTransform(matrix)
        points = np.empty_like(local)
        points[:, :2] = local[:, :2] @ inverse[:, :2].T + inverse[:, 2]
        points[:, 2] = local[:, 2] * (roi.side / self.size)
        score = float(1.0 / (1.0 + np.exp(-float(presence.reshape(-1)[0]))))
        return MeshResult(points=points, presence=score)

    def refine(self, rgb: np.ndarray, roi: Roi, passes: int = 2, max_passes: int = 6) -> MeshResult:
        """Run the mesh, then again on the crop its own points give (a tighter, level crop): at least ``passes``
        times, and on (up to ``max_passes``) until the points settle (:data:`SETTLED`): a poor first crop, e.g.
        from a tilted detector box, converges in a few more."""
        result = self(rgb, roi)
        for done in range(2, max_passes + 1):
            roi = roi_from_mesh(result.points)
            previous, result = result, self(rgb, roi)
            moved = float(np.linalg.norm(result.points[:, :2] - previous.points[:, :2], axis=1).mean())
            if done >= passes and moved < SETTLED * roi.side:
                break
        return result


def roi_from_mesh(points: np.ndarray) -> Roi:
    """The next crop from a mesh (tracking): its bounding square, levelled on the outer eye corners."""
    return Roi.around(points[:, :2], points[EYE_CORNERS[0], :2], points[EYE_CORNERS[1], :2])


def ibug68(mesh: np.ndarray) -> np.ndarray:
    """The 68 iBUG points ``(68, 3)`` of a mesh ``(468, 3)``."""
    return mesh[list(IBUG68_FROM_MESH)]
