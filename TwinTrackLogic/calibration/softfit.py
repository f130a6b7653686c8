"""Shared by the smooth calibrators (Platt, temperature, beta): logits and the soft cross-entropy.

They are fitted by weighted cross-entropy with the MHR as soft target on
groups of the fine histogram's bins (group mean p, group mean MHR, weight =
the group's share of the fitting weight) rather than on every voxel: that
keeps fitting streaming and constant in memory. The groups are cells 1/200
wide in logit(p) (5,216 over the default layout, fixed by the layout, not
by the data); the smooth maps barely change across one (a slope-1 map by at
most 1/800 of its own derivative), and fitting on them instead of on the
325,632 fine bins makes a fit about 30 times faster, which cross-validation
needs (benchmarks/bench_crossval.py).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.special import expit

from .binning import ProbabilityBins
from .statistics import CalibrationStatistics

LOGIT_EPS = 1e-6  # p is clipped to [eps, 1 - eps] before a logit or log (float32 resolves 1 - 1e-6)
LOGIT_CELL = 1.0 / 200


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, LOGIT_EPS, 1.0 - LOGIT_EPS)
    return np.log(p) - np.log1p(-p)


def soft_cross_entropy(z: np.ndarray, target: np.ndarray, weight: np.ndarray):
    """Weighted cross-entropy of sigmoid(z) against soft targets, and d/dz."""
    loss = np.sum(weight * (np.logaddexp(0.0, z) - target * z))
    return loss, weight * (expit(z) - target)


@lru_cache(maxsize=4)
def _cell_of_bin(bins: int) -> np.ndarray:
    """The logit cell (0, 1, ... in increasing p) of every fine bin of the layout with ``bins``."""
    lower = ProbabilityBins(bins).lower_edges()
    cell = np.floor(logit(lower) / LOGIT_CELL).astype(np.int64)
    _, dense = np.unique(cell, return_inverse=True)
    return dense.reshape(-1)


def bin_data(statistics: CalibrationStatistics):
    """(mean p, mean MHR, weight share) of the non-empty logit cells (computed once per statistics)."""
    return statistics.derived("logit cells", _logit_cells)


def _logit_cells(statistics: CalibrationStatistics):
    filled = statistics.nonempty_bins()
    cell = _cell_of_bin(statistics.bins)[filled]
    size = int(cell[-1]) + 1 if cell.size else 0
    weight = np.bincount(cell, weights=statistics.counts[filled], minlength=size)
    sum_p = np.bincount(cell, weights=statistics.sum_p[filled], minlength=size)
    sum_mhr = np.bincount(cell, weights=statistics.sum_mhr[filled], minlength=size)
    used = weight > 0
    weight, sum_p, sum_mhr = weight[used], sum_p[used], sum_mhr[used]
    return sum_p / weight, sum_mhr / weight, weight / weight.sum()
