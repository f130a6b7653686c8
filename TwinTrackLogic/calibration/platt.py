"""Platt scaling: sigmoid(a logit(p) + b), fitted by soft cross-entropy (see :mod:`.softfit`).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
from scipy import optimize
from scipy.special import expit

from .calibrators import Calibrator, Provenance, refuse_options
from .fileformat import FileProblem
from .softfit import bin_data, logit, soft_cross_entropy
from .statistics import CalibrationStatistics


class PlattCalibrator(Calibrator):
    """sigmoid(a * logit(p) + b)."""

    method = "platt"

    def __init__(self, a: float, b: float, provenance: Optional[Provenance] = None) -> None:
        super().__init__(provenance)
        self.a, self.b = float(a), float(b)

    @classmethod
    def fit(cls, statistics: CalibrationStatistics, provenance: Optional[Provenance] = None,
            **options: Any) -> "PlattCalibrator":
        refuse_options(cls, options)
        mean_p, mean_mhr, weight = bin_data(statistics)
        log_odds = logit(mean_p)

        def objective(theta):
            loss, dz = soft_cross_entropy(theta[0] * log_odds + theta[1], mean_mhr, weight)
            return loss, np.array([np.sum(dz * log_odds), np.sum(dz)])

        result = optimize.minimize(objective, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
        a, b = result.x
        return cls(a, b, provenance=provenance)

    def _transform_chunk(self, p: np.ndarray) -> np.ndarray:
        z = logit(p)
        z *= np.float32(self.a)
        z += np.float32(self.b)
        return expit(z)

    def parameters(self) -> dict:
        return {"a": self.a, "b": self.b}

    @classmethod
    def _from_parameters(cls, parameters: dict, problem: FileProblem,
                         provenance: Provenance) -> "PlattCalibrator":
        return cls(problem.number(problem.key(parameters, "a", "parameters"), "parameters.a", -1e4, 1e4),
                   problem.number(problem.key(parameters, "b", "parameters"), "parameters.b", -1e4, 1e4),
                   provenance=provenance)
