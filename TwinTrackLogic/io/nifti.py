"""NIfTI completeness: ITK reads a truncated NIfTI silently and zero-fills it."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import InputError

EXCESS_BYTES = 1 << 22  # trailing bytes past the voxels that are tolerated (and inflated)


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
                total = len(header)
                while True:  # reads to the end, so gzip also checks the CRC and length
                    block = stream.read(1 << 22)
                    if not block:
                        break
                    total += len(block)
                    if expected is not None and total > expected + EXCESS_BYTES:
                        # Never inflate more than the header describes (a gzip bomb stops here).
                        problem = (f"it decompresses to more than the {expected} bytes its header "
                                   "describes")
                        break
        else:
            with open(path, "rb") as stream:
                header = stream.read(540)
            expected = _nifti_expected_bytes(header)
            total = path.stat().st_size
        if problem is None and expected is not None and total < expected:
            problem = f"it holds {total} bytes but its header describes {expected}"
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as error:
        problem = f"its compressed data is incomplete or corrupted ({error})"
    if problem:
        raise InputError(
            f"{path} is truncated or corrupted: {problem}. The file was probably cut off while "
            "copying or writing; copy or export it again."
        )


