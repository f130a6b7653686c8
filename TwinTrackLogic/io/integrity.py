"""Does an image file hold what its header promises? Checked before a voxel is read.

ITK reads a short Analyze ``.img`` (and a short NIfTI) zero-filled without a word, and reports a
short NRRD or MetaImage in words meant for its developers. So every image file the reader
accepts is checked here against its own header first, and a format whose completeness cannot be
checked is refused:

- NIfTI ``.nii`` / ``.nii.gz`` and the Analyze / NIfTI ``.hdr`` + ``.img`` pair (:mod:`.nifti`);
- NRRD ``.nrrd`` and the detached ``.nhdr`` + data file: raw or gzip encoding; the data holds
  the header's ``sizes`` times the type's bytes (after ``byte skip``);
- MetaImage ``.mha`` and ``.mhd`` + data file: raw or zlib/gzip ``CompressedData``.

A compressed stream is inflated to its end (so its check value is verified) but never past the
bytes its header describes plus :data:`.nifti.EXCESS_BYTES` (a gzip bomb stops there).
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Dict, Optional, Tuple

import SimpleITK as sitk

from ..errors import InputError
from .nifti import EXCESS_BYTES, check_nifti_complete, check_pair_complete

HEADER_LIMIT = 1 << 16  # bytes of text header read at most
AUTO_WBITS = 47  # zlib or gzip wrapper, detected from the stream
READABLE_FORMATS = "NIfTI (.nii, .nii.gz, .hdr/.img), NRRD (.nrrd, .nhdr) or MetaImage (.mha, .mhd)"


def _convert_hint() -> str:
    return ("Convert it to .nii.gz (in 3D Slicer: load it, then Save as .nii.gz) or pass a DICOM "
            "series folder.")


def _text_fields(path: Path, separator: str, stop_at_blank: bool) -> Tuple[Dict[str, str], int]:
    """``key<separator>value`` lines of a text header (keys lower case) and where the data starts
    (the end of the file for a detached header)."""
    fields: Dict[str, str] = {}
    offset = 0
    with open(path, "rb") as stream:
        for raw_line in stream:
            offset += len(raw_line)
            line = raw_line.decode("latin-1").rstrip("\r\n")
            if stop_at_blank and line == "" and offset > 1:
                return fields, offset
            if separator in line and not line.startswith("#"):
                key, value = line.split(separator, 1)
                fields[key.strip().lower()] = value.strip()
                if separator == "=" and key.strip().lower() == "elementdatafile":
                    return fields, offset  # MetaImage: the data follows this line
            if offset > HEADER_LIMIT:
                break
    return fields, offset


def _inflated_length(path: Path, offset: int, limit: int) -> Tuple[int, Optional[str]]:
    """Bytes the compressed stream at ``offset`` inflates to (at most ``limit`` + a block) and what
    is wrong with it (None: it ends properly and its check value matches)."""
    inflater = zlib.decompressobj(AUTO_WBITS)
    total = 0
    try:
        with open(path, "rb") as stream:
            stream.seek(offset)
            while not inflater.eof:
                block = stream.read(1 << 20)
                if not block:
                    return total, "its compressed data stops before its end"
                while block and not inflater.eof:
                    total += len(inflater.decompress(block, 1 << 24))
                    block = inflater.unconsumed_tail
                    if total > limit:
                        return total, f"it decompresses to more than the {limit - EXCESS_BYTES} bytes its header describes"
    except zlib.error as error:
        return total, f"its compressed data is corrupted ({error})"
    return total, None


def _data_problem(data_path: Path, offset: int, expected: int, compressed: bool) -> Optional[str]:
    if offset < 0:  # "the data is the last bytes of the file"
        size = data_path.stat().st_size
        return None if size >= expected else f"it holds {size} bytes where its header describes {expected} of voxels"
    if compressed:
        total, problem = _inflated_length(data_path, offset, expected + EXCESS_BYTES)
        if problem:
            return problem
    else:
        total = data_path.stat().st_size - offset
    if total < expected:
        return f"it holds {max(total, 0)} bytes of voxels where its header describes {expected}"
    return None


def _voxel_bytes(reader: sitk.ImageFileReader) -> int:
    """Bytes of voxel data the header describes, from ITK's reading of it."""
    size = [int(s) for s in reader.GetSize()]
    components = int(reader.GetNumberOfComponents())
    pixel = sitk.Image([1] * len(size), reader.GetPixelID(), components)
    count = 1
    for extent in size:
        count *= extent
    return count * components * int(pixel.GetSizeOfPixelComponent())


def _integer(fields: Dict[str, str], key: str, header: Path, default: int) -> int:
    text = fields.get(key)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise InputError(f"{header}: its header field {key!r} is {text!r}, not a whole number. "
                         f"{_convert_hint()}") from None


def _single_data_file(header: Path, name: Optional[str], what: str) -> Optional[Path]:
    """The detached data file a header names (None: the data follows the header)."""
    if name is None or name.upper() == "LOCAL":
        return None
    if name.upper().startswith("LIST") or "%" in name or len(name.split()) > 1:
        raise InputError(f"{header}: its {what} spreads the voxels over several files ({name!r}), whose "
                         f"completeness TwinTrack does not check. {_convert_hint()}")
    data = header.parent / name
    if not data.is_file():
        raise InputError(f"{header} names its voxel file {name!r}, which is missing next to it. Copy the "
                         "header and its data file together (or convert them to one .nii.gz).")
    return data


def check_nrrd_complete(path: Path, reader: sitk.ImageFileReader) -> None:
    fields, offset = _text_fields(path, ":", stop_at_blank=True)
    encoding = fields.get("encoding", "raw").lower()
    if encoding not in ("raw", "gzip", "gz"):
        raise InputError(f"{path} is a NRRD with {encoding!r} encoding, whose completeness TwinTrack does not "
                         f"check (it reads raw and gzip NRRD). {_convert_hint()}")
    if _integer(fields, "line skip", path, 0) or _integer(fields, "lineskip", path, 0):
        raise InputError(f"{path}: its 'line skip' puts text before the voxels, which TwinTrack does not check. "
                         f"{_convert_hint()}")
    data_path = _single_data_file(path, fields.get("data file", fields.get("datafile")), "'data file'")
    skip = _integer(fields, "byte skip", path, _integer(fields, "byteskip", path, 0))
    start = (0 if data_path is not None else offset) + skip if skip >= 0 else -1
    problem = _data_problem(data_path or path, start, _voxel_bytes(reader), encoding != "raw")
    if problem:
        raise _truncated(data_path or path, problem)


def check_metaimage_complete(path: Path, reader: sitk.ImageFileReader) -> None:
    fields, offset = _text_fields(path, "=", stop_at_blank=False)
    data_path = _single_data_file(path, fields.get("elementdatafile"), "ElementDataFile")
    compressed = fields.get("compresseddata", "false").lower() == "true"
    header_size = _integer(fields, "headersize", path, 0)
    start = (0 if data_path is not None else offset) + header_size if header_size >= 0 else -1
    problem = _data_problem(data_path or path, start, _voxel_bytes(reader), compressed)
    if problem:
        raise _truncated(data_path or path, problem)


def _truncated(path: Path, problem: str) -> InputError:
    return InputError(f"{path} is truncated or corrupted: {problem}. The file was probably cut off while "
                      "copying or writing; copy or export it again.")


def image_io(path: Path) -> str:
    """ITK's name for the reader of ``path`` ("NiftiImageIO", ...; "" when none can read it)."""
    try:
        return sitk.ImageFileReader.GetImageIOFromFileName(str(path))
    except RuntimeError:
        return ""


def check_image_complete(path: Path, reader: sitk.ImageFileReader) -> None:
    """Refuse ``path`` (its header already read by ``reader``) unless its voxels are all there, or
    when it is in a format whose completeness TwinTrack cannot check."""
    io_name = reader.GetImageIO() or image_io(path)
    lower = path.name.lower()
    if io_name == "NiftiImageIO":
        if lower.endswith((".hdr", ".img", ".hdr.gz", ".img.gz")):
            check_pair_complete(path)
        else:
            check_nifti_complete(path)
    elif io_name == "NrrdImageIO":
        check_nrrd_complete(path, reader)
    elif io_name == "MetaImageIO":
        check_metaimage_complete(path, reader)
    else:
        kind = f"a {io_name.replace('ImageIO', '')} image file" if io_name else "in no image format TwinTrack knows"
        raise InputError(f"{path} is {kind}; TwinTrack reads {READABLE_FORMATS} "
                         f"files, whose completeness it checks before trusting them, and DICOM series folders. "
                         f"{_convert_hint()}")
