"""Face detection, the 3D face mesh and the 68 landmarks.

The default backend, ``"mesh"``, is MediaPipe's face detector and 468-point 3D face mesh (Apache-2.0), converted
to PyTorch (:mod:`pipeline.models.conv_graph`) and shipped in ``pipeline/assets``: it runs offline, on any device,
with nothing to download. Its 68 points follow the iBUG layout through a fixed map (:mod:`pipeline.face.mesh`)
and carry depth. Videos are tracked: each frame's crop comes from the previous frame's mesh, and the detector
runs again only when the face is lost.

The optional backends ``"dlib"`` and ``"fan"`` (:mod:`pipeline.face.dlib_backend`; research-use models) give 2D
points whose depth is estimated from the mean face.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import NoFaceError
from ..images import ImageInput, load_image
from .dlib_backend import FAN_WEIGHTS_FILE, fan_weights_available
from .mesh import MIN_PRESENCE, FaceMesh, Roi, ibug68, roi_from_mesh

logger = logging.getLogger(__name__)

Backend = Literal["mesh", "dlib", "fan"]
BACKENDS = ("mesh", "dlib", "fan")

#: Faces narrower than this (in pixels of the original photo) are refused.
MIN_FACE_SIZE = 48
#: Photos are shrunk to at most this side length for analysis (landmarks are mapped back).
DETECT_MAX_SIDE = 1024
#: The converted MediaPipe models (see pipeline/assets/README.md).
ASSETS = Path(__file__).resolve().parents[1] / "assets"

__all__ = ["BACKENDS", "FAN_WEIGHTS_FILE", "FaceAnalyzer", "FaceDetection", "FaceTracker", "fan_weights_available"]


@dataclass
class FaceDetection:
    """One face found in an image."""

    landmarks: np.ndarray  # (68, 2) float32, pixel coordinates (x, y)
    box: tuple[int, int, int, int]  # left, top, right, bottom in pixels
    score: float
    num_faces: int  # how many faces the detector saw in the image
    message: str = ""  # set when the choice needs saying (several faces)
    points3d: np.ndarray | None = None  # (68, 3) float32: x, y in pixels, z in pixels away from the camera
    mesh: np.ndarray | None = None  # (468, 3) float32, the dense mesh (mesh backend only)


class FaceAnalyzer:
    """Finds the main face of an image and its 68 landmarks (with depth).

    One instance is cheap to share between threads: the models are read once and used read-only.
    """

    def __init__(self, backend: Backend = "mesh", fan_weights_dir: str | Path | None = None,
                 allow_download: bool = False, device: str = "cpu") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"Unknown landmark backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
        self.backend = backend
        if backend == "mesh":
            from ..models.conv_graph import ConvGraph
            from .detector import FaceBoxDetector

            graphs = {name: ConvGraph.from_pretrained(ASSETS / name, use_safetensors=True).to(device)
                      for name in ("face_detector", "face_mesh")}
            self._detector = FaceBoxDetector(graphs["face_detector"])
            self._mesh = FaceMesh(graphs["face_mesh"])
        else:
            from .dlib_backend import DlibLandmarks

            self._dlib = DlibLandmarks(backend, fan_weights_dir, allow_download, device)

    def detect(self, image: ImageInput | np.ndarray) -> FaceDetection:
        """Detect the largest face and its landmarks; raise :class:`NoFaceError` if none is usable."""
        rgb = load_image(image)
        scale = min(1.0, DETECT_MAX_SIDE / max(rgb.shape[:2]))
        small = rgb if scale == 1.0 else _resize(rgb, scale)
        if self.backend == "mesh":
            detection = self._detect_mesh(small)
        else:
            detection = self._detect_dlib(small)
        detection = _rescaled(detection, 1.0 / scale)
        face_w = detection.box[2] - detection.box[0]
        if face_w < MIN_FACE_SIZE:
            raise NoFaceError(
                f"The face is too small ({face_w} px wide); use a photo where the face is at least "
                f"{MIN_FACE_SIZE} px wide."
            )
        if detection.num_faces > 1:
            box = detection.box
            detection.message = (f"Found {detection.num_faces} faces; using the largest one, at x={box[0]}..{box[2]}, "
                                 f"y={box[1]}..{box[3]}.")
            logger.info(detection.message)
        return detection

    def try_detect(self, image: np.ndarray) -> FaceDetection | None:
        """Like :meth:`detect` for video frames: ``None`` instead of an error when no face is usable."""
        try:
            return self.detect(image)
        except NoFaceError:
            return None

    def tracker(self) -> FaceTracker:
        """A tracker for the frames of one video (not shared between videos or threads)."""
        return FaceTracker(self)

    # --- backends --------------------------------------------------------------------------------
    def _detect_mesh(self, rgb: np.ndarray) -> FaceDetection:
        faces = self._detector.detect(rgb)
        if not faces:
            raise NoFaceError(
                "No face was found in the photo. Use a photo with one clearly visible, roughly frontal face."
            )
        chosen = max(faces, key=lambda f: (f.width, f.score))
        eyes = chosen.keypoints[:2]
        x0, y0, x1, y1 = chosen.box
        corners = np.array([[x0, y0], [x1, y1], [x0, y1], [x1, y0]])
        result = self._mesh.refine(rgb, Roi.around(corners, eyes[0], eyes[1]))
        if result.presence < MIN_PRESENCE:
            raise NoFaceError("A face was detected but its landmarks could not be placed; use a clearer photo.")
        return _from_mesh(result.points, result.presence, len(faces))

    def _detect_dlib(self, rgb: np.ndarray) -> FaceDetection:
        from ..canonical import lift_to_3d

        box, score, landmarks, num_faces = self._dlib.faces(rgb)
        return FaceDetection(landmarks=landmarks.astype(np.float32), box=tuple(int(round(v)) for v in box),
                             score=score, num_faces=num_faces, points3d=lift_to_3d(landmarks).astype(np.float32))


class FaceTracker:
    """Follows one face through the frames of a video: each frame's crop comes from the previous frame's mesh.

    With the optional 2D backends every frame is detected afresh.
    """

    def __init__(self, analyzer: FaceAnalyzer) -> None:
        self.analyzer = analyzer
        self._previous: np.ndarray | None = None  # last mesh, in pixels of the analysed frame

    def update(self, frame: np.ndarray) -> FaceDetection | None:
        """The face in the next frame, or ``None`` when none is usable."""
        analyzer = self.analyzer
        if analyzer.backend != "mesh" or self._previous is None:
            detection = analyzer.try_detect(frame)
            self._previous = None if detection is None else detection.mesh
            return detection
        scale = min(1.0, DETECT_MAX_SIDE / max(frame.shape[:2]))
        small = frame if scale == 1.0 else _resize(frame, scale)
        result = analyzer._mesh(small, roi_from_mesh(self._previous * scale))
        if result.presence < MIN_PRESENCE:
            self._previous = None
            return self.update(frame)
        detection = _rescaled(_from_mesh(result.points, result.presence, 1), 1.0 / scale)
        self._previous = detection.mesh
        return detection


def _from_mesh(mesh: np.ndarray, score: float, num_faces: int) -> FaceDetection:
    points = ibug68(mesh)
    lo, hi = points[:, :2].min(axis=0), points[:, :2].max(axis=0)
    return FaceDetection(landmarks=points[:, :2].astype(np.float32),
                         box=(int(np.floor(lo[0])), int(np.floor(lo[1])), int(np.ceil(hi[0])), int(np.ceil(hi[1]))),
                         score=score, num_faces=num_faces, points3d=points.astype(np.float32),
                         mesh=mesh.astype(np.float32))


def _rescaled(detection: FaceDetection, factor: float) -> FaceDetection:
    """The detection with every coordinate (depth too) multiplied by ``factor``."""
    if factor == 1.0:
        return detection
    scaled = lambda a: None if a is None else (a * factor).astype(np.float32)  # noqa: E731
    box = tuple(int(round(v * factor)) for v in detection.box)
    return FaceDetection(landmarks=scaled(detection.landmarks), box=box,
                         score=detection.score, num_faces=detection.num_faces, message=detection.message,
                         points3d=scaled(detection.points3d), mesh=scaled(detection.mesh))


def _resize(rgb: np.ndarray, scale: float) -> np.ndarray:
    import cv2

    h, w = rgb.shape[:2]
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
