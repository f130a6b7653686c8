"""nnU-Net v2's array resampling (``resample_data_or_seg_to_shape``), in scipy alone.

nnU-Net resamples arrays, not physical images: the new shape is
``round(old_spacing / new_spacing * old_shape)`` per axis and the new grid is
stretched edge to edge over the old one (so its spacing is only close to the
target, and its first voxel is not at the CT's origin). Per axis the output
index j samples input coordinate ``(old / new) * (j + 0.5) - 0.5``.

- Without separate z: a spline of ``order`` (``scipy.ndimage.zoom`` with
  ``grid_mode=True, mode='nearest'``, which is what ``skimage.transform.resize``
  with ``mode='edge', anti_aliasing=False`` calls) computed in float64, then
  clipped to the input's [min, max].
- Separate z, when the current or the target spacing is more anisotropic than
  ``anisotropy_threshold`` and exactly one axis is the coarse one: each slice
  across that axis is resized in-plane as above (clipped per slice), then the
  coarse axis is interpolated with ``order_z`` (0: nearest neighbour).

Arrays are (z, y, x); spacings are (z, y, x) mm. Results are stored in
``dtype`` (nnU-Net stores into the input's dtype: float32 for the CT,
float16 for its logits).
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
from scipy import ndimage

ANISOTROPY_THRESHOLD = 3.0  # nnunetv2.configuration.ANISO_THRESHOLD


def new_shape(shape: Sequence[int], spacing: Sequence[float], target: Sequence[float]) -> Tuple[int, ...]:
    """nnU-Net's working shape for ``shape`` at ``spacing`` resampled to ``target`` (all z, y, x)."""
    return tuple(int(round(s / t * n)) for n, s, t in zip(shape, spacing, target))


def _coarse_axis(spacing: Sequence[float]) -> Optional[int]:
    """The single axis with the largest spacing, or None when two or three share it."""
    values = np.asarray(spacing, dtype=float)
    coarse = np.where(values.max() / values == 1)[0]
    return int(coarse[0]) if len(coarse) == 1 else None


def separate_z_axis(current: Sequence[float], target: Sequence[float], force_separate_z: Optional[bool],
                    threshold: float = ANISOTROPY_THRESHOLD) -> Optional[int]:
    """The axis resampled on its own (nnU-Net's ``determine_do_sep_z_and_axis``), or None."""
    def anisotropic(spacing):
        return float(np.max(spacing) / np.min(spacing)) > threshold

    if force_separate_z is not None:
        return _coarse_axis(current) if force_separate_z else None
    if anisotropic(current):
        return _coarse_axis(current)
    if anisotropic(target):
        return _coarse_axis(target)
    return None


def resize(array: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """``skimage.transform.resize(array, shape, order, mode='edge', anti_aliasing=False)``, float64."""
    values = np.asarray(array, dtype=np.float64)
    zoom = [n / o for n, o in zip(shape, values.shape)]
    result = ndimage.zoom(values, zoom, order=order, mode="nearest", grid_mode=True)
    if result.shape != tuple(shape):  # zoom rounds shape * factor; guard against a last-bit miss
        raise AssertionError(f"zoom gave {result.shape}, expected {tuple(shape)}")
    np.clip(result, values.min(), values.max(), out=result)
    return result


def _along_axis(array: np.ndarray, axis: int, size: int, order: int) -> np.ndarray:
    """Interpolate ``array`` (float64) along ``axis`` to ``size`` samples, edge-aligned, mode nearest."""
    old = array.shape[axis]
    coordinates = old / size * (np.arange(size) + 0.5) - 0.5
    if order == 0:
        # map_coordinates' own rounding, taken on the axis alone (order 0 is separable exactly).
        index = ndimage.map_coordinates(np.arange(old, dtype=np.float64), [coordinates], order=0, mode="nearest")
        return np.take(array, index.astype(np.intp), axis=axis)
    grid = np.meshgrid(*[np.arange(n, dtype=np.float64) if a != axis else coordinates
                         for a, n in enumerate(array.shape)], indexing="ij")
    return ndimage.map_coordinates(array, np.array(grid), order=order, mode="nearest")


def resample_to_shape(array: np.ndarray, shape: Sequence[int], current: Sequence[float],
                      target: Sequence[float], order: int, order_z: int,
                      force_separate_z: Optional[bool] = None, threshold: float = ANISOTROPY_THRESHOLD,
                      dtype=None) -> np.ndarray:
    """``array`` (z, y, x) resampled to ``shape`` as nnU-Net does; stored as ``dtype`` (default: the input's)."""
    dtype = array.dtype if dtype is None else np.dtype(dtype)
    shape = tuple(int(n) for n in shape)
    if tuple(array.shape) == shape:
        return array.astype(dtype, copy=False)
    axis = separate_z_axis(current, target, force_separate_z, threshold)
    if axis is None:
        return resize(array, shape, order).astype(dtype)
    in_plane = tuple(n for a, n in enumerate(shape) if a != axis)
    slices = np.empty(tuple(shape[a] if a != axis else array.shape[a] for a in range(3)), dtype=np.float64)
    for k in range(array.shape[axis]):
        index: List[Union[slice, int]] = [slice(None)] * 3
        index[axis] = k
        slices[tuple(index)] = resize(array[tuple(index)], in_plane, order)
    if slices.shape[axis] != shape[axis]:
        slices = _along_axis(slices, axis, shape[axis], order_z)
    return slices.astype(dtype)
