"""The one image reader: NIfTI, NRRD, MHA and DICOM series folders, header checked first."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from .budget import check_shape
from .dicom_series import check_series, read_series
from .finite import check_finite
from .geometry import Geometry, PathLike, Volume, check_geometry, check_grid
from .integrity import check_image_complete

# The one list of image suffixes TwinTrack reads, matched case-insensitively (IMAGE.NII.GZ is a NIfTI).
# Longest first, so that "x.nii.gz" is a ".nii.gz" and not a ".gz".
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
NIFTI_SUFFIXES = (".nii.gz", ".nii")


def image_suffix(name: str) -> Optional[str]:
    """The image suffix of a file name, lower case (``"CT.NII.GZ"`` -> ``".nii.gz"``), or None."""
    lower = name.lower()
    return next((suffix for suffix in IMAGE_SUFFIXES if lower.endswith(suffix) and len(lower) > len(suffix)),
                None)


def image_stem(name: str) -> Optional[str]:
    """The name without its image suffix, lower case (``"Annotation_1.nrrd"`` -> ``"annotation_1"``), or None."""
    suffix = image_suffix(name)
    return None if suffix is None else name[: -len(suffix)].lower()


def is_nifti(path: PathLike) -> bool:
    return image_suffix(Path(path).name) in NIFTI_SUFFIXES


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


def _read_header(path: Path, complete: bool = True) -> sitk.ImageFileReader:
    """A reader of the image file ``path`` with its header read and checked; no voxel read yet.

    Only the header is read (a .nii.gz is inflated just far enough for it), so a file that
    claims 4000^3 voxels is refused here, before anything is decompressed; a NIfTI is then
    checked to be complete (``complete``: :mod:`.integrity`, every format the reader accepts),
    reading no more than its header says it holds.
    """
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    check_shape(path, reader.GetSize(), reader.GetNumberOfComponents())
    check_grid(path, reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection())
    if complete:
        check_image_complete(path, reader)
    return reader


def read_sitk(path: PathLike, series_uid: Optional[str] = None) -> sitk.Image:
    """Read a 3D image file (NIfTI, NRRD, MHA) or a DICOM series folder.

    A folder is checked slice by slice first (:func:`.dicom_series.check_series`: one series, or
    the one ``series_uid`` names; no missing, duplicated or tilted slice) and read onto exactly
    the grid its headers state.

    The header is checked first (3D, scalar, fits the memory budget), so a wrong
    or huge file is refused before any voxel is read.
    """
    path = _existing(path)
    try:
        if path.is_dir():
            series = check_series(path, series_uid)
            check_shape(path, series.geometry.size, 1)
            geometry = series.geometry
            check_grid(path, geometry.spacing, geometry.origin, geometry.direction)
            return read_series(series)
        return _read_header(path).Execute()
    except RuntimeError as error:
        raise _unreadable(path, error) from None


def read_geometry(path: PathLike) -> Geometry:
    """The voxel grid of an image file from its header alone, checked as by :func:`read_sitk`.

    For when only the grid is needed (the CT of a case being calibrated or
    evaluated): no voxel is read, also for a DICOM folder (its headers define the grid).
    """
    path = _existing(path)
    if path.is_dir():
        return check_series(path).geometry
    try:
        reader = _read_header(path, complete=False)
    except RuntimeError as error:
        raise _unreadable(path, error) from None
    return Geometry(reader.GetSize(), reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection())


def read_image(path: PathLike, dtype=None, series_uid: Optional[str] = None) -> Volume:
    """Read a 3D scalar image into a :class:`Volume` (array in z, y, x order)."""
    image = read_sitk(path, series_uid)
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
    check_finite(array, path, "A mask holds 0 (background) and 1 (tumour or organ) only; fix the export.")
    # Two comparisons are ten times faster than np.unique's sort, which only the message needs.
    if not ((array == 0) | (array == 1)).all():
        values = np.unique(array)
        shown = ", ".join(f"{v:g}" for v in values[:8]) + (" ..." if len(values) > 8 else "")
        raise InputError(
            f"{path} should be a binary mask (0 = background, 1 = tumour) but holds the values {shown}. "
            "If it is a label map, extract the tumour label into its own 0/1 mask first."
        )
    return array.astype(bool)

