"""Reading user photos into plain RGB arrays, whatever their format, mode or orientation."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError

ImageInput = str | os.PathLike | bytes | Image.Image | np.ndarray

#: Largest photo we accept, in pixels (about 8000 x 6000). Bigger files are refused before decoding,
#: which also stops decompression bombs. Change with the environment variable TALKING_FACE_MAX_PIXELS.
MAX_PIXELS = int(os.environ.get("TALKING_FACE_MAX_PIXELS", 48_000_000))
#: File name endings taken as photos when a folder is scanned.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode (CMYK, palette, grey, 16-bit, alpha) to 8-bit RGB."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = float(arr.max()) if arr.size else 0.0
        scale = 255.0 / 65535.0 if hi > 255 else 1.0
        arr8 = np.clip(arr * scale, 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, mode="L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def load_image(image: ImageInput) -> np.ndarray:
    """Load a photo as an ``(H, W, 3)`` uint8 RGB array.

    Accepts a path, raw bytes, a PIL image or an array. EXIF orientation is applied, every colour
    mode becomes RGB, and animated files give their first frame. Unreadable input raises
    :class:`InputError` with a readable reason.
    """
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image)
    if isinstance(image, Image.Image):
        return np.asarray(_to_rgb(ImageOps.exif_transpose(image)))
    if isinstance(image, bytes):
        source: object = io.BytesIO(image)
        name = "the uploaded image"
    else:
        path = Path(image)
        name = f"'{path.name}'"
        if not path.is_file():
            raise InputError(f"Image {name} is a folder, not a file." if path.is_dir()
                             else f"Image file {name} does not exist.")
        if path.stat().st_size == 0:
            raise InputError(f"Image file {name} is empty (0 bytes).")
        source = path
    previous_limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = MAX_PIXELS
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:  # type: ignore[arg-type]
                w, h = img.size
                if w * h > MAX_PIXELS:
                    raise InputError(
                        f"Image {name} is {w}x{h} pixels, more than the limit of {MAX_PIXELS:,} pixels; "
                        "resize it first."
                    )
                img.seek(0)
                img.load()
                oriented = ImageOps.exif_transpose(img)
                rgb = _to_rgb(oriented)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(
            f"Image {name} is larger than the limit of {MAX_PIXELS:,} pixels; resize it first."
        ) from None
    except UnidentifiedImageError:
        raise InputError(f"{name[0].upper()}{name[1:]} is not an image format we can read (try PNG or JPEG).") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"Image {name} is damaged or truncated and cannot be read ({exc}).") from None
    finally:
        Image.MAX_IMAGE_PIXELS = previous_limit
    return np.asarray(rgb)


def _array_to_rgb(arr: np.ndarray) -> np.ndarray:
    """Normalise an in-memory array (grey, RGB, RGBA; uint8, uint16 or float) to uint8 RGB."""
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4) or min(arr.shape[:2]) < 1:
        raise InputError(f"An image array must be HxW, HxWx3 or HxWx4; got shape {arr.shape}.")
    if arr.shape[0] * arr.shape[1] > MAX_PIXELS:
        raise InputError(f"The image has more than {MAX_PIXELS:,} pixels; resize it first.")
    if arr.dtype == np.uint16:
        arr = (arr.astype(np.float64) / 257.0).round()
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise InputError("The image array contains NaN or infinite values.")
        arr = arr * 255.0 if arr.max() <= 1.0 else arr
    arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 4:
        alpha = arr[..., 3:4].astype(np.float32) / 255.0
        arr = (arr[..., :3] * alpha + 255.0 * (1.0 - alpha)).round().astype(np.uint8)
    return np.ascontiguousarray(arr)
