"""NIfTI completeness: ITK reads a truncated NIfTI (or the .img of a .hdr/.img pair) silently and
zero-fills it."""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from ..errors import InputError

EXCESS_BYTES = 1 << 22  # trailing bytes past the voxels that are tolerated (and inflated)
MAX_VOX_OFFSET = 1 << 32  # a header plus extensions beyond 4 GB is not a header


def _nifti_layout(header: bytes) -> Optional[Tuple[int, int]]:
    """(vox_offset, voxel bytes) a NIfTI-1/2 (or Analyze 7.5) header describes; None if it is not one.

    ValueError (with the reason) for a vox_offset that is no byte offset (NaN, negative, huge)."""
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            bitpix = struct.unpack(endian + "h", header[72:74])[0]
            vox_offset = struct.unpack(endian + "f", header[108:112])[0]
            break
        if len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:
            bitpix = struct.unpack(endian + "h", header[14:16])[0]
            dims = struct.unpack(endian + "8q", header[16:80])
            vox_offset = struct.unpack(endian + "q", header[168:176])[0]
            break
    else:
        return None  # not a NIfTI header: let the reader say what it is
    if not math.isfinite(vox_offset) or not 0 <= vox_offset <= MAX_VOX_OFFSET:
        raise ValueError(f"its header's vox_offset (where the voxels start) is {vox_offset!r}, not a byte "
                         "offset in the file")
    rank = int(dims[0])
    if not 1 <= rank <= 7:
        return None
    voxels = int(np.prod([max(int(d), 1) for d in dims[1:rank + 1]], dtype=np.int64))
    return int(vox_offset), voxels * max(int(bitpix), 8) // 8


def _nifti_expected_bytes(header: bytes) -> Optional[int]:
    """Bytes a complete NIfTI-1/2 file holds (header, extensions, voxels), from its header."""
    layout = _nifti_layout(header)
    return None if layout is None else layout[0] + layout[1]


def _refuse(path: Path, problem: str) -> InputError:
    return InputError(
        f"{path} is truncated or corrupted: {problem}. The file was probably cut off while "
        "copying or writing; copy or export it again."
    )


def _stream_length(path: Path, opened, expected: Optional[int], already: int = 0) -> Tuple[int, Optional[str]]:
    """Bytes left in ``opened`` (a gzip stream, read to its end so its CRC is checked), never more
    than ``expected + EXCESS_BYTES`` (a gzip bomb stops there)."""
    total = already
    while True:
        block = opened.read(1 << 22)
        if not block:
            return total, None
        total += len(block)
        if expected is not None and total > expected + EXCESS_BYTES:
            return total, f"it decompresses to more than the {expected} bytes its header describes"


def check_nifti_complete(path: Path) -> None:
    """Refuse a truncated or corrupted NIfTI file.

    ITK reads a truncated NIfTI without complaint and fills the missing voxels
    with zeros, which would silently turn into "no tumour"; so the length (and,
    for .nii.gz, the gzip CRC) is checked here before reading.
    """
    problem = None
    with open(path, "rb") as stream:
        if path.name.lower().endswith(".nii.gz") and stream.read(2) != b"\x1f\x8b":
            return  # not gzip at all: the reader's own error says it is not an image
    try:
        if path.name.lower().endswith(".nii.gz"):
            with gzip.open(path, "rb") as stream:
                header = stream.read(540)
                expected = _nifti_expected_bytes(header)
                total, problem = _stream_length(path, stream, expected, len(header))
        else:
            with open(path, "rb") as stream:
                header = stream.read(540)
            expected = _nifti_expected_bytes(header)
            total = path.stat().st_size
        if problem is None and expected is not None and total < expected:
            problem = f"it holds {total} bytes but its header describes {expected}"
    except ValueError as error:  # the header's vox_offset is no offset
        problem = str(error)
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as error:
        problem = f"its compressed data is incomplete or corrupted ({error})"
    if problem:
        raise _refuse(path, problem)


def pair_files(path: Path) -> Tuple[Path, Optional[Path]]:
    """The header and data file of an Analyze / NIfTI pair named by either (``x.hdr`` or ``x.img``,
    each possibly ``.gz``); the data file is None when no ``.img`` (``.img.gz``) lies next to it."""
    name = path.name[:-3] if path.name.lower().endswith(".gz") else path.name
    base = name[:-4]  # without .hdr / .img

    def first(*suffixes: str) -> Optional[Path]:
        return next((path.with_name(base + s) for s in suffixes if path.with_name(base + s).is_file()), None)

    header = first(".hdr", ".HDR", ".hdr.gz", ".HDR.GZ") or path.with_name(base + ".hdr")
    return header, first(".img", ".IMG", ".img.gz", ".IMG.GZ")


def check_pair_complete(path: Path) -> None:
    """Refuse a .hdr/.img pair whose .img is missing, short or corrupted (ITK zero-fills it)."""
    header_path, data_path = pair_files(path)
    try:
        opener = gzip.open if header_path.name.lower().endswith(".gz") else open
        with opener(header_path, "rb") as stream:
            header = stream.read(540)
        layout = _nifti_layout(header)
    except ValueError as error:
        raise _refuse(header_path, str(error)) from None
    except (OSError, EOFError, zlib.error) as error:
        raise _refuse(header_path, f"its header cannot be read ({error})") from None
    if layout is None:
        raise _refuse(header_path, "it has no complete Analyze/NIfTI header (348 bytes)")
    if data_path is None:
        raise InputError(f"{header_path} is the header of a .hdr/.img pair, but its voxel file "
                         f"{header_path.with_suffix('.img').name} is missing next to it. Copy both files "
                         "together (or convert the pair to one .nii.gz).")
    expected = layout[0] + layout[1]
    problem = None
    try:
        if data_path.name.lower().endswith(".gz"):
            with gzip.open(data_path, "rb") as stream:
                total, problem = _stream_length(data_path, stream, expected)
        else:
            total = data_path.stat().st_size
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as error:
        problem = f"its compressed data is incomplete or corrupted ({error})"
    if problem is None and total < expected:
        problem = (f"it holds {total} bytes of voxels but its header {header_path.name} describes "
                   f"{expected}")
    if problem:
        raise _refuse(data_path, problem)
