"""Is a file we just wrote complete? Checked before it is renamed into place.

ITK's NIfTI writer does not raise when the disk fills up: it prints an error and leaves a
short file, which SimpleITK and Slicer later read back zero-filled. So every output is
checked after writing, from its own header, before anyone can see it:

- NIfTI (``.nii``): the file holds the header's ``vox_offset`` plus every voxel;
- NRRD (``.nrrd``) and MetaImage (``.mha``), raw: the data after the text header is exactly
  the voxels;
- compressed (``.nii.gz``, gzip NRRD, zlib MetaImage): the stream's trailer, its last bytes,
  must hold the CRC-32 (gzip; and the length) or Adler-32 (zlib) of exactly the bytes meant
  (the header prefix inflated from the file, then the array's voxels). A short write cuts the
  trailer off, so this finds it without inflating the whole stream. If the trailer does not
  match, the whole stream is inflated (zlib then checks its end, check value and length) and
  that verdict counts; so a file is refused only if it really is incomplete or corrupted;
- any other file (JSON, PNG): its bytes read back equal the bytes meant.

Each check returns None when the file is complete, or a short description of what is wrong.
``benchmarks/bench_write_verify.py`` measures the cost against the write.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from .images import image_suffix
from .nifti import _nifti_expected_bytes

_BLOCK = 1 << 22  # bytes read per step
_MAX_OUT = 1 << 24  # bytes inflated per step, so a run of zeros never balloons in memory
GZIP_WBITS = 31  # zlib window bits for a gzip wrapper (header, CRC-32 and length trailer)
ZLIB_WBITS = 15  # a zlib wrapper (Adler-32 trailer), as MetaImage writes


def inflated_size(path: Path, offset: int, wbits: int) -> Tuple[int, Optional[str]]:
    """Bytes the compressed stream starting at ``offset`` inflates to, and what is wrong with it
    (None: it ends properly, its check value matches and nothing follows it)."""
    inflater = zlib.decompressobj(wbits)
    total = 0
    try:
        with open(path, "rb") as stream:
            stream.seek(offset)
            while not inflater.eof:
                block = stream.read(_BLOCK)
                if not block:
                    return total, "the compressed data stops before its end"
                while block and not inflater.eof:
                    total += len(inflater.decompress(block, _MAX_OUT))
                    block = inflater.unconsumed_tail
            if inflater.unused_data or stream.read(1):
                return total, "there are bytes after the end of the compressed data"
    except zlib.error as error:
        return total, f"the compressed data is corrupted ({error})"
    return total, None


def _inflated_prefix(path: Path, offset: int, wbits: int, count: int) -> bytes:
    """The first ``count`` inflated bytes of the stream at ``offset`` (fewer if it is shorter)."""
    inflater = zlib.decompressobj(wbits)
    prefix = b""
    with open(path, "rb") as stream:
        stream.seek(offset)
        while len(prefix) < count and not inflater.eof:
            block = stream.read(1 << 16)
            if not block:
                break
            while block and len(prefix) < count and not inflater.eof:
                prefix += inflater.decompress(block, count - len(prefix))
                block = inflater.unconsumed_tail
    return prefix


CRC_CHUNK = 1 << 20  # bytes per step of the CRC-32 and Adler-32; an all-zero step is skipped arithmetically


def _gf2_times(matrix, vector: int) -> int:
    total, row = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[row]
        vector >>= 1
        row += 1
    return total


def _zero_shift_matrix(byte_count: int):
    """The linear map that ``count`` zero bytes apply to a CRC-32 register (zlib's
    crc32_combine operator), as 32 column words."""
    odd = [0xEDB88320] + [1 << n for n in range(31)]  # one zero bit
    even = [_gf2_times(odd, column) for column in odd]  # two
    odd = [_gf2_times(even, column) for column in even]  # four
    result = [1 << n for n in range(32)]  # identity
    while byte_count:
        even = [_gf2_times(odd, column) for column in odd]  # 8, 32, 128, ... zero bits
        if byte_count & 1:
            result = [_gf2_times(even, column) for column in result]
        byte_count >>= 1
        if not byte_count:
            break
        odd = [_gf2_times(even, column) for column in even]
        if byte_count & 1:
            result = [_gf2_times(odd, column) for column in result]
        byte_count >>= 1
    return result


_ZERO_CHUNK = None  # (shift matrix, CRC-32 of CRC_CHUNK zero bytes), made on first use


def crc32_of(prefix: bytes, data: memoryview) -> int:
    """zlib.crc32(prefix + data), without reading the long runs of zero bytes a probability map
    is mostly made of: crc32(zeros, v) = shift(v) ^ crc32(zeros), both fixed per chunk size."""
    global _ZERO_CHUNK
    if _ZERO_CHUNK is None:
        _ZERO_CHUNK = (_zero_shift_matrix(CRC_CHUNK), zlib.crc32(bytes(CRC_CHUNK)))
    shift, zero_crc = _ZERO_CHUNK
    crc = zlib.crc32(prefix)
    whole = data.nbytes - data.nbytes % CRC_CHUNK
    words = np.frombuffer(data[:whole], dtype=np.uint64).reshape(-1, CRC_CHUNK // 8)
    for index, chunk_words in enumerate(words):
        if chunk_words.any():
            crc = zlib.crc32(data[index * CRC_CHUNK:(index + 1) * CRC_CHUNK], crc)
        else:
            crc = _gf2_times(shift, crc) ^ zero_crc
    return zlib.crc32(data[whole:], crc)


ADLER_BASE = 65521


def adler32_of(prefix: bytes, data: memoryview) -> int:
    """zlib.adler32(prefix + data), skipping all-zero chunks: n zero bytes leave the sum A as it is
    and add n * A to the sum B (both modulo 65521)."""
    value = zlib.adler32(prefix)
    whole = data.nbytes - data.nbytes % CRC_CHUNK
    words = np.frombuffer(data[:whole], dtype=np.uint64).reshape(-1, CRC_CHUNK // 8)
    for index, chunk_words in enumerate(words):
        if chunk_words.any():
            value = zlib.adler32(data[index * CRC_CHUNK:(index + 1) * CRC_CHUNK], value)
        else:
            low, high = value & 0xFFFF, value >> 16
            value = (((high + CRC_CHUNK * low) % ADLER_BASE) << 16) | low
    return zlib.adler32(data[whole:], value)


def trailer_matches(path: Path, wbits: int, prefix: bytes, data: memoryview) -> bool:
    """Whether the compressed stream that ends ``path`` closes with the check value of
    ``prefix + data`` (gzip: CRC-32 and length mod 2**32; zlib: Adler-32)."""
    size = path.stat().st_size
    with open(path, "rb") as stream:
        stream.seek(max(size - 8, 0))
        tail = stream.read(8)
    if len(tail) < 8:
        return False
    if wbits == GZIP_WBITS:
        crc, length = struct.unpack("<II", tail)
        return (crc == crc32_of(prefix, data)
                and length == (len(prefix) + data.nbytes) & 0xFFFFFFFF)
    return struct.unpack(">I", tail[4:])[0] == adler32_of(prefix, data)


def _compressed_problem(path: Path, offset: int, wbits: int, prefix_bytes: int,
                        data: memoryview, prefix: Optional[bytes] = None) -> Optional[str]:
    """None if the compressed stream at ``offset`` holds ``prefix_bytes`` of header then ``data``."""
    if prefix is None:
        prefix = _inflated_prefix(path, offset, wbits, prefix_bytes) if prefix_bytes else b""
    if len(prefix) == prefix_bytes and trailer_matches(path, wbits, prefix, data):
        return None
    size, problem = inflated_size(path, offset, wbits)
    if problem:
        return problem
    if size != prefix_bytes + data.nbytes:
        return f"it holds {size - prefix_bytes} bytes of voxel data where {data.nbytes} were written"
    return None


def _text_header(path: Path, end_marker) -> Tuple[dict, int]:
    """Key/value lines of a NRRD or MetaImage header and the offset of the data after it."""
    fields: Dict[str, str] = {}
    with open(path, "rb") as stream:
        offset = 0
        for raw_line in stream:
            offset += len(raw_line)
            line = raw_line.decode("latin-1").rstrip("\r\n")
            if end_marker(line):
                return fields, offset
            for separator in (":=", ": ", " = ", "="):
                if separator in line:
                    key, value = line.split(separator, 1)
                    fields[key.strip().lower()] = value.strip()
                    break
            if offset > 1 << 16:
                break
    return fields, -1


def _data_problem(path: Path, offset: int, data: memoryview, wbits: Optional[int]) -> Optional[str]:
    if wbits is not None:
        return _compressed_problem(path, offset, wbits, 0, data)
    size = path.stat().st_size - offset
    if size != data.nbytes:
        return f"it holds {size} bytes of voxel data where {data.nbytes} were written"
    return None


def _vox_offset(header: bytes) -> int:
    """Where a NIfTI-1/2 header says its voxels start (0 if it is not a NIfTI header)."""
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            return int(struct.unpack(endian + "f", header[108:112])[0])
        if len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:
            return int(struct.unpack(endian + "q", header[168:176])[0])
    return 0


def nifti_problem(path: Path, data: memoryview, gzipped: bool) -> Optional[str]:
    """A written NIfTI holds its header, then exactly ``data``'s bytes of voxels."""
    if gzipped:
        header = _inflated_prefix(path, 0, GZIP_WBITS, 540)
        vox_offset = _vox_offset(header)
        if not vox_offset:
            return "it has no complete NIfTI header"
        prefix = header[:vox_offset] if vox_offset <= len(header) else \
            _inflated_prefix(path, 0, GZIP_WBITS, vox_offset)
        if len(prefix) < vox_offset:
            return "it stops inside its NIfTI header"
        return _compressed_problem(path, 0, GZIP_WBITS, vox_offset, data, prefix)
    with open(path, "rb") as stream:
        header = stream.read(540)
    vox_offset = _vox_offset(header)
    if not vox_offset:
        return "it has no complete NIfTI header"
    expected = _nifti_expected_bytes(header)
    if expected is None or expected - vox_offset != data.nbytes:
        return f"its header does not describe the {data.nbytes} bytes of voxels that were written"
    return _data_problem(path, vox_offset, data, None)


def nrrd_problem(path: Path, data: memoryview) -> Optional[str]:
    fields, offset = _text_header(path, lambda line: line == "")
    if offset < 0 or "encoding" not in fields:
        return "its NRRD header is incomplete"
    encoding = fields["encoding"].lower()
    if encoding not in ("raw", "gzip", "gz"):
        return f"its NRRD encoding {encoding!r} is not one TwinTrack writes"
    return _data_problem(path, offset, data, None if encoding == "raw" else GZIP_WBITS)


def metaimage_problem(path: Path, data: memoryview) -> Optional[str]:
    fields, offset = _text_header(path, lambda line: line.replace(" ", "").lower() == "elementdatafile=local")
    if offset < 0:
        return "its MetaImage header is incomplete"
    compressed = fields.get("compresseddata", "false").lower() == "true"
    if compressed:
        declared = int(fields.get("compresseddatasize", "-1"))
        actual = path.stat().st_size - offset
        if actual != declared:
            return f"it holds {actual} bytes of compressed data where its header declares {declared}"
    return _data_problem(path, offset, data, ZLIB_WBITS if compressed else None)


def image_file_problem(path: Path, array: np.ndarray, suffix: Optional[str] = None) -> Optional[str]:
    """What is wrong with a just-written image file of ``array``'s voxels (as written), or None.

    suffix: the format (default: from the name), for temporaries named differently."""
    suffix = suffix or image_suffix(path.name)
    data = np.ascontiguousarray(array).data.cast("B")  # the array's memoryview, as bytes
    try:
        if suffix in (".nii.gz", ".nii"):
            return nifti_problem(path, data, gzipped=suffix == ".nii.gz")
        if suffix == ".nrrd":
            return nrrd_problem(path, data)
        if suffix == ".mha":
            return metaimage_problem(path, data)
    except (OSError, ValueError) as error:
        return f"it cannot be read back ({error})"
    raise ValueError(f"no completeness check for {suffix!r} files")


def bytes_file_problem(path: Path, data: bytes) -> Optional[str]:
    """What is wrong with a just-written file that should hold exactly ``data``, or None."""
    try:
        written = path.read_bytes()
    except OSError as error:
        return f"it cannot be read back ({error.strerror or error})"
    if written != data:
        return f"it holds {len(written)} bytes where {len(data)} were written"
    return None
