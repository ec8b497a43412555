"""Optional 68-point backends: dlib's predictor (``"dlib"``) and face-alignment's FAN (``"fan"``).

Neither is installed by ``requirements.txt`` (``pip install -r requirements-optional.txt``) and neither is the
default: dlib's 68-point predictor (``face_recognition_models``) was trained on iBUG 300-W, whose licence allows
research use only. They give 2D points; depth is estimated from the mean face (:func:`pipeline.canonical.lift_to_3d`).
FAN's weights must already be in torch's hub cache (``~/.cache/torch/hub/checkpoints``) or in a folder given as
``fan_weights_dir``; nothing is downloaded unless ``allow_download=True``.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import threading
from pathlib import Path

import numpy as np

from ..errors import NoFaceError

FAN_WEIGHTS_FILE = "2DFAN4-11f355bf06.pth.tar"
#: Detector score above which a second face counts as a face (the best one is kept at any score >= 0).
OTHER_FACE_SCORE = 0.3


def _face_model_file(name: str) -> Path:
    """Locate a model file of ``face_recognition_models`` without importing it (its init needs pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "The 'dlib' landmark backend needs the optional packages: pip install -r requirements-optional.txt"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise RuntimeError(f"Model file {path} is missing from face_recognition_models.")
    return path


def fan_weights_available(weights_dir: str | Path | None = None) -> bool:
    """Whether face-alignment's FAN weights are present locally (no download)."""
    return (_fan_dir(weights_dir) / FAN_WEIGHTS_FILE).is_file()


def _fan_dir(weights_dir: str | Path | None) -> Path:
    if weights_dir is not None:
        return Path(weights_dir)
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


class DlibLandmarks:
    """dlib's HOG face detector with dlib's or FAN's 68 points."""

    def __init__(self, backend: str = "dlib", fan_weights_dir: str | Path | None = None,
                 allow_download: bool = False, device: str = "cpu") -> None:
        try:
            import dlib
        except ImportError:
            raise RuntimeError(
                f"The '{backend}' landmark backend needs dlib: pip install -r requirements-optional.txt"
            ) from None
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(_face_model_file("shape_predictor_68_face_landmarks.dat")))
        self._lock = threading.Lock()  # dlib's detector and predictor are not thread-safe
        self._fan = self._load_fan(fan_weights_dir, allow_download, device) if backend == "fan" else None

    @staticmethod
    def _load_fan(weights_dir: str | Path | None, allow_download: bool, device: str):
        import face_alignment
        import torch.hub

        folder = _fan_dir(weights_dir)
        if not allow_download and not (folder / FAN_WEIGHTS_FILE).is_file():
            raise RuntimeError(
                f"FAN weights {FAN_WEIGHTS_FILE} were not found in {folder}. Download them once on a machine "
                "with a network (face-alignment does this on first use), pass their folder, or use the "
                "default 'mesh' backend."
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

    def faces(self, rgb: np.ndarray) -> tuple[np.ndarray, float, np.ndarray, int]:
        """The largest face the detector is reasonably sure of: ``(box, score, landmarks (68, 2), number of faces)``."""
        upsample = 1 if max(rgb.shape[:2]) < 640 else 0
        with self._lock:
            boxes, scores, _ = self._detector.run(rgb, upsample, 0.0)
            if len(boxes) == 0 and max(rgb.shape[:2]) * 2 ** (upsample + 1) <= 2048:
                # look again at double resolution, so small faces are reported as small rather than absent
                boxes, scores, _ = self._detector.run(rgb, upsample + 1, 0.0)
        if len(boxes) == 0:
            raise NoFaceError(
                "No face was found in the photo. Use a photo with one clearly visible, roughly frontal face."
            )
        keep = [i for i in range(len(boxes)) if i == int(np.argmax(scores)) or scores[i] >= OTHER_FACE_SCORE]
        keep.sort(key=lambda i: (-boxes[i].area(), -scores[i]))
        rect = boxes[keep[0]]
        box = np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], dtype=np.float64)
        return box, float(scores[keep[0]]), self._landmarks(rgb, rect, box), len(keep)

    def _landmarks(self, rgb: np.ndarray, rect, box: np.ndarray) -> np.ndarray:
        if self._fan is not None:
            result = self._fan.get_landmarks_from_image(rgb, detected_faces=[box])
            if not result:
                raise NoFaceError("The FAN landmark model found no face in the detected box.")
            return np.asarray(result[0][:, :2], dtype=np.float64)
        with self._lock:
            shape = self._predictor(rgb, rect)
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
