"""The voxel grid of an image and the one geometry check.

:class:`Geometry` holds size, spacing, origin and direction in ``(x, y, z)``
order, LPS millimetres, exactly as SimpleITK; arrays are ``(z, y, x)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Tuple, Union

import numpy as np
import SimpleITK as sitk

from ..errors import GeometryMismatchError, InputError

PathLike = Union[str, os.PathLike]

# Geometry tolerances. NIfTI stores spacing, origin and direction as float32,
# so a round trip moves them by ~1e-7 relative; anything larger is a real
# difference between grids.
SPACING_RTOL = 1e-5
ORIGIN_ATOL_FRACTION_OF_SPACING = 1e-3
DIRECTION_ATOL = 1e-5
# An input's direction must be orthonormal to this tolerance (|D D^T - I|, |det D| - 1): DICOM
# orientations written with 6 decimals are off by about 1e-6; a skew or scale is far larger.
ORTHONORMAL_ATOL = 1e-3


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
        x, y, z = self.size
        return (z, y, x)

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



def check_grid(path: PathLike, spacing, origin, direction) -> None:
    """Refuse a header whose grid cannot be kept exactly: spacing not positive and finite, origin
    not finite, or a direction that is not a rotation (skewed, scaled or degenerate axes).

    Outputs are written with an orthonormal direction (NIfTI can hold nothing else), so an input
    with skewed axes would get results that no longer lie on its own voxels.
    """
    spacing, origin = np.asarray(spacing, float), np.asarray(origin, float)
    if not (np.all(np.isfinite(spacing)) and np.all(spacing > 0)):
        raise InputError(f"{path} has the voxel spacing {fmt(spacing)} mm; every spacing must be a positive "
                         "number. Fix the image header or export the image again.")
    if not np.all(np.isfinite(origin)):
        raise InputError(f"{path} has the origin {fmt(origin)}, which is not a point in space. Fix the image "
                         "header or export the image again.")
    matrix = np.asarray(direction, float).reshape(3, 3)
    if (not np.all(np.isfinite(matrix))
            or np.abs(matrix @ matrix.T - np.eye(3)).max() > ORTHONORMAL_ATOL
            or abs(abs(np.linalg.det(matrix)) - 1.0) > ORTHONORMAL_ATOL):
        raise InputError(
            f"{path} has a direction matrix {fmt(matrix.ravel())} whose axes are not orthonormal (skewed, "
            "scaled or degenerate). TwinTrack's outputs would then not lie on this image's voxels. Resample "
            "the image onto an orthonormal grid (for example with 3D Slicer's 'Resample Scalar Volume' or "
            "SimpleITK's Resample) and try again.")
