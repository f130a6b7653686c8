"""Atomic, verified outputs: every file is written under a temporary name, checked complete,
and only then renamed into place."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import SimpleITK as sitk

from ..errors import OutputError
from ..signals import signals_deferred
from .geometry import Geometry, PathLike
from .images import image_suffix
from .verify import bytes_file_problem, image_file_problem

# Image formats TwinTrack writes: one file each, so one rename publishes it whole. The two-file
# formats (.mhd + .raw/.zraw, .nhdr + data) name their data file inside the header, which a
# temporary name would break; they are read, never written.
OUTPUT_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")
SINGLE_FILE_EQUIVALENT = {".mhd": ".mha", ".nhdr": ".nrrd"}


def check_image_output_suffix(path: PathLike, option: str = "the output") -> str:
    """The (lower-case) image suffix of an output path; OutputError if TwinTrack cannot write it."""
    path = Path(path)
    suffix = image_suffix(path.name)
    if suffix in SINGLE_FILE_EQUIVALENT:
        single = SINGLE_FILE_EQUIVALENT[suffix]
        raise OutputError(
            f"{option} {path}: TwinTrack does not write {suffix} files, whose header and voxels are two "
            f"separate files that could not appear together atomically. Use {single} (the same format in "
            f"one file, for example {path.name[: -len(suffix)]}{single}) or .nii.gz."
        )
    if suffix not in OUTPUT_IMAGE_SUFFIXES:
        raise OutputError(
            f"{option} {path} has no image suffix TwinTrack writes; end the name with "
            f"{', '.join(OUTPUT_IMAGE_SUFFIXES)} (for example {path.name}.nii.gz)."
        )
    return suffix


def _temporary_name(path: Path) -> Path:
    # The temporary keeps the format's suffix in lower case (ITK picks the writer by it, and its
    # NIfTI writer refuses upper-case names); the rename gives the file the name asked for.
    suffix = image_suffix(path.name) or path.suffix
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}.partial{suffix}")


def _create(temporary: Path) -> None:
    """Create the (empty) temporary, refusing one that exists; the umask gives the usual permissions."""
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))


def write_image(path: PathLike, array: np.ndarray, geometry: Geometry, compress: bool = True) -> Path:
    """Write ``array`` (z, y, x) with ``geometry`` to ``path``, atomically.

    The file is written under a temporary name in the target folder and renamed,
    so a reader never sees a half-written file and a failure leaves none behind.
    """
    with StagedOutputs() as outputs:
        outputs.image(path, array, geometry, compress)
    return Path(path)


def _write_image_to(path: Path, array: np.ndarray, geometry: Geometry, compress: bool) -> np.ndarray:
    """Write the image; return the voxels as written (for the completeness check)."""
    if tuple(array.shape) != geometry.shape:
        raise ValueError(f"array shape {array.shape} does not match geometry shape {geometry.shape}")
    if array.dtype == bool:
        array = array.astype(np.uint8)
    sitk.WriteImage(geometry.apply_to(sitk.GetImageFromArray(array)), str(path), compress)
    return array


# Free bytes below which a failed write is put down to a full device: ITK's writers stop at the
# first write(2) that fails without saying why, and that happens with less than one block free.
FULL_BELOW_BYTES = 1 << 20


def _free_bytes(folder: Path) -> Optional[int]:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _megabytes(count: int) -> str:
    return f"{count / 2**20:.1f} MB" if count >= 2**17 else f"{count} bytes"


def _write_failed(path: Path, problem: str, code: Optional[int] = None) -> OutputError:
    """The error of a failed write, measured while its temporary still holds what was written: the
    free space then is what the device had when the write stopped."""
    folder = path.parent
    free = _free_bytes(folder)
    if code in (errno.ENOSPC, errno.EDQUOT) or (code is None and free is not None and free < FULL_BELOW_BYTES):
        name = "over its disk quota (EDQUOT)" if code == errno.EDQUOT else "full (no space left on device, ENOSPC)"
        shown = "unknown" if free is None else _megabytes(free)
        return OutputError(
            f"Could not write {path}: the device holding {folder} is {name}; {shown} free when the write "
            f"stopped ({problem}). Nothing was published: existing files there are unchanged. Free space in "
            f"{folder} (or choose an output folder on another disk) and run again.")
    free_text = "its free space is unknown" if free is None else f"{_megabytes(free)} free there now"
    return OutputError(
        f"Could not write {path}: {problem}. The folder {folder} is probably full ({free_text}), "
        "not writable, or over a file-size limit. Nothing was published: existing files there are "
        f"unchanged. Free space in {folder} (or choose an output folder on another disk) and run again."
    )


def _itk_problem(error: RuntimeError) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return f"the image writer failed ({lines[-1] if lines else 'unknown error'})"


class StagedOutputs:
    """Write several output files as one: all appear, or none.

    Use as ``with StagedOutputs() as outputs: outputs.image(path, array, geometry)``.
    Each file goes to a temporary name in its target folder and is checked complete
    (:mod:`.verify`: a short write is an OutputError, never a published file); only
    when the block ends without an error are they all renamed into place. On an error (or a
    cancel) the temporaries are removed and existing outputs stay untouched, so
    a rerun over old outputs is always safe.
    """

    def __init__(self) -> None:
        self._pending: List[Tuple[Path, Path]] = []
        self._records: Dict[str, Dict[str, object]] = {}

    def __enter__(self) -> "StagedOutputs":
        return self

    def _stage(self, path: PathLike, writer: Callable[[Path], Optional[str]]) -> Path:
        """Write ``path`` through a temporary; ``writer(temporary)`` writes it and returns what is
        wrong with the result (None: complete). Any failure is an OutputError naming the folder."""
        path = Path(path)
        # The name is registered before the file exists, so that a signal at any moment between
        # the two leaves nothing behind: the clean-up removes whatever was registered.
        temporary = _temporary_name(path)
        self._pending.append((temporary, path))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _create(temporary)
        except OSError as error:
            raise _write_failed(path, error.strerror or str(error), error.errno) from None
        code = None
        try:
            problem = writer(temporary)
        except OSError as error:
            problem, code = error.strerror or str(error), error.errno
        except RuntimeError as error:  # ITK's writers (NRRD, MetaImage) raise on a full disk
            problem = _itk_problem(error)
        if problem:
            raise _write_failed(path, problem, code) from None
        self._records[str(path)] = file_record(temporary)
        return path

    def records(self, relative_to: Optional[Path] = None) -> Dict[str, Dict[str, object]]:
        """What each file staged so far holds, by its final path (relative to ``relative_to``, so a
        record survives its folder being moved): ``{"sha256": ..., "bytes": ...}``, for a record (a
        provenance sidecar) that must be checked against the files before it is trusted."""
        def key(path: str) -> str:
            return path if relative_to is None else os.path.relpath(path, relative_to)

        return {key(path): dict(record) for path, record in self._records.items()}

    def image(self, path: PathLike, array: np.ndarray, geometry: Geometry, compress: bool = True) -> Path:
        suffix = check_image_output_suffix(path)

        def write(temporary: Path) -> Optional[str]:
            written = _write_image_to(temporary, array, geometry, compress)
            return image_file_problem(temporary, written, suffix)

        return self._stage(path, write)

    def data(self, path: PathLike, data: bytes) -> Path:
        def write(temporary: Path) -> Optional[str]:
            temporary.write_bytes(data)
            return bytes_file_problem(temporary, data)

        return self._stage(path, write)

    def json(self, path: PathLike, content) -> Path:
        return self.data(path, _json_bytes(content))

    def __exit__(self, kind, error, trace) -> None:
        if kind is None:
            try:
                with signals_deferred():  # the renames are one step: a signal waits until they are done
                    for temporary, path in self._pending:
                        os.replace(temporary, path)
            except OSError as error:
                self._discard()
                raise _write_failed(path, error.strerror or str(error), error.errno) from None
            except BaseException:  # a signal between two renames: no temporary may stay behind
                self._discard()
                raise
        self._discard()

    def _discard(self) -> None:
        for temporary, _ in self._pending:
            temporary.unlink(missing_ok=True)
        self._pending = []


def file_record(path: PathLike) -> Dict[str, object]:
    """The sha256 (hex) and size (bytes) of a file, as sidecars record their outputs."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return {"sha256": digest.hexdigest(), "bytes": os.path.getsize(path)}


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

