"""Calibration against the mean human response (MHR): what the TwinTrack claim is about.

A calibrated p should equal the fraction of raters who mark the voxel. These
metrics compare p with the MHR voxel by voxel, inside the case's region (the
voxels the calibrator is fitted on; :func:`TwinTrackLogic.cohort.cases.load_case`
gives it). All sums are float64.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

import numpy as np

from ..calibration.statistics import ECE_MHR_BINS

RELIABILITY_BINS = ECE_MHR_BINS  # one ECE-against-MHR binning everywhere (calibrate, --cv, evaluate)


@dataclass
class Reliability:
    """Per equal-width bin of p: voxel count, summed p and summed MHR.

    Sums (not means) so that cases add up into a cohort diagram.
    """

    edges: np.ndarray  # bins + 1 edges in [0, 1]
    count: np.ndarray  # int64
    sum_probability: np.ndarray  # float64
    sum_mhr: np.ndarray  # float64

    @classmethod
    def of(cls, probability: np.ndarray, mhr: np.ndarray, bins: int = RELIABILITY_BINS) -> "Reliability":
        """Bin k holds k/bins <= p < (k+1)/bins; the last bin also holds p == 1."""
        probability = probability.reshape(-1).astype(np.float64)
        index = np.clip(np.floor(probability * bins).astype(np.int64), 0, bins - 1)
        return cls(
            edges=np.linspace(0.0, 1.0, bins + 1),
            count=np.bincount(index, minlength=bins).astype(np.int64),
            sum_probability=np.bincount(index, weights=probability, minlength=bins),
            sum_mhr=np.bincount(index, weights=mhr.reshape(-1).astype(np.float64), minlength=bins),
        )

    def __add__(self, other: "Reliability") -> "Reliability":
        return Reliability(self.edges, self.count + other.count, self.sum_probability + other.sum_probability,
                           self.sum_mhr + other.sum_mhr)

    def means(self):
        """(mean p, mean MHR) per bin; NaN in empty bins."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sum_probability / self.count, self.sum_mhr / self.count

    def ece(self) -> float:
        """Sum over bins of the voxel fraction times |mean p - mean MHR|."""
        total = self.count.sum()
        if total == 0:
            return float("nan")
        return float(np.sum(np.abs(self.sum_probability - self.sum_mhr)) / total)

    def to_json(self) -> Dict[str, list]:
        mean_probability, mean_mhr = self.means()
        return {
            "bin_edges": self.edges.tolist(),
            "count": self.count.tolist(),
            "mean_probability": [None if np.isnan(v) else float(v) for v in mean_probability],
            "mean_mhr": [None if np.isnan(v) else float(v) for v in mean_mhr],
        }

    @classmethod
    def from_json(cls, data: Dict[str, list]) -> "Reliability":
        count = np.asarray(data["count"], dtype=np.int64)
        mean_probability = np.nan_to_num(np.asarray(data["mean_probability"], dtype=np.float64))
        mean_mhr = np.nan_to_num(np.asarray(data["mean_mhr"], dtype=np.float64))
        return cls(np.asarray(data["bin_edges"], dtype=np.float64), count,
                   mean_probability * count, mean_mhr * count)


def ece_mhr(probability: np.ndarray, mhr: np.ndarray, bins: int = RELIABILITY_BINS) -> float:
    """Equal-width ECE against the MHR: sum_b (n_b / N) |mean p_b - mean MHR_b|."""
    return Reliability.of(probability, mhr, bins).ece()


def ece_mhr_equal_mass(probability: np.ndarray, mhr: np.ndarray, bins: int = RELIABILITY_BINS) -> float:
    """ECE against the MHR with bins of (nearly) equal voxel counts, in order of p.

    Ties in p are split between bins in a fixed order (stable sort), so the
    bins always hold N // bins or N // bins + 1 voxels.
    """
    probability = probability.reshape(-1).astype(np.float64)
    if probability.size == 0:
        return float("nan")
    mhr = mhr.reshape(-1).astype(np.float64)
    order = np.argsort(probability, kind="stable")
    gaps = 0.0
    for members in np.array_split(order, min(bins, probability.size)):
        gaps += abs(probability[members].sum() - mhr[members].sum())
    return float(gaps / probability.size)


def brier_mhr(probability: np.ndarray, mhr: np.ndarray) -> float:
    """Mean squared difference between p and the MHR."""
    if probability.size == 0:
        return float("nan")
    difference = probability.astype(np.float64) - mhr.astype(np.float64)
    return float(np.mean(difference * difference))


def soft_dice(probability: np.ndarray, mhr: np.ndarray) -> float:
    """2 sum(p MHR) / (sum p + sum MHR); 1 when both are zero everywhere."""
    probability, mhr = probability.astype(np.float64), mhr.astype(np.float64)
    total = probability.sum() + mhr.sum()
    if total == 0.0:
        return 1.0
    return float(2.0 * np.sum(probability * mhr) / total)
