"""Resampling between the CT grid and a network's working grid.

A stage works on a grid with the stage's spacing, the CT's origin and the
CT's direction: only the voxel size changes, so the network sees the array in
the CT's own (z, y, x) axis order, as nnU-Net does. CT intensities and
probabilities are interpolated linearly; values outside the source grid are 0.
"""

from __future__ import annotations

from typing import Sequence, Tuple, cast

import numpy as np
import SimpleITK as sitk

from ..io import Geometry

# Spacings closer than this (relative) are treated as equal, so the common
# case of a network trained at the CT's spacing skips interpolation entirely.
SAME_SPACING_RTOL = 1e-4


def working_geometry(geometry: Geometry, spacing_mm: Sequence[float]) -> Geometry:
    """The grid covering ``geometry``'s extent at ``spacing_mm`` (x, y, z)."""
    size = tuple(max(1, int(round(n * s / t))) for n, s, t in zip(geometry.size, geometry.spacing, spacing_mm))
    # Geometry makes tuples of both (three values each: x, y, z).
    return Geometry(cast(Tuple[int, int, int], size), cast(Tuple[float, float, float], spacing_mm),
                    geometry.origin, geometry.direction)


def same_grid(a: Geometry, b: Geometry) -> bool:
    return not a.differences(b)


def resample(image: sitk.Image, target: Geometry, interpolator=sitk.sitkLinear) -> sitk.Image:
    """``image`` interpolated onto ``target`` as float32 (0 outside the source)."""
    source = Geometry.from_sitk(image)
    if same_grid(source, target):
        return sitk.Cast(image, sitk.sitkFloat32)
    return sitk.Resample(image, target.size, sitk.Transform(), interpolator, target.origin,
                         target.spacing, target.direction, 0.0, sitk.sitkFloat32)


def to_spacing(image: sitk.Image, spacing_mm: Sequence[float]) -> sitk.Image:
    """``image`` (a CT in HU) on its working grid at ``spacing_mm`` (x, y, z)."""
    source = Geometry.from_sitk(image)
    if np.allclose(source.spacing, spacing_mm, rtol=SAME_SPACING_RTOL, atol=0):
        return sitk.Cast(image, sitk.sitkFloat32)
    return resample_ct(image, working_geometry(source, spacing_mm))


def resample_ct(image: sitk.Image, target: Geometry) -> sitk.Image:
    """CT onto ``target``; outside the source it takes the source's minimum (air), not 0 HU."""
    source = Geometry.from_sitk(image)
    if same_grid(source, target):
        return sitk.Cast(image, sitk.sitkFloat32)
    statistics = sitk.MinimumMaximumImageFilter()
    statistics.Execute(image)
    return sitk.Resample(image, target.size, sitk.Transform(), sitk.sitkLinear, target.origin,
                         target.spacing, target.direction, statistics.GetMinimum(), sitk.sitkFloat32)
