"""Face detection and 68-point landmarks.

Two backends:

* ``"dlib"`` (default, offline): dlib's HOG face detector and the 68-point shape predictor shipped by
  the ``face_recognition_models`` package. The predictor was trained on iBUG 300-W, whose licence
  allows research use only.
* ``"fan"``: face-alignment's 2D FAN network for the landmarks (dlib still finds the face box). Its
  weights must already be in torch's hub cache (``~/.cache/torch/hub/checkpoints``) or in a folder
  given as ``fan_weights_dir``; nothing is downloaded unless ``allow_download=True``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import numpy as np

from .errors import NoFaceError
from .images import ImageInput, load_image

logger = logging.getLogger(__name__)

Backend = Literal["dlib", "fan"]

#: Faces narrower than this (in pixels of the original photo) are refused.
MIN_FACE_SIZE = 48
#: Photos are shrunk to at most this side length for detection (landmarks are mapped back).
DETECT_MAX_SIDE = 1024
#: Detector score above which a second face counts as a face (the best one is kept at any score >= 0).
OTHER_FACE_SCORE = 0.3
FAN_WEIGHTS_FILE = "2DFAN4-11f355bf06.pth.tar"


@dataclass
class FaceDetection:
    """One face found in an image."""

    landmarks: np.ndarray  # (68, 2) float32, pixel coordinates (x, y)
    box: tuple[int, int, int, int]  # left, top, right, bottom in pixels
    score: float
    num_faces: int  # how many faces the detector saw in the image
    message: str = ""  # set when the choice needs saying (several faces)


def _face_model_file(name: str) -> Path:
    """Locate a model file of ``face_recognition_models`` without importing it (its init needs pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "The package 'face_recognition_models' is not installed; run `pip install -r requirements.txt`."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise RuntimeError(f"Model file {path} is missing from face_recognition_models.")
    return path


def fan_weights_available(weights_dir: Optional[str | Path] = None) -> bool:
    """Whether face-alignment's FAN weights are present locally (no download)."""
    return (_fan_dir(weights_dir) / FAN_WEIGHTS_FILE).is_file()


def _fan_dir(weights_dir: Optional[str | Path]) -> Path:
    if weights_dir is not None:
        return Path(weights_dir)
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


class FaceAnalyzer:
    """Finds the main face of an image and its 68 landmarks.

    One instance is cheap to share: the dlib models are read once and are thread-safe for reads.
    """

    def __init__(
        self,
        backend: Backend = "dlib",
        fan_weights_dir: Optional[str | Path] = None,
        allow_download: bool = False,
        device: str = "cpu",
    ) -> None:
        import dlib

        if backend not in ("dlib", "fan"):
            raise ValueError(f"Unknown landmark backend {backend!r}; choose 'dlib' or 'fan'.")
        self.backend = backend
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(_face_model_file("shape_predictor_68_face_landmarks.dat")))
        self._lock = threading.Lock()  # dlib's detector and predictor are not thread-safe
        self._fan = None
        if backend == "fan":
            self._fan = self._load_fan(fan_weights_dir, allow_download, device)

    @staticmethod
    def _load_fan(weights_dir: Optional[str | Path], allow_download: bool, device: str):
        import face_alignment
        import torch.hub

        folder = _fan_dir(weights_dir)
        if not allow_download and not (folder / FAN_WEIGHTS_FILE).is_file():
            raise RuntimeError(
                f"FAN weights {FAN_WEIGHTS_FILE} were not found in {folder}. Download them once on a machine "
                "with a network (face-alignment does this on first use), pass their folder, or use the "
                "'dlib' backend."
            )
        previous = torch.hub.get_dir()
        with tempfile.TemporaryDirectory() as hub:
            # face-alignment reads <torch hub dir>/checkpoints/<file>; point that at the weights folder
            os.symlink(folder.resolve(), Path(hub) / "checkpoints")
            torch.hub.set_dir(hub)
            try:
                return face_alignment.FaceAlignment(
                    face_alignment.LandmarksType.TWO_D, device=device, face_detector="folder", compile=False
                )
            finally:
                torch.hub.set_dir(previous)

    def detect(self, image: ImageInput | np.ndarray, upsample: Optional[int] = None) -> FaceDetection:
        """Detect the largest face and its landmarks; raise :class:`NoFaceError` if none is usable."""
        rgb = load_image(image)
        h, w = rgb.shape[:2]
        scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
        small = rgb if scale == 1.0 else _resize(rgb, scale)
        if upsample is None:
            upsample = 1 if max(small.shape[:2]) < 640 else 0
        with self._lock:
            boxes, scores, _ = self._detector.run(small, upsample, 0.0)
            if len(boxes) == 0 and max(small.shape[:2]) * 2 ** (upsample + 1) <= 2048:
                # look again at double resolution, so small faces are reported as small rather than absent
                boxes, scores, _ = self._detector.run(small, upsample + 1, 0.0)
        if len(boxes) == 0:
            raise NoFaceError(
                "No face was found in the photo. Use a photo with one clearly visible, roughly frontal face."
            )
        # faces the detector is reasonably sure of (always at least its best one); the largest of them is used
        faces = [i for i in range(len(boxes)) if i == int(np.argmax(scores)) or scores[i] >= OTHER_FACE_SCORE]
        chosen = max(faces, key=lambda i: (boxes[i].area(), scores[i]))
        best = boxes[chosen]
        box = tuple(int(round(v / scale)) for v in (best.left(), best.top(), best.right(), best.bottom()))
        face_w = box[2] - box[0]
        if face_w < MIN_FACE_SIZE:
            raise NoFaceError(
                f"The face is too small ({face_w} px wide); use a photo where the face is at least "
                f"{MIN_FACE_SIZE} px wide."
            )
        if self._fan is not None:
            landmarks = self._fan_landmarks(rgb, box)
        else:
            landmarks = self._dlib_landmarks(small, best) / scale
        message = ""
        if len(faces) > 1:
            message = (
                f"Found {len(faces)} faces; using the largest one, at x={box[0]}..{box[2]}, "
                f"y={box[1]}..{box[3]}."
            )
            logger.info(message)
        return FaceDetection(
            landmarks=landmarks.astype(np.float32),
            box=box,  # type: ignore[arg-type]
            score=float(scores[chosen]),
            num_faces=len(faces),
            message=message,
        )

    def _dlib_landmarks(self, rgb: np.ndarray, rect) -> np.ndarray:
        with self._lock:
            shape = self._predictor(rgb, rect)
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)

    def _fan_landmarks(self, rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        result = self._fan.get_landmarks_from_image(rgb, detected_faces=[np.array(box, dtype=np.float64)])
        if not result:
            raise NoFaceError("The FAN landmark model found no face in the detected box.")
        return np.asarray(result[0][:, :2], dtype=np.float64)

    def try_detect(self, image: np.ndarray) -> Optional[FaceDetection]:
        """Like :meth:`detect` for video frames: ``None`` instead of an error when no face is usable."""
        try:
            return self.detect(image)
        except NoFaceError:
            return None


def _resize(rgb: np.ndarray, scale: float) -> np.ndarray:
    import cv2

    h, w = rgb.shape[:2]
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)

