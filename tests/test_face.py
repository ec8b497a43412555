import numpy as np
import pytest
from PIL import Image

from pipeline.canonical import inter_ocular
from pipeline.errors import NoFaceError
from pipeline.face import FAN_WEIGHTS_FILE, FaceAnalyzer, fan_weights_available


def test_detects_astronaut(analyzer, astronaut):
    det = analyzer.detect(astronaut)
    assert det.landmarks.shape == (68, 2) and det.num_faces == 1 and det.message == ""
    left, top, right, bottom = det.box
    inside = (det.landmarks[:, 0] > left - 20) & (det.landmarks[:, 0] < right + 20)
    assert inside.all() and 40 < inter_ocular(det.landmarks) < 120


def test_no_face(analyzer):
    noise = np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)
    with pytest.raises(NoFaceError, match="No face"):
        analyzer.detect(noise)


def test_several_faces_uses_one_and_says_so(analyzer, astronaut):
    two = np.concatenate([astronaut, astronaut[:, ::-1]], axis=1)
    det = analyzer.detect(two)
    assert det.num_faces >= 2 and "faces" in det.message
    assert det.landmarks.shape == (68, 2)


@pytest.mark.parametrize("big_on_left", [True, False])
def test_several_faces_uses_the_largest(analyzer, astronaut, astronaut_landmarks, big_on_left):
    """A face twice the size of another is used even where the detector is surer of the small one (big on the
    right: dlib scores the small face 1.45, the big one 0.82)."""
    crop = astronaut[:256, 96:352]
    big = np.asarray(Image.fromarray(crop).resize((512, 512), Image.LANCZOS))
    canvas = np.full((512, 768, 3), 255, np.uint8)
    big_x, small_x = (0, 512) if big_on_left else (256, 0)
    canvas[:, big_x : big_x + 512] = big
    canvas[128:384, small_x : small_x + 256] = crop
    det = analyzer.detect(canvas)
    assert det.num_faces == 2 and "largest" in det.message
    expected = (astronaut_landmarks - [96, 0]) * 2 + [big_x, 0]
    assert np.linalg.norm(det.landmarks - expected, axis=1).mean() < 0.05 * inter_ocular(expected)


def test_tiny_face_is_refused(analyzer, astronaut):
    small = np.asarray(Image.fromarray(astronaut).resize((200, 200), Image.LANCZOS))
    with pytest.raises(NoFaceError, match="too small"):
        analyzer.detect(small)


def test_large_photo_landmarks_scale(analyzer, astronaut, astronaut_landmarks):
    big = np.asarray(Image.fromarray(astronaut).resize((4000, 4000), Image.BICUBIC))
    det = analyzer.detect(big)
    err = np.linalg.norm(det.landmarks / (4000 / 512) - astronaut_landmarks, axis=1).mean()
    assert err < 0.05 * inter_ocular(astronaut_landmarks)


def test_exif_rotated_photo(analyzer, astronaut, astronaut_landmarks, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated 90 CCW, shown upright
    path = tmp_path / "rot.jpg"
    Image.fromarray(astronaut).rotate(90, expand=True).save(path, exif=exif, quality=95)
    det = analyzer.detect(path)
    assert np.linalg.norm(det.landmarks - astronaut_landmarks, axis=1).mean() < 0.1 * inter_ocular(astronaut_landmarks)


def test_fan_backend_needs_weights(tmp_path):
    assert not fan_weights_available(tmp_path)
    with pytest.raises(RuntimeError, match="FAN weights"):
        FaceAnalyzer("fan", fan_weights_dir=tmp_path)


def test_fan_backend_runs_with_local_weights(tmp_path, astronaut):
    """The FAN path end to end with randomly initialised weights in a local folder (no download)."""
    import torch
    from face_alignment.models import FAN

    torch.manual_seed(0)
    torch.save(FAN(4).state_dict(), tmp_path / FAN_WEIGHTS_FILE)
    analyzer = FaceAnalyzer("fan", fan_weights_dir=tmp_path)
    det = analyzer.detect(astronaut)
    assert det.landmarks.shape == (68, 2) and np.isfinite(det.landmarks).all()
