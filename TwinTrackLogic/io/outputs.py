"""Atomic outputs: every file is written under a temporary name and renamed into place."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import List, Tuple

import numpy as np
import SimpleITK as sitk

from .geometry import Geometry, PathLike
from .images import IMAGE_SUFFIXES


def _temporary_sibling(path: Path) -> Path:
    suffix = next((s for s in IMAGE_SUFFIXES if path.name.endswith(s)), path.suffix)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".partial{suffix}", dir=path.parent)
    os.close(handle)
    # mkstemp makes the file private (0600); an output should get the usual permissions.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(name, 0o666 & ~umask)
    return Path(name)


def write_image(path: PathLike, array: np.ndarray, geometry: Geometry, compress: bool = True) -> Path:
    """Write ``array`` (z, y, x) with ``geometry`` to ``path``, atomically.

    The file is written under a temporary name in the target folder and renamed,
    so a reader never sees a half-written file and a failure leaves none behind.
    """
    with StagedOutputs() as outputs:
        outputs.image(path, array, geometry, compress)
    return Path(path)


def _write_image_to(path: Path, array: np.ndarray, geometry: Geometry, compress: bool) -> None:
    if tuple(array.shape) != geometry.shape:
        raise ValueError(f"array shape {array.shape} does not match geometry shape {geometry.shape}")
    if array.dtype == bool:
        array = array.astype(np.uint8)
    sitk.WriteImage(geometry.apply_to(sitk.GetImageFromArray(array)), str(path), compress)


class StagedOutputs:
    """Write several output files as one: all appear, or none.

    Use as ``with StagedOutputs() as outputs: outputs.image(path, array, geometry)``.
    Each file goes to a temporary name in its target folder; only when the block
    ends without an error are they all renamed into place. On an error (or a
    cancel) the temporaries are removed and existing outputs stay untouched, so
    a rerun over old outputs is always safe.
    """

    def __init__(self) -> None:
        self._pending: List[Tuple[Path, Path]] = []

    def __enter__(self) -> "StagedOutputs":
        return self

    def _stage(self, path: PathLike, writer) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = _temporary_sibling(path)
        self._pending.append((temporary, path))
        writer(temporary)
        return path

    def image(self, path: PathLike, array: np.ndarray, geometry: Geometry, compress: bool = True) -> Path:
        return self._stage(path, lambda temporary: _write_image_to(temporary, array, geometry, compress))

    def data(self, path: PathLike, data: bytes) -> Path:
        return self._stage(path, lambda temporary: temporary.write_bytes(data))

    def json(self, path: PathLike, content) -> Path:
        return self.data(path, _json_bytes(content))

    def __exit__(self, kind, error, trace) -> None:
        if kind is None:
            for temporary, path in self._pending:
                os.replace(temporary, path)
        else:
            for temporary, _ in self._pending:
                temporary.unlink(missing_ok=True)
        self._pending = []


def write_bytes_atomic(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary sibling and a rename."""
    with StagedOutputs() as outputs:
        outputs.data(path, data)
    return Path(path)


def write_json(path: PathLike, data) -> Path:
    """Write JSON (strict: NaN and Infinity refused) atomically, indented, UTF-8."""
    return write_bytes_atomic(path, _json_bytes(data))


def _json_bytes(data) -> bytes:
    return (json.dumps(data, indent=2, allow_nan=False, ensure_ascii=False) + "\n").encode("utf-8")

