"""Images in and out, geometry checks, and the case/cohort folder layout.

The one image reader and the one geometry check of TwinTrack. Arrays are in
SimpleITK's ``(z, y, x)`` order; :class:`Geometry` holds size, spacing, origin
and direction in ``(x, y, z)`` order, LPS millimetres, exactly as SimpleITK.

Case folders follow the CURVAS-PDACVI layout::

    <cohort>/<case>/image.nii.gz
                    annotation_1.nii.gz ... annotation_K.nii.gz
                    pancreas.nii.gz | roi.nii.gz     (optional region)
                    probability.nii.gz               (optional ensemble output)
                    vessels.nii.gz                   (optional labels 1..5)
"""

from __future__ import annotations

import gzip
import json
import os
import re
import struct
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import SimpleITK as sitk

from .errors import GeometryMismatchError, InputError

PathLike = Union[str, os.PathLike]

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")

# Geometry tolerances. NIfTI stores spacing, origin and direction as float32,
# so a round trip moves them by ~1e-7 relative; anything larger is a real
# difference between grids.
SPACING_RTOL = 1e-5
ORIGIN_ATOL_FRACTION_OF_SPACING = 1e-3
DIRECTION_ATOL = 1e-5


@dataclass(frozen=True)
class Geometry:
    """The voxel grid of an image: where each voxel sits in LPS space.

    size: voxels along (x, y, z); spacing: mm along (x, y, z);
    origin: LPS mm of voxel (0, 0, 0); direction: 3x3 row-major cosines.
    """

    size: Tuple[int, int, int]
    spacing: Tuple[float, float, float]
    origin: Tuple[float, float, float]
    direction: Tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", tuple(int(v) for v in self.size))
        object.__setattr__(self, "spacing", tuple(float(v) for v in self.spacing))
        object.__setattr__(self, "origin", tuple(float(v) for v in self.origin))
        object.__setattr__(self, "direction", tuple(float(v) for v in self.direction))

    @classmethod
    def from_sitk(cls, image: sitk.Image) -> "Geometry":
        return cls(image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection())

    def apply_to(self, image: sitk.Image) -> sitk.Image:
        """Stamp this geometry's spacing, origin and direction on ``image``."""
        if tuple(image.GetSize()) != self.size:
            raise ValueError(f"image size {image.GetSize()} does not match geometry size {self.size}")
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    @property
    def shape(self) -> Tuple[int, int, int]:
        """Array shape in (z, y, x) order."""
        return tuple(reversed(self.size))

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres (cm³)."""
        return float(np.prod(self.spacing)) / 1000.0

    @property
    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    def index_to_physical_matrix(self) -> np.ndarray:
        """4x4 matrix mapping (i, j, k, 1) voxel indices (x, y, z order) to LPS mm."""
        matrix = np.eye(4)
        matrix[:3, :3] = self.direction_matrix @ np.diag(self.spacing)
        matrix[:3, 3] = self.origin
        return matrix

    def differences(self, other: "Geometry") -> List[str]:
        """Human-readable list of what differs between two grids (empty if same)."""
        problems = []
        if self.size != other.size:
            problems.append(f"size {fmt(other.size)} instead of {fmt(self.size)}")
        if not np.allclose(other.spacing, self.spacing, rtol=SPACING_RTOL, atol=0):
            problems.append(f"spacing {fmt(other.spacing)} mm instead of {fmt(self.spacing)} mm")
        origin_atol = ORIGIN_ATOL_FRACTION_OF_SPACING * min(self.spacing)
        if not np.allclose(other.origin, self.origin, rtol=0, atol=origin_atol):
            problems.append(f"origin {fmt(other.origin)} mm instead of {fmt(self.origin)} mm")
        if not np.allclose(other.direction, self.direction, rtol=0, atol=DIRECTION_ATOL):
            problems.append(f"direction {fmt(other.direction)} instead of {fmt(self.direction)}")
        return problems


def fmt(values: Iterable[float]) -> str:
    """Compact rendering of a tuple of numbers for messages."""
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"


@dataclass
class Volume:
    """A 3D array in (z, y, x) order with its geometry and, if read, its source."""

    array: np.ndarray
    geometry: Geometry
    path: Optional[Path] = None

    def to_sitk(self) -> sitk.Image:
        image = sitk.GetImageFromArray(self.array)
        return self.geometry.apply_to(image)


def check_geometry(reference: Geometry, other: Geometry, other_path: PathLike,
                   reference_path: Optional[PathLike] = None) -> None:
    """Refuse ``other`` unless it lies on exactly the reference voxel grid."""
    problems = reference.differences(other)
    if problems:
        against = f" the image {reference_path}" if reference_path else " the reference image"
        raise GeometryMismatchError(
            f"{other_path} does not lie on the same voxel grid as{against}: "
            + "; ".join(problems)
            + ". Resample it onto the image's grid (for example with 3D Slicer's "
            "'Resample Scalar/Vector/DWI Volume' or SimpleITK's Resample) and try again."
        )


def _is_dicom_folder(path: Path) -> bool:
    return path.is_dir() and bool(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path)))


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


def _check_nifti_complete(path: Path) -> None:
    """Refuse a truncated or corrupted NIfTI file.

    ITK reads a truncated NIfTI without complaint and fills the missing voxels
    with zeros, which would silently turn into "no tumour"; so the length (and,
    for .nii.gz, the gzip CRC) is checked here before reading.
    """
    problem = None
    with open(path, "rb") as stream:
        if path.name.endswith(".nii.gz") and stream.read(2) != b"\x1f\x8b":
            return  # not gzip at all: the reader's own error says it is not an image
    try:
        if path.name.endswith(".nii.gz"):
            with gzip.open(path, "rb") as stream:
                header = stream.read(540)
                expected = _nifti_expected_bytes(header)
                total = len(header)
                while True:  # reads to the end, so gzip also checks the CRC and length
                    block = stream.read(1 << 22)
                    if not block:
                        break
                    total += len(block)
        else:
            with open(path, "rb") as stream:
                header = stream.read(540)
            expected = _nifti_expected_bytes(header)
            total = path.stat().st_size
        if expected is not None and total < expected:
            problem = f"it holds {total} bytes but its header describes {expected}"
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as error:
        problem = f"its compressed data is incomplete or corrupted ({error})"
    if problem:
        raise InputError(
            f"{path} is truncated or corrupted: {problem}. The file was probably cut off while "
            "copying or writing; copy or export it again."
        )


# Working set of a TwinTrack job per input voxel: the CT as float32, the raw and
# calibrated probability maps, masks and resampling temporaries.
WORKING_BYTES_PER_VOXEL = 32


def memory_budget_bytes() -> int:
    """Memory a job may plan to use: TWINTRACK_MEMORY_BUDGET_MB if set, else 80 % of
    what the system reports available (Linux /proc/meminfo; 8 GiB if unknown)."""
    configured = os.environ.get("TWINTRACK_MEMORY_BUDGET_MB")
    if configured:
        return int(float(configured) * 1024 * 1024)
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(int(line.split()[1]) * 1024 * 0.8)
    except OSError:
        pass
    return 8 << 30


def _check_shape(path: Path, size: Sequence[int], components: int) -> None:
    """Refuse anything but a 3D scalar volume, and volumes too large for memory."""
    if len(size) != 3 or components != 1:
        dims = "x".join(str(s) for s in size)
        raise InputError(
            f"{path} is a {len(size)}D image ({dims}, {components} component(s) per voxel); "
            "TwinTrack needs a 3D scalar volume. Export a single 3D volume (one time point, "
            "one channel) and try again."
        )
    needed = int(np.prod(size, dtype=np.int64)) * WORKING_BYTES_PER_VOXEL
    budget = memory_budget_bytes()
    if needed > budget:
        raise InputError(
            f"{path} is too large to process here: {fmt(size)} voxels need about "
            f"{needed / 2**30:.1f} GiB of working memory, and {budget / 2**30:.1f} GiB are available. "
            "Crop or downsample the volume (for example to the abdomen), or run on a machine with "
            "more memory (TWINTRACK_MEMORY_BUDGET_MB sets the budget)."
        )


def _existing(path: PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist. Check the path and try again.")
    return path


def _unreadable(path: Path, error: RuntimeError) -> InputError:
    """An ITK read error, as a message that names the file and what to pass instead."""
    last_line = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown error"
    return InputError(
        f"{path} could not be read as an image ({last_line}). "
        f"Pass a NIfTI, NRRD or MHA file, or a DICOM series folder."
    )


def _read_header(path: Path) -> sitk.ImageFileReader:
    """A reader of the image file ``path`` with its header read and checked; no voxel read yet."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    _check_shape(path, reader.GetSize(), reader.GetNumberOfComponents())
    return reader


def read_sitk(path: PathLike) -> sitk.Image:
    """Read a 3D image file (NIfTI, NRRD, MHA) or a DICOM series folder.

    The header is checked first (3D, scalar, fits the memory budget), so a wrong
    or huge file is refused before any voxel is read.
    """
    path = _existing(path)
    try:
        if path.is_dir():
            series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path))
            if not series:
                raise InputError(
                    f"{path} is a folder without a DICOM series. Pass an image file "
                    f"({', '.join(IMAGE_SUFFIXES)}) or a folder holding one DICOM series."
                )
            if len(series) > 1:
                raise InputError(
                    f"{path} holds {len(series)} DICOM series; TwinTrack needs exactly one. "
                    "Move each series into its own folder."
                )
            files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path), series[0])
            header = sitk.ImageFileReader()
            header.SetFileName(files[0])
            header.ReadImageInformation()
            _check_shape(path, (*header.GetSize()[:2], len(files)), header.GetNumberOfComponents())
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(files)
            return reader.Execute()
        if path.name.endswith((".nii", ".nii.gz")):
            _check_nifti_complete(path)
        return _read_header(path).Execute()
    except RuntimeError as error:
        raise _unreadable(path, error) from None


def read_geometry(path: PathLike) -> Geometry:
    """The voxel grid of an image file from its header alone, checked as by :func:`read_sitk`.

    For when only the grid is needed (the CT of a case being calibrated or
    evaluated): no voxel is read. A DICOM folder's grid needs all its slices,
    so it is read whole.
    """
    path = _existing(path)
    if path.is_dir():
        return Geometry.from_sitk(read_sitk(path))
    try:
        reader = _read_header(path)
    except RuntimeError as error:
        raise _unreadable(path, error) from None
    return Geometry(reader.GetSize(), reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection())


def read_image(path: PathLike, dtype=None) -> Volume:
    """Read a 3D scalar image into a :class:`Volume` (array in z, y, x order)."""
    image = read_sitk(path)
    array = sitk.GetArrayFromImage(image)
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    return Volume(array, Geometry.from_sitk(image), Path(path))


def read_on_grid(path: PathLike, reference: Geometry, reference_path: Optional[PathLike] = None,
                 dtype=None) -> np.ndarray:
    """Read an image that must lie on ``reference``'s grid; return its array."""
    volume = read_image(path, dtype=dtype)
    check_geometry(reference, volume.geometry, path, reference_path)
    return volume.array


def read_mask(path: PathLike, reference: Geometry, reference_path: Optional[PathLike] = None) -> np.ndarray:
    """Read a binary mask (values 0 and 1 only) on the reference grid, as bool."""
    array = read_on_grid(path, reference, reference_path)
    # Two comparisons are ten times faster than np.unique's sort, which only the message needs.
    if not ((array == 0) | (array == 1)).all():
        values = np.unique(array)
        shown = ", ".join(f"{v:g}" for v in values[:8]) + (" ..." if len(values) > 8 else "")
        raise InputError(
            f"{path} should be a binary mask (0 = background, 1 = tumour) but holds the values {shown}. "
            "If it is a label map, extract the tumour label into its own 0/1 mask first."
        )
    return array.astype(bool)


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


def rater_counts(masks: Sequence[np.ndarray]) -> np.ndarray:
    """How many of the K rater masks mark each voxel (uint8, uint16 from 256 raters)."""
    if len(masks) == 0:
        raise InputError("No annotations were given; the MHR needs at least one rater mask.")
    counts = np.zeros(masks[0].shape, dtype=np.uint8 if len(masks) < 256 else np.uint16)
    for mask in masks:
        counts += mask.astype(bool)
    return counts


def mhr_from_masks(masks: Sequence[np.ndarray]) -> np.ndarray:
    """Mean human response: the fraction of the K rater masks that mark each voxel.

    Values are exactly in {0, 1/K, ..., 1} (float32). Memory: one uint8 count map.
    """
    return rater_counts(masks).astype(np.float32) / np.float32(len(masks))


# --- case / cohort layout -------------------------------------------------

ANNOTATION_PATTERN = re.compile(r"^annotation_(\d+)\.(nii\.gz|nii|nrrd|mha)$")


def _find_file(folder: Path, stem: str) -> Optional[Path]:
    for suffix in IMAGE_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.exists():
            return candidate
    return None


@dataclass
class Case:
    """The files of one case folder (CURVAS-PDACVI layout)."""

    folder: Path
    image: Path
    annotations: List[Path] = field(default_factory=list)
    pancreas: Optional[Path] = None
    roi: Optional[Path] = None
    vessels: Optional[Path] = None

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def raters(self) -> int:
        return len(self.annotations)

    def file(self, stem_or_name: str) -> Optional[Path]:
        """A file of this case by name (``probability.nii.gz``) or stem (``probability``)."""
        direct = self.folder / stem_or_name
        if direct.is_file():
            return direct
        return _find_file(self.folder, stem_or_name)

    @classmethod
    def from_folder(cls, folder: PathLike) -> "Case":
        folder = Path(folder)
        if not folder.is_dir():
            raise InputError(f"{folder} is not a folder. A case is a folder holding image.nii.gz and annotations.")
        image = _find_file(folder, "image")
        if image is None:
            raise InputError(
                f"{folder} has no image file (image.nii.gz, .nii, .nrrd or .mha). "
                "Each case folder needs its CT as image.nii.gz."
            )
        numbered = []
        for entry in folder.iterdir():
            match = ANNOTATION_PATTERN.match(entry.name)
            if match:
                numbered.append((int(match.group(1)), entry))
        numbered.sort()
        return cls(
            folder=folder,
            image=image,
            annotations=[p for _, p in numbered],
            pancreas=_find_file(folder, "pancreas"),
            roi=_find_file(folder, "roi"),
            vessels=_find_file(folder, "vessels"),
        )

    def read_annotations(self, reference: Geometry) -> List[np.ndarray]:
        """All rater masks as bool arrays, each checked against the image grid."""
        return [read_mask(path, reference, self.image) for path in self.annotations]


def find_cases(cohort: PathLike) -> List[Case]:
    """Every case folder (a sub-folder with an image file) of a cohort, sorted by name."""
    cohort = Path(cohort)
    if not cohort.is_dir():
        raise InputError(f"{cohort} is not a folder. A cohort is a folder of case folders.")
    cases = [Case.from_folder(entry) for entry in sorted(cohort.iterdir())
             if entry.is_dir() and _find_file(entry, "image") is not None]
    if not cases:
        raise InputError(
            f"{cohort} holds no case folders. Each case is a sub-folder with image.nii.gz and "
            "annotation_1.nii.gz ... annotation_K.nii.gz (run `twintrack phantom --out DIR` for an example)."
        )
    return cases
