"""NIfTI completeness: ITK reads a truncated NIfTI silently and zero-fills it."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import InputError


def _nifti_expected_bytes(header: bytes) -> Optional[int]:
    """Bytes a complete NIfTI-1/2 file holds (header, extensions, voxels), from its header."""
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
    rank = int(dims[0])
    if not 1 <= rank <= 7:
        return None
    voxels = int(np.prod([max(int(d), 1) for d in dims[1:rank + 1]], dtype=np.int64))
    return int(vox_offset) + voxels * max(int(bitpix), 8) // 8


def nifti_problem(path: Path, expected_data_bytes: Optional[int] = None,
                  gzipped: Optional[bool] = None) -> Optional[str]:
    """What makes a NIfTI file incomplete, or None if it holds everything its header describes.

    For .nii.gz the whole stream is inflated, so zlib also checks its end, CRC-32 and length.
    expected_data_bytes: the voxel bytes that were written (an output's own check): then a
    missing or unreadable header is a problem too, and the header must describe those voxels.
    gzipped: default from the name (case-insensitive).
    """
    from .verify import GZIP_WBITS, inflated_size

    if gzipped is None:
        gzipped = path.name.lower().endswith(".nii.gz")
    strict = expected_data_bytes is not None
    try:
        if gzipped:
            with open(path, "rb") as stream:
                if stream.read(2) != b"\x1f\x8b":
                    # Not gzip at all: the reader's own error says it is not an image.
                    return "it is not gzip-compressed" if strict else None
            with gzip.open(path, "rb") as stream:
                header = stream.read(540)
            total, problem = inflated_size(path, 0, GZIP_WBITS)
            if problem:
                return f"its compressed data is incomplete or corrupted ({problem})"
        else:
            with open(path, "rb") as stream:
                header = stream.read(540)
            total = path.stat().st_size
        expected = _nifti_expected_bytes(header)
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as error:
        return f"its compressed data is incomplete or corrupted ({error})"
    if expected is None:
        return "it has no complete NIfTI header" if strict else None
    if total < expected:
        return f"it holds {total} bytes but its header describes {expected}"
    if strict and expected - _vox_offset(header) < expected_data_bytes:
        return f"its header describes {expected - _vox_offset(header)} bytes of voxels, not {expected_data_bytes}"
    return None


def _vox_offset(header: bytes) -> int:
    for endian in "<>":
        if struct.unpack(endian + "i", header[:4])[0] == 348:
            return int(struct.unpack(endian + "f", header[108:112])[0])
        if struct.unpack(endian + "i", header[:4])[0] == 540:
            return int(struct.unpack(endian + "q", header[168:176])[0])
    return 0


def check_nifti_complete(path: Path) -> None:
    """Refuse a truncated or corrupted NIfTI file.

    ITK reads a truncated NIfTI without complaint and fills the missing voxels
    with zeros, which would silently turn into "no tumour"; so the length (and,
    for .nii.gz, the gzip CRC) is checked here before reading.
    """
    problem = nifti_problem(path)
    if problem:
        raise InputError(
            f"{path} is truncated or corrupted: {problem}. The file was probably cut off while "
            "copying or writing; copy or export it again."
        )
