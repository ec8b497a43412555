import io

import numpy as np
import pytest
from PIL import Image

from pipeline.errors import InputError
from pipeline.images import load_image


def _save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


@pytest.mark.parametrize("mode", ["CMYK", "RGBA", "LA", "L", "P", "I;16", "1"])
def test_modes_become_rgb(tmp_path, astronaut, mode):
    img = Image.fromarray(astronaut)
    if mode == "I;16":
        img = Image.fromarray(np.asarray(img.convert("L"), dtype=np.uint16) * 257)
        fmt = "png"
    else:
        img = img.convert(mode)
        fmt = "tiff" if mode == "CMYK" else "png"
    out = load_image(_save(img, tmp_path / f"photo.{fmt}"))
    assert out.dtype == np.uint8 and out.shape == (512, 512, 3)
    assert out.mean() > 30  # not black: 16-bit scaled properly, alpha composited


def test_exif_rotation_is_applied(tmp_path, astronaut):
    img = Image.fromarray(astronaut).rotate(90, expand=True)  # stored sideways
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": undoes the stored counter-clockwise rotation
    path = _save(img, tmp_path / "rotated.jpg", exif=exif, quality=95)
    out = load_image(path)
    assert out.shape == astronaut.shape
    assert np.abs(out.astype(int) - astronaut.astype(int)).mean() < 8


def test_animated_gif_gives_first_frame(tmp_path, astronaut):
    frames = [Image.fromarray(astronaut), Image.fromarray(255 - astronaut)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    out = load_image(path)
    assert out.shape == astronaut.shape
    assert np.abs(out.astype(int) - astronaut.astype(int)).mean() < 20


def test_bytes_and_arrays(astronaut):
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, format="png")
    assert np.array_equal(load_image(buf.getvalue()), astronaut)
    assert load_image(astronaut[..., 0]).shape == (512, 512, 3)
    assert load_image(astronaut.astype(np.float32) / 255).dtype == np.uint8
    rgba = np.dstack([astronaut, np.full(astronaut.shape[:2], 255, np.uint8)])
    assert np.array_equal(load_image(rgba), astronaut)


@pytest.mark.parametrize(
    "content, words",
    [
        (b"", "empty"),
        (b"this is not an image at all", "not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not an image"),
    ],
)
def test_bad_files(tmp_path, content, words):
    path = tmp_path / "photo.png"
    path.write_bytes(content)
    with pytest.raises(InputError, match=words):
        load_image(path)


def test_truncated_jpeg(tmp_path, astronaut):
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, format="jpeg")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(InputError, match="damaged or truncated"):
        load_image(path)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_image(tmp_path / "nope.png")


def test_huge_image_refused_before_decoding(tmp_path):
    path = _save(Image.new("1", (12000, 12000)), tmp_path / "bomb.png")
    assert path.stat().st_size < 2_000_000
    with pytest.raises(InputError, match="limit"):
        load_image(path)


def test_nan_array_refused():
    with pytest.raises(InputError, match="NaN"):
        load_image(np.full((8, 8, 3), np.nan, dtype=np.float32))


def test_a_folder_is_not_a_photo(tmp_path):
    with pytest.raises(InputError, match="is a folder, not a file"):
        load_image(tmp_path)
