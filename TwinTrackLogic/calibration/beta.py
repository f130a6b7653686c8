"""Beta calibration (Kull et al. 2017): sigmoid(a ln p - b ln(1 - p) + c), a, b >= 0.

Monotone increasing; fitted by soft cross-entropy (see :mod:`.softfit`).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
from scipy import optimize
from scipy.special import expit

from .calibrators import Calibrator, Provenance, refuse_options
from .fileformat import FileProblem
from .softfit import LOGIT_EPS, bin_data, soft_cross_entropy
from .statistics import CalibrationStatistics


class BetaCalibrator(Calibrator):
    """sigmoid(a ln p - b ln(1 - p) + c) with a, b >= 0 (monotone increasing)."""

    method = "beta"

    def __init__(self, a: float, b: float, c: float,
                 provenance: Optional[Provenance] = None) -> None:
        super().__init__(provenance)
        self.a, self.b, self.c = float(a), float(b), float(c)

    @classmethod
    def fit(cls, statistics: CalibrationStatistics, provenance: Optional[Provenance] = None,
            **options: Any) -> "BetaCalibrator":
        refuse_options(cls, options)
        mean_p, mean_mhr, weight = bin_data(statistics)
        clipped = np.clip(mean_p, LOGIT_EPS, 1.0 - LOGIT_EPS)
        log_p, log_q = np.log(clipped), np.log1p(-clipped)

        def objective(theta):
            loss, dz = soft_cross_entropy(theta[0] * log_p - theta[1] * log_q + theta[2], mean_mhr, weight)
            return loss, np.array([np.sum(dz * log_p), -np.sum(dz * log_q), np.sum(dz)])

        result = optimize.minimize(objective, np.array([1.0, 1.0, 0.0]), jac=True, method="L-BFGS-B",
                                   bounds=[(0.0, 1e4), (0.0, 1e4), (-1e4, 1e4)])
        a, b, c = result.x
        return cls(a, b, c, provenance=provenance)

    def _transform_chunk(self, p: np.ndarray) -> np.ndarray:
        p = np.clip(p, LOGIT_EPS, 1.0 - LOGIT_EPS)
        z = np.log(p)
        z *= np.float32(self.a)
        z -= np.float32(self.b) * np.log1p(-p)
        z += np.float32(self.c)
        return expit(z)

    def parameters(self) -> dict:
        return {"a": self.a, "b": self.b, "c": self.c}

    @classmethod
    def _from_parameters(cls, parameters: dict, problem: FileProblem,
                         provenance: Provenance) -> "BetaCalibrator":
        return cls(problem.number(problem.key(parameters, "a", "parameters"), "parameters.a", 0.0, 1e4),
                   problem.number(problem.key(parameters, "b", "parameters"), "parameters.b", 0.0, 1e4),
                   problem.number(problem.key(parameters, "c", "parameters"), "parameters.c", -1e4, 1e4),
                   provenance=provenance)
