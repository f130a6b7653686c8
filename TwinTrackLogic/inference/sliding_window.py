"""Sliding-window inference with Gaussian importance weighting and mirroring.

Arrays are (z, y, x). A *predictor* maps a batch of patches ``(B, 1, pz, py, px)``
(float32, normalised) to one probability channel ``(B, pz, py, px)``, or to several
``(B, C, pz, py, px)`` (a multi-label stage; the result is then ``(C, z, y, x)``). Windows
overlap by ``overlap`` of the patch; each prediction is weighted by an
importance map that is largest at the patch centre (a Gaussian with sigma =
``sigma_scale`` x patch size per axis, as nnU-Net), and the result is the
weighted mean of all windows covering a voxel.

The importance map is a product of three 1D Gaussians and the windows form a
grid, so the summed weight at every voxel is the outer product of three 1D
sums: no 3D weight buffer is accumulated. One output buffer is allocated per
call; the batch buffer is allocated once and reused.
"""

from __future__ import annotations

import itertools
import math
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from ..progress import CancelToken, ProgressCallback, no_progress

Predictor = Callable[[np.ndarray], np.ndarray]


def importance_factors(patch_size: Sequence[int], importance: str = "gaussian",
                       sigma_scale: float = 0.125) -> List[np.ndarray]:
    """Per-axis 1D weights (float64) whose outer product is the importance map."""
    factors = []
    for length in patch_size:
        if importance == "constant":
            factors.append(np.ones(length))
            continue
        sigma = sigma_scale * length
        offset = np.arange(length) - (length - 1) / 2.0
        factors.append(np.exp(-0.5 * (offset / sigma) ** 2))
    return factors


def importance_map(patch_size: Sequence[int], importance: str = "gaussian",
                   sigma_scale: float = 0.125) -> np.ndarray:
    """The (pz, py, px) float32 weight of each voxel of a patch; largest, 1, at the centre."""
    z, y, x = importance_factors(patch_size, importance, sigma_scale)
    return (z[:, None, None] * y[None, :, None] * x[None, None, :]).astype(np.float32)


def window_starts(size: int, patch: int, overlap: float) -> List[int]:
    """Evenly spaced start indices covering ``size`` voxels with steps of at most (1 - overlap) x patch."""
    if size <= patch:
        return [0]
    step = max(1, int(patch * (1.0 - overlap)))
    count = math.ceil((size - patch) / step) + 1
    return sorted({int(round(v)) for v in np.linspace(0, size - patch, count)})


def mirror_combinations(axes: Sequence[int]) -> List[Tuple[int, ...]]:
    """Every subset of ``axes`` (array axes of a patch), the empty one (no flip) first."""
    return [combo for r in range(len(axes) + 1) for combo in itertools.combinations(sorted(axes), r)]


def sliding_window(volume: np.ndarray, predictor: Predictor, patch_size: Sequence[int],
                   overlap: float = 0.5, importance: str = "gaussian", sigma_scale: float = 0.125,
                   batch_size: int = 2, mirror_axes: Sequence[int] = (),
                   progress: Optional[ProgressCallback] = None, token: Optional[CancelToken] = None,
                   label: str = "patch") -> np.ndarray:
    """Weighted mean over overlapping windows of ``predictor``'s output; float32, ``volume``'s shape.

    Volumes smaller than the patch along an axis are padded (by repeating the
    edge voxels) and the padding is removed from the result. ``token.check()``
    runs before every batch, so a cancel stops the job within one batch.
    """
    progress = progress or no_progress
    patch_size = tuple(int(p) for p in patch_size)
    shape = volume.shape
    padding = [((max(p - n, 0)) // 2, max(p - n, 0) - (max(p - n, 0)) // 2) for n, p in zip(shape, patch_size)]
    if any(sum(pad) for pad in padding):
        volume = np.pad(volume, padding, mode="edge")
    padded_shape = volume.shape
    starts = [window_starts(n, p, overlap) for n, p in zip(padded_shape, patch_size)]
    positions = list(itertools.product(*starts))
    factors = importance_factors(patch_size, importance, sigma_scale)
    weight = importance_map(patch_size, importance, sigma_scale)
    flips = mirror_combinations(mirror_axes)

    total: Optional[np.ndarray] = None  # (z, y, x) or (C, z, y, x), allocated once the first batch shows which
    batch = np.empty((min(batch_size, len(positions)), 1) + patch_size, dtype=np.float32)
    for first in range(0, len(positions), batch_size):
        if token is not None:
            token.check()
        chosen = positions[first:first + batch_size]
        boxes = [(Ellipsis,) + tuple(slice(s, s + p) for s, p in zip(start, patch_size)) for start in chosen]
        for k, box in enumerate(boxes):
            batch[k, 0] = volume[box]
        prediction = _mirrored(predictor, batch[:len(boxes)], flips)
        if total is None:
            total = np.zeros(prediction.shape[1:-3] + padded_shape, dtype=np.float32)
        for k, box in enumerate(boxes):
            prediction[k] *= weight
            total[box] += prediction[k]
        done = first + len(boxes)
        progress(done / len(positions), f"{label} {done}/{len(positions)}")
    if total is None:
        raise ValueError("no windows: window_starts gives at least one start per axis")

    # Summed weight per voxel = product over axes of the 1D weight sums (separable map, grid windows).
    for axis, (axis_starts, factor, n) in enumerate(zip(starts, factors, padded_shape)):
        summed = np.zeros(n)
        for s in axis_starts:
            summed[s:s + len(factor)] += factor
        view: List[Optional[slice]] = [None, None, None]
        view[axis] = slice(None)
        total /= summed.astype(np.float32)[tuple(view)]
    crop = (Ellipsis,) + tuple(slice(before, before + n) for (before, _), n in zip(padding, shape))
    return total[crop] if any(sum(pad) for pad in padding) else total


def _mirrored(predictor: Predictor, batch: np.ndarray, flips: List[Tuple[int, ...]]) -> np.ndarray:
    """Mean of ``predictor`` over the mirror combinations (each flipped back), float32 (B, [C,] z, y, x)."""
    result = None
    for flip in flips:
        if flip:
            inputs = np.ascontiguousarray(np.flip(batch, tuple(a + 2 for a in flip)))
            output = predictor(inputs)
            output = np.flip(output, tuple(a + output.ndim - 3 for a in flip))
        else:
            output = predictor(batch)
        if result is None:
            result = np.array(output, dtype=np.float32)
        else:
            result += output
    if result is None:
        raise ValueError("no mirror combinations: flips must hold at least the identity ()")
    if len(flips) > 1:
        result /= np.float32(len(flips))
    return result
