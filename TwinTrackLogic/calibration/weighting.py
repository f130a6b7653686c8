"""How cases are weighted when their statistics are pooled for one fit (``--case-weight``).

- ``voxels``: every voxel counts once, so a case weighs its region's voxel
  count; a pooled fit then follows the few cases with the most voxels.
- ``equal``: every case carries the same total weight (the cohort's mean
  voxel count per case), as the challenge's per-case mean ECE counts them.

Fits only see relative weights, so the common scale does not change a fit;
the equal-weight total keeps the cohort's voxel count, so ``voxels`` in the
file stays meaningful.
"""

from __future__ import annotations

from typing import Optional

from ..errors import InputError
from .calibrators import CASE_WEIGHTS
from .statistics import CalibrationStatistics


def check_case_weight(case_weight: str) -> str:
    if case_weight not in CASE_WEIGHTS:
        raise InputError(f"Unknown case weight {case_weight!r}; use one of {', '.join(CASE_WEIGHTS)}.")
    return case_weight


class CasePool:
    """Adds cases' statistics one at a time under a case weighting; :meth:`total` is the pooled result."""

    def __init__(self, case_weight: str = "voxels", bins: Optional[int] = None) -> None:
        self.case_weight = check_case_weight(case_weight)
        self._sum: Optional[CalibrationStatistics] = None if bins is None else CalibrationStatistics(bins)
        self.voxels = 0
        self.cases = 0

    def add(self, statistics: CalibrationStatistics) -> None:
        voxels = statistics.voxels
        if voxels == 0:
            return
        part = statistics if self.case_weight == "voxels" else statistics.scaled(1.0 / voxels)
        if self._sum is None:
            self._sum = CalibrationStatistics(statistics.bins)
        self._sum.merge(part)
        self.voxels += voxels
        self.cases += statistics.cases

    def total(self) -> CalibrationStatistics:
        if self._sum is None:
            raise InputError("No case with voxels was added, so there is nothing to fit on.")
        if self.case_weight == "voxels":
            return self._sum
        return self._sum.scaled(self.voxels / max(self.cases, 1))
