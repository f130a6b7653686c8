"""The CURVAS-PDACVI challenge metrics, as the official evaluation defines them.

Written from the definitions in the challenge's public evaluation code
(SYCAI-Technologies/curvas-challenge, CURVAS-PDACVI_2025/evaluation_metrics),
not copied from it. Every quirk matched and every deliberate difference is
listed in docs/metrics.md.

Arrays are (z, y, x); ``probability`` is the (calibrated) tumour probability
in [0, 1]; ``annotations`` are the K rater masks on the same grid. All four
metrics look at the whole image (or, for ECE, the box around the annotations),
never at TwinTrack's calibration region, because that is what the challenge
scores.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import SimpleITK as sitk
from scipy.stats import norm

from ..raters import rater_counts

# The challenge's six agreement thresholds: 0.1, 0.24, 0.38, 0.52, 0.66, 0.8 (float64).
THRESHOLDS = np.linspace(0.1, 0.8, 6)
# The official Dice adds this to its denominator; kept so the numbers agree.
DICE_SMOOTH = 1e-6
ECE_BINS = 50
# The official ECE box: from min - 20 to max + 20 with Python's exclusive end.
ECE_BOX_BELOW = 20
ECE_BOX_ABOVE = 19
# torch.clamp(min=1e-8) on both class probabilities before renormalising.
ECE_PROBABILITY_FLOOR = np.float32(1e-8)
STAPLE_LEVEL = 0.5


def dice(prediction: np.ndarray, reference: np.ndarray, both_empty: float = 1.0) -> float:
    """Dice of two bool masks with the official 1e-6 in the denominator.

    ``both_empty`` is returned when neither mask has a voxel (the official
    formula alone would give 0 there).
    """
    predicted, referenced = int(np.count_nonzero(prediction)), int(np.count_nonzero(reference))
    if predicted == 0 and referenced == 0:
        return float(both_empty)
    overlap = int(np.count_nonzero(prediction & reference))
    return 2.0 * overlap / (predicted + referenced + DICE_SMOOTH)


def thresh_dsc(probability: np.ndarray, annotations: Sequence[np.ndarray]) -> float:
    """Mean over the six thresholds t of Dice(p > t, MHR > t), strict >.

    The MHR is compared as the official code builds it: the float64 mean of
    the K masks. (A float32 MHR would put 4/5 = 0.800000012 above t = 0.8.)
    """
    counts = rater_counts(annotations)
    mhr_of_count = np.arange(len(annotations) + 1, dtype=np.float64) / len(annotations)
    scores = []
    for threshold in THRESHOLDS:
        predicted = probability > threshold  # float32 vs float64 scalar: compared exactly
        referenced = (mhr_of_count > threshold)[counts]
        scores.append(dice(predicted, referenced, both_empty=1.0))
    return float(np.mean(scores))


def staple_consensus(annotations: Sequence[np.ndarray]) -> np.ndarray:
    """SimpleITK STAPLE of the rater masks, thresholded at probability >= 0.5 (bool).

    STAPLE is undefined (NaN) when no rater marked anything; the consensus is
    then empty.
    """
    if not any(mask.any() for mask in annotations):
        return np.zeros(annotations[0].shape, dtype=bool)
    images = [sitk.GetImageFromArray(mask.astype(np.uint8)) for mask in annotations]
    consensus = sitk.GetArrayFromImage(sitk.STAPLE(images, 1.0))
    return consensus >= STAPLE_LEVEL


def binary_dsc(probability: np.ndarray, annotations: Sequence[np.ndarray], level: float = 0.5,
               consensus: Optional[np.ndarray] = None) -> float:
    """Dice of (p > level) against the raters' STAPLE consensus (1 when both are empty)."""
    if consensus is None:
        consensus = staple_consensus(annotations)
    return dice(probability > level, consensus, both_empty=1.0)


def annotation_box(annotations: Sequence[np.ndarray]) -> Optional[Tuple[slice, ...]]:
    """The official ECE box: annotation union from min - 20 to max + 19, clamped to the image.

    None when no rater marked anything (the official code fails there).
    """
    union = np.zeros(annotations[0].shape, dtype=bool)
    for mask in annotations:
        union |= mask.astype(bool)
    if not union.any():
        return None
    box: List[slice] = []
    for axis in range(union.ndim):
        length = int(union.shape[axis])
        other_axes = tuple(a for a in range(union.ndim) if a != axis)
        present = np.flatnonzero(union.any(axis=other_axes))
        box.append(slice(max(int(present[0]) - ECE_BOX_BELOW, 0),
                         min(int(present[-1]) + ECE_BOX_ABOVE + 1, length)))
    return tuple(box)


def _top_label(probability: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(predicted tumour?, confidence) exactly as torchmetrics sees the official input.

    float32 throughout: background 1 - p and foreground p are each floored at
    1e-8 and renormalised; the predicted class is the larger one (background
    on a tie, so tumour means p > 0.5); confidence is its probability.
    """
    tumour = probability.astype(np.float32, copy=False)
    background = np.maximum(np.float32(1.0) - tumour, ECE_PROBABILITY_FLOOR)
    tumour = np.maximum(tumour, ECE_PROBABILITY_FLOOR)
    total = background + tumour
    tumour, background = tumour / total, background / total
    predicted = tumour > background
    return predicted, np.where(predicted, tumour, background)


def torch_bin_edges(bins: int = ECE_BINS) -> np.ndarray:
    """The float32 edges torch.linspace(0, 1, bins + 1) gives (torch 2.x, CPU).

    torch computes the first half as step * k and the second as 1 - step * (bins - k),
    with a float32 step and one rounding (fused multiply-add). Several edges then
    differ from float32(k / bins) by one unit in the last place (0.78000003, not
    0.78), which moves voxels whose confidence is exactly such a value into the
    other bin. Both products are exact in float64, so one cast rounds them as torch does.
    """
    step = float(np.float32(1.0) / np.float32(bins))
    k = np.arange(bins + 1, dtype=np.float64)
    return np.where(k < (bins + 1) // 2, step * k, 1.0 - step * (bins - k)).astype(np.float32)


def top_label_bins(probability: np.ndarray, bins: int = ECE_BINS) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bin index of each voxel's confidence, with the predicted class and confidence.

    Bins are [edge_k, edge_k+1) on torch's float32 edges, plus one extra bin that
    holds confidence exactly 1 (torch.bucketize(right=True) on bins + 1 edges).
    """
    predicted, confidence = _top_label(probability)
    edges = torch_bin_edges(bins)
    index = np.searchsorted(edges, confidence, side="right") - 1
    return index, predicted, confidence


def ece_curvas(probability: np.ndarray, annotations: Sequence[np.ndarray],
               bins: int = ECE_BINS) -> Tuple[float, List[float]]:
    """Top-label ECE per rater inside the annotation box; (mean over raters, per rater).

    Binning follows the official float32 arithmetic; bin sums accumulate in
    float64 (the official accumulates in float32). NaN when no rater marked
    anything, since there is no box.
    """
    box = annotation_box(annotations)
    if box is None:
        return float("nan"), [float("nan")] * len(annotations)
    index, predicted, confidence = top_label_bins(probability[box], bins)
    index, predicted = index.reshape(-1), predicted.reshape(-1)
    slots = bins + 1
    count = np.bincount(index, minlength=slots).astype(np.float64)
    mean_confidence = np.bincount(index, weights=confidence.reshape(-1).astype(np.float64),
                                  minlength=slots).astype(np.float64)
    filled = count > 0
    mean_confidence[filled] /= count[filled]
    per_rater = []
    for mask in annotations:
        correct = predicted == mask[box].reshape(-1).astype(bool)
        accuracy = np.bincount(index, weights=correct.astype(np.float64), minlength=slots).astype(np.float64)
        accuracy[filled] /= count[filled]
        per_rater.append(float(np.sum(np.abs(accuracy - mean_confidence) * count) / count.sum()))
    return float(np.mean(per_rater)), per_rater


def rater_volumes_mm3(annotations: Sequence[np.ndarray], voxel_volume_mm3: float) -> np.ndarray:
    """Each rater's tumour volume in mm³."""
    return np.array([np.count_nonzero(mask) * voxel_volume_mm3 for mask in annotations], dtype=np.float64)


def predicted_volume_mm3(probability: np.ndarray, voxel_volume_mm3: float) -> float:
    """Probabilistic volume: the sum of p times the voxel volume (mm³)."""
    return float(probability.sum(dtype=np.float64)) * voxel_volume_mm3


def crps_volume(predicted_mm3: float, rater_mm3: Union[Sequence[float], np.ndarray]) -> float:
    """CRPS (mm³) of a predicted volume against a Gaussian fitted to the raters' volumes.

    As the official code: Gaussian with the raters' mean and population std;
    its CDF is the linear interpolation of the Gaussian CDF on 100 points from
    the 1 % to the 99 % quantile (0 below, 1 above); the squared difference to
    the step at the predicted volume is integrated over mean +- 3 std only.
    0 when every rater gives the same volume (zero-width interval), and when their volumes agree
    to 1e-9 relative: the 100-point grid then collapses in float64 (its slopes would be 0/0),
    and the exact value is below 6 std, i.e. below 6e-9 of the volume.

    Integrated exactly (the integrand is quadratic between breakpoints, where
    Simpson's rule is exact); the official code uses adaptive quadrature.
    """
    volumes = np.asarray(rater_mm3, dtype=np.float64)
    mean, std = float(volumes.mean()), float(volumes.std())
    if std <= 1e-9 * max(abs(mean), 1.0):
        return 0.0
    grid = np.linspace(norm.ppf(0.01, mean, std), norm.ppf(0.99, mean, std), 100)
    cdf = norm.cdf(grid, mean, std)
    low, high = mean - 3.0 * std, mean + 3.0 * std
    breaks = np.unique(np.concatenate([[low, high, min(max(predicted_mm3, low), high)], grid]))
    breaks = breaks[(breaks >= low) & (breaks <= high)]
    start, stop = breaks[:-1], breaks[1:]
    middle = 0.5 * (start + stop)
    # Linear CDF piece that holds each interval's middle (constant 0 or 1 outside the grid).
    piece = np.clip(np.searchsorted(grid, middle, side="right") - 1, 0, len(grid) - 2)
    slope = (cdf[piece + 1] - cdf[piece]) / (grid[piece + 1] - grid[piece])
    inside = (middle >= grid[0]) & (middle <= grid[-1])
    step = (middle > predicted_mm3).astype(np.float64)

    def integrand(y):
        value = np.where(inside, cdf[piece] + slope * (y - grid[piece]), (middle > grid[-1]).astype(float))
        return (value - step) ** 2

    simpson = (stop - start) / 6.0 * (integrand(start) + 4.0 * integrand(middle) + integrand(stop))
    return float(simpson.sum())
