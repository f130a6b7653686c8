"""The identity calibrator: no calibration, the raw p is kept.

It is a method like the others so that cross-validation can score "no
calibration" with the same code, ``--method auto`` can choose it, and a
bundle can ship it as its default when no fitted map helps on held-out cases.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .calibrators import Calibrator, Provenance
from .fileformat import FileProblem
from .statistics import CalibrationStatistics


class IdentityCalibrator(Calibrator):
    """p -> p."""

    method = "identity"

    @classmethod
    def fit(cls, statistics: CalibrationStatistics, provenance: Optional[Provenance] = None,
            **options) -> "IdentityCalibrator":
        return cls(provenance)

    def _transform_chunk(self, p: np.ndarray) -> np.ndarray:
        return p

    def parameters(self) -> dict:
        return {}

    @classmethod
    def _from_parameters(cls, parameters: dict, problem: FileProblem,
                         provenance: Provenance) -> "IdentityCalibrator":
        if parameters:
            raise problem.error(f"the identity calibrator has no parameters, but the file lists "
                                f"{', '.join(map(repr, parameters))}")
        return cls(provenance)

    def describe(self) -> str:
        return "identity (no calibration: the raw probability is kept)"
