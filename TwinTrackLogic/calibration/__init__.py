"""Post-hoc multi-rater calibration: tumour probability p -> expected MHR.

- :mod:`.statistics`: the fine histogram over p (counts, summed p, summed
  MHR per bin) that every fit starts from; mergeable across cases and processes.
- :mod:`.calibrators`: isotonic (default), histogram binning, Platt,
  temperature and beta calibrators behind one interface.
- :mod:`.lookup`: the exact, table-driven evaluation of the isotonic map.
- :mod:`.fileformat`: the versioned calibrator JSON.
- :mod:`.fitting`: fitting on a cohort of case folders (map over cases, reduce).
"""

from .calibrators import (METHODS, BetaCalibrator, Calibrator, HistogramBinningCalibrator,
                          IsotonicCalibrator, PlattCalibrator, TemperatureCalibrator, fit_calibrator,
                          load_calibrator)
from .fitting import CohortFit, case_statistics, fit_cohort
from .statistics import DEFAULT_BINS, CalibrationStatistics

__all__ = [
    "METHODS", "Calibrator", "IsotonicCalibrator", "HistogramBinningCalibrator", "PlattCalibrator",
    "TemperatureCalibrator", "BetaCalibrator", "fit_calibrator", "load_calibrator",
    "CalibrationStatistics", "DEFAULT_BINS", "CohortFit", "case_statistics", "fit_cohort",
]
