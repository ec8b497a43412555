"""Output files: refused up front with a reason when they cannot be written, and written whole or not at all."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

from .errors import InputError


def check_output(path: os.PathLike | str, suffixes: tuple[str, ...]) -> Path:
    """``path`` as a :class:`Path` once it is clear that it can be written: it ends in one of ``suffixes``, it is not
    something other than a regular file (a folder, ``/dev/full``), and its folder exists (or can be made) and takes a
    new file. Otherwise an :class:`InputError` that names the path and the reason."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise InputError(f"Cannot write '{path}': it exists and is not a regular file.")
    if path.suffix.lower() not in suffixes:
        raise InputError(f"Cannot write '{path}': the name must end in {' or '.join(suffixes)}.")
    blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise InputError(f"Cannot write '{path}': '{blocking}' is a file, not a folder.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.stem}.", suffix=".probe"):
            pass
    except OSError as exc:
        raise InputError(f"Cannot write '{path}': {exc.strerror or exc}.") from None
    return path


def partial_path(path: Path) -> Path:
    """A hidden name of its own beside ``path`` for writing it: ``.name.<random>.partial<suffix>``."""
    return path.with_name(f".{path.stem}.{uuid.uuid4().hex[:12]}.partial{path.suffix}")


def write_atomically(path: os.PathLike | str, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path`` and rename it over ``path``: readers see the old file or the
    whole new one, never a part."""
    path = Path(path)
    partial = partial_path(path)
    try:
        with open(partial, "xb") as out:  # created with the usual permissions (unlike mkstemp's 0600)
            out.write(data)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path
