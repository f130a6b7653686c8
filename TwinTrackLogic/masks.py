"""Mask operations in millimetres: dilation and padded bounding boxes.

Shared by the calibration region (cohort.py) and the inference region
(inference/ensemble.py), so both grow a mask the same way. Arrays are
(z, y, x); distances are physical, so anisotropic spacing is respected.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
from scipy import ndimage

from .io import Geometry


def bounding_box(mask: np.ndarray, padding: Sequence[int]) -> Tuple[slice, ...]:
    """Slices of the bounding box of a non-empty ``mask``, padded per axis (voxels), clamped."""
    slices = ndimage.find_objects(mask.astype(np.uint8))[0]
    return tuple(slice(max(s.start - p, 0), min(s.stop + p, n))
                 for s, p, n in zip(slices, padding, mask.shape))


def dilate_mm(mask: np.ndarray, geometry: Geometry, distance_mm: float) -> np.ndarray:
    """Every voxel within ``distance_mm`` (Euclidean, physical) of a non-empty ``mask``."""
    if distance_mm <= 0:
        return mask
    spacing_zyx = tuple(reversed(geometry.spacing))
    # Only the box around the mask plus the reach can change: work there.
    reach = [int(np.ceil(distance_mm / s)) + 1 for s in spacing_zyx]
    box = bounding_box(mask, reach)
    distance = ndimage.distance_transform_edt(~mask[box], sampling=spacing_zyx)
    dilated = np.zeros_like(mask)
    dilated[box] = distance <= distance_mm
    return dilated
