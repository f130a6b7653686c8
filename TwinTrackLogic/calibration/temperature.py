"""Temperature scaling: sigmoid(logit(p) / T), T > 0, fitted by soft cross-entropy.

One parameter and no bias term: it sharpens or softens p but cannot undo a shift.
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


class TemperatureCalibrator(Calibrator):
    """sigmoid(logit(p) / temperature), temperature > 0."""

    method = "temperature"

    def __init__(self, temperature: float, provenance: Optional[Provenance] = None) -> None:
        super().__init__(provenance)
        self.temperature = float(temperature)

    @classmethod
    def fit(cls, statistics: CalibrationStatistics, provenance: Optional[Provenance] = None,
            **options: Any) -> "TemperatureCalibrator":
        refuse_options(cls, options)
        mean_p, mean_mhr, weight = bin_data(statistics)
        log_odds = logit(mean_p)

        def objective(theta):  # theta = log(1 / T), so T stays positive
            z = np.exp(theta[0]) * log_odds
            loss, dz = soft_cross_entropy(z, mean_mhr, weight)
            return loss, np.array([np.sum(dz * z)])

        result = optimize.minimize(objective, np.array([0.0]), jac=True, method="L-BFGS-B",
                                   bounds=[(-9.0, 9.0)])
        return cls(float(np.exp(-result.x[0])), provenance)

    def _transform_chunk(self, p: np.ndarray) -> np.ndarray:
        z = logit(p)
        z *= np.float32(1.0 / self.temperature)
        return expit(z)

    def parameters(self) -> dict:
        return {"temperature": self.temperature}

    @classmethod
    def _from_parameters(cls, parameters: dict, problem: FileProblem,
                         provenance: Provenance) -> "TemperatureCalibrator":
        temperature = problem.number(problem.key(parameters, "temperature", "parameters"),
                                     "parameters.temperature", 1e-4, 1e4)
        return cls(temperature, provenance)
