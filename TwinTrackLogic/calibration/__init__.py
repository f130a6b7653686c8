"""Post-hoc multi-rater calibration: tumour probability p -> expected MHR.

- :mod:`.statistics`: the fine histogram over p (counts, summed p, summed
  MHR per bin) that every fit starts from; mergeable across cases and processes.
- :mod:`.calibrators`: the calibrator interface (one abstract class; a method
  registers itself by name) and its provenance.
- one file per method: :mod:`.identity`, :mod:`.isotonic` (default),
  :mod:`.histogram`, :mod:`.platt`, :mod:`.temperature`, :mod:`.beta`.
- :mod:`.lookup`: the exact, table-driven evaluation of the isotonic map.
- :mod:`.fileformat`: the versioned calibrator JSON.
- :mod:`.weighting`: how cases are weighted when their statistics are pooled.
- :mod:`.crossval`: out-of-sample scores from per-case statistics, and ``auto``.
- :mod:`.fitting`: fitting on a cohort of case folders (map over cases, reduce).
"""

from .beta import BetaCalibrator
from .calibrators import (
    CASE_WEIGHTS,
    METHODS,
    Calibrator,
    Option,
    Provenance,
    check_options,
    fit_calibrator,
    load_calibrator,
)
from .fitting import CohortFit, FitSettings, case_statistics, fit_cohort
from .histogram import HistogramBinningCalibrator
from .identity import IdentityCalibrator
from .isotonic import IsotonicCalibrator
from .platt import PlattCalibrator
from .statistics import DEFAULT_BINS, ECE_MHR_BINS, CalibrationStatistics
from .temperature import TemperatureCalibrator

__all__ = [
    "METHODS", "CASE_WEIGHTS", "Calibrator", "Option", "Provenance", "check_options", "IdentityCalibrator",
    "IsotonicCalibrator", "HistogramBinningCalibrator", "PlattCalibrator", "TemperatureCalibrator",
    "BetaCalibrator", "fit_calibrator", "load_calibrator", "CalibrationStatistics", "DEFAULT_BINS",
    "ECE_MHR_BINS", "CohortFit", "FitSettings", "case_statistics", "fit_cohort",
]
