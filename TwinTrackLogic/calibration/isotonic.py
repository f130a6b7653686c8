"""Isotonic calibration (the default, the TwinTrack paper's choice).

Weighted isotonic regression (``scipy.optimize.isotonic_regression``, pool
adjacent violators) on the fine histogram's bins, each bin placed at its real
mean p and weighted by its voxel count (or case weight). That is the exact
isotonic fit of the voxels after pooling each bin. The result is *piecewise
linear* between the knots and flat beyond the end knots, like scikit-learn's
IsotonicRegression, which interpolates linearly between the unique x: a step
function would jump at arbitrary points inside the steep parts of the fit and
bias the values there by up to half a step. Knots inside a constant block are
dropped.

Regularisation, option ``max_steps`` (default 0, none): before the fit,
neighbouring fine bins are pooled, in order of p, into ``max_steps`` groups of
equal weight (by the cumulative weight; a bin heavier than a group is a group
of its own), each placed at its mean p. The fit then has at most that many
steps, each resting on about 1/``max_steps`` of the fitting weight, instead of
steps on a handful of voxels that follow one case's raters.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
from scipy import optimize

from ..errors import InputError
from .calibrators import Calibrator, Option, Provenance, refuse_options
from .fileformat import FileProblem
from .lookup import PiecewiseLinear
from .statistics import CalibrationStatistics


def _pool_into_groups(mean_p, mean_mhr, weight, groups: int):
    """Neighbouring bins pooled into ``groups`` of equal weight; (mean p, mean MHR, weight) per group."""
    before = np.cumsum(weight) - weight  # weight of the bins below each bin
    quantile = np.floor(before * (groups / weight.sum())).astype(np.intp)
    group = np.concatenate([[0], np.cumsum(np.diff(quantile) > 0)])  # quantile never decreases
    size = int(group[-1]) + 1
    pooled = np.bincount(group, weights=weight, minlength=size)
    return (np.bincount(group, weights=mean_p * weight, minlength=size) / pooled,
            np.bincount(group, weights=mean_mhr * weight, minlength=size) / pooled, pooled)


class IsotonicCalibrator(Calibrator):
    """Monotone, piecewise linear through knots (x, y); flat beyond the end knots."""

    method = "isotonic"
    options = (Option("max_steps", int, 0,
                      "pool the bins into this many equal-weight groups before the fit, so it has at "
                      "most this many steps (0: no pooling)"),)

    def __init__(self, x: np.ndarray, y: np.ndarray, layout=None, provenance: Optional[Provenance] = None) -> None:
        super().__init__(provenance)
        self.x = np.asarray(x, dtype=np.float64)
        self.y = np.asarray(y, dtype=np.float64)
        self._lookup = PiecewiseLinear(self.x, self.y, layout)

    @classmethod
    def fit(cls, statistics: CalibrationStatistics, provenance: Optional[Provenance] = None,
            max_steps: int = 0, **options: Any) -> "IsotonicCalibrator":
        refuse_options(cls, options)
        mean_p, mean_mhr, counts = statistics.nonempty()
        weight = counts.astype(np.float64)
        if not 0 <= int(max_steps) <= 1_000_000:
            raise InputError(f"The isotonic option max_steps must be 0 (no pooling) to 1000000, not {max_steps}.")
        if max_steps > 0:
            mean_p, mean_mhr, weight = _pool_into_groups(mean_p, mean_mhr, weight, int(max_steps))
        fitted = optimize.isotonic_regression(mean_mhr, weights=weight, increasing=True).x
        fitted = np.clip(fitted, 0.0, 1.0)
        # Inside a constant block only the block's end knots change the interpolant.
        same_as_previous = np.r_[False, fitted[1:] == fitted[:-1]]
        same_as_next = np.r_[fitted[:-1] == fitted[1:], False]
        keep = ~(same_as_previous & same_as_next)
        return cls(mean_p[keep], fitted[keep], statistics.layout, provenance)

    def _transform_chunk(self, p: np.ndarray) -> np.ndarray:
        return self._lookup(p)

    def parameters(self) -> dict:
        return {"x": self.x.tolist(), "y": self.y.tolist()}

    @classmethod
    def _from_parameters(cls, parameters: dict, problem: FileProblem,
                         provenance: Provenance) -> "IsotonicCalibrator":
        knots = problem.numbers(problem.key(parameters, "x", "parameters"), "parameters.x", 0.0, 1.0)
        knot_values = problem.numbers(problem.key(parameters, "y", "parameters"), "parameters.y", 0.0, 1.0)
        if len(knots) != len(knot_values):
            raise problem.error(f"'parameters.x' has {len(knots)} knots but 'parameters.y' has {len(knot_values)}")
        x, y = np.asarray(knots, dtype=np.float64), np.asarray(knot_values, dtype=np.float64)
        if np.any(np.diff(x) <= 0):
            raise problem.error("the knots 'parameters.x' are not strictly increasing")
        if np.any(np.diff(y) < 0):
            raise problem.error("the values 'parameters.y' decrease somewhere, so the calibrator is not monotone")
        return cls(x, y, provenance=provenance)

    def describe(self) -> str:
        return f"isotonic calibrator with {self.x.size} knots"
