"""Fitting a calibrator on a cohort: map over cases, reduce the statistics, fit once.

Each case is reduced to its own :class:`CalibrationStatistics` by
:func:`case_statistics` (independent of every other case, so the map can run
in other processes or on other machines); :func:`fit_cohort` adds them up and
fits one calibrator. A case that cannot be used is reported and skipped; the
others still count.

With ``cv`` (or ``method="auto"``) every case's statistics are also kept,
sparse, for cross-validation (:mod:`.crossval`); the report goes into the
calibrator's ``fitting.cross_validation`` and ``auto`` fits the method it
chose. ``case_weight`` (:mod:`.weighting`) says how cases are pooled.

Which cases count: a case whose raters marked nothing is kept when it has an
organ or ROI mask: its region tells the calibrator that those probabilities
go with an MHR of 0, which is exactly what an over-confident ensemble must
learn. Without an organ mask (``bbox`` policy) such a case has no region, is
reported and skipped.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..cohort.casemap import CaseFailed, CaseMap, each_case
from ..cohort.cases import DEFAULT_DILATION_MM, DEFAULT_PADDING_MM, check_rater_counts, load_case
from ..errors import InputError
from ..io import Case
from ..progress import CancelToken, ProgressCallback, no_progress
from .calibrators import Calibrator, fit_calibrator
from .crossval import CaseStatistics, CrossValidation, cross_validate, default_candidates
from .statistics import DEFAULT_BINS, ECE_MHR_BINS, CalibrationStatistics
from .weighting import CasePool, check_case_weight

AUTO = "auto"  # method name: choose by cross-validation
DEFAULT_AUTO_CV = "loo"
MIN_RATERS = 2  # one rater's mask is not an agreement level



@dataclass
class CaseProbability:
    """What a ``probability_for`` hook may return instead of a bare map: the map and the case's
    warnings (an ensemble's domain checks: the CT is unlike the training data)."""

    probability: np.ndarray
    warnings: List[str] = field(default_factory=list)


ProbabilityFor = Callable[[Case], Union[np.ndarray, CaseProbability]]


@dataclass
class CohortFit:
    """The outcome of :func:`fit_cohort`.

    ece_before / ece_after: ECE against MHR on the fitting voxels
    (``ECE_MHR_BINS`` equal-width bins, every voxel counted once), from the
    statistics, before and after calibration: in-sample, so isotonic is near 0
    by construction. cross_validation: the held-out report when one was asked for.
    failures: (case name, message) of every case that was skipped.
    """

    calibrator: Calibrator
    statistics: CalibrationStatistics
    ece_before: float
    ece_after: float
    used: List[str] = field(default_factory=list)
    failures: List[Tuple[str, str]] = field(default_factory=list)
    cross_validation: Optional[CrossValidation] = None
    warnings: List[Tuple[str, str]] = field(default_factory=list)  # (case, warning) of cases that were used


def case_statistics(case: Case, probability_name: str = "probability.nii.gz", region_policy: str = "auto",
                    dilation_mm: float = DEFAULT_DILATION_MM, padding_mm: float = DEFAULT_PADDING_MM,
                    bins: int = DEFAULT_BINS,
                    probability_for: Optional[ProbabilityFor] = None,
                    warnings: Optional[List[str]] = None) -> Tuple[CalibrationStatistics, str]:
    """The map step: one case's statistics inside its region, and the region's description.

    probability_for: called as ``probability_for(case)`` for the tumour
    probability (z, y, x array on the CT grid, or a :class:`CaseProbability`) when the case has
    no file ``probability_name``; this is where an ensemble plugs in. warnings: a list that gets
    the hook's warnings for this case.
    """
    probability: Optional[np.ndarray] = None
    if probability_for is not None and case.file(probability_name) is None:
        given = probability_for(case)
        if isinstance(given, CaseProbability):
            if warnings is not None:
                warnings.extend(given.warnings)
            given = given.probability
        probability = given
    data = load_case(case, probability_name, probability, region_policy, dilation_mm, padding_mm)
    if not data.region.any():
        raise InputError(f"Case {case.name} has an empty region ({data.region_description}); "
                         "there is nothing to fit on.")
    statistics = CalibrationStatistics(bins)
    statistics.add(data.probability, data.mhr, data.region, raters=data.raters, source=f"Case {case.name}")
    return statistics, data.region_description


def _case_outcome(case: Case, **settings) -> Tuple[CalibrationStatistics, str, List[str]]:
    """:func:`case_statistics` and the case's warnings, as one value that can travel from a worker."""
    warnings: List[str] = []
    statistics, description = case_statistics(case, warnings=warnings, **settings)
    return statistics, description, warnings


def _annotated_cases(cases: Sequence[Case], failures: List[Tuple[str, str]]) -> List[Case]:
    """The cases with annotations (the others go to ``failures``); InputError on too few raters."""
    annotated = []
    for case in cases:
        if case.problem:  # a layout problem (no CT, a file twice, a missing rater): reported, skipped
            failures.append((case.name, case.problem))
        elif case.raters == 0:
            failures.append((case.name, f"{case.folder} has no annotation_1.nii.gz ... annotation_K.nii.gz"))
        else:
            annotated.append(case)
    if annotated:
        raters = check_rater_counts([(case.name, case.raters) for case in annotated])
        if raters < MIN_RATERS:
            raise InputError(
                f"The cases of this cohort have {raters} rater each; calibrating to the mean human "
                f"response needs at least {MIN_RATERS} raters per case (one rater's MHR is only 0 or 1, "
                "which says nothing about agreement). Add the other raters' annotation_K.nii.gz files."
            )
    return annotated


def _describe_regions(policy: str, descriptions: Sequence[str]) -> str:
    counted = Counter(descriptions)
    parts = [f"{text} ({count} case{'s' if count > 1 else ''})" for text, count in counted.most_common()]
    return f"--region {policy}: " + "; ".join(parts)


@dataclass(frozen=True)
class FitSettings:
    """How a calibrator is fitted on a cohort (the command line's calibrate options, once).

    method: a calibrator name, or ``"auto"`` (chosen by cross-validation). probability_name: the
    case file holding the raw map; probability_source: what the calibrator file records as its
    source (default ``probability_name``; an ensemble caller passes ``bundle:<id>``).
    region_policy, dilation_mm, padding_mm: where in each case voxels are counted. bins: the
    statistics' fine bins. case_weight: ``"voxels"`` or ``"equal"``. cv: ``"loo"``, K or None (no
    cross-validation; ``auto`` then uses ``"loo"``). options_by_method: each method's settings
    (the chosen one's, and the cross-validation candidates'). strict: a case with domain warnings
    from the ensemble goes to ``failures``, not into the fit.
    """

    method: str = "isotonic"
    probability_name: str = "probability.nii.gz"
    probability_source: Optional[str] = None
    region_policy: str = "auto"
    dilation_mm: float = DEFAULT_DILATION_MM
    padding_mm: float = DEFAULT_PADDING_MM
    bins: int = DEFAULT_BINS
    case_weight: str = "voxels"
    cv: Optional[Union[str, int]] = None
    options_by_method: Dict[str, dict] = field(default_factory=dict)
    strict: bool = False


def fit_cohort(cases: Sequence[Case], settings: FitSettings = FitSettings(), *,
               progress: Optional[ProgressCallback] = no_progress, token: Optional[CancelToken] = None,
               probability_for: Optional[ProbabilityFor] = None, case_map: CaseMap = map) -> CohortFit:
    """Fit a calibrator (``settings.method``, or ``"auto"``: chosen by cross-validation) on all usable ``cases``.

    Cases without annotation files are skipped; the rest must share one rater
    count (InputError otherwise, before any image is read). A case that fails
    to load is recorded in ``failures`` and skipped; InputError if none is left.
    probability_for: ``case -> (raw map, warnings)`` for cases without a probability file (the
    ensemble). case_map: how the per-case map runs (see :mod:`TwinTrackLogic.cohort.casemap`;
    default in-process).
    """
    progress = progress or no_progress
    check_case_weight(settings.case_weight)
    method, case_weight, bins, options_by_method = (settings.method, settings.case_weight, settings.bins,
                                                    dict(settings.options_by_method))
    cv = DEFAULT_AUTO_CV if method == AUTO and settings.cv is None else settings.cv
    failures: List[Tuple[str, str]] = []
    annotated = _annotated_cases(cases, failures)

    pool = CasePool(case_weight, bins)
    # Every voxel once, for the in-sample ECE: the pool itself unless cases are reweighted.
    voxel_total = None if case_weight == "voxels" else CalibrationStatistics(bins)
    kept: List[CaseStatistics] = []
    used, descriptions = [], []
    per_case = partial(_case_outcome, probability_name=settings.probability_name, region_policy=settings.region_policy,
                       dilation_mm=settings.dilation_mm, padding_mm=settings.padding_mm, bins=bins,
                       probability_for=probability_for)
    case_warnings: List[Tuple[str, str]] = []
    progress(0.0, f"reading {len(annotated)} case(s)")
    # Merged in case order whatever ran them, so the sums (and the fit) are the same bit for bit.
    for case, outcome in each_case(per_case, annotated, case_map, progress, token):
        if isinstance(outcome, CaseFailed):
            failures.append((case.name, outcome.message))
        elif settings.strict and outcome[2]:  # the case's domain warnings
            failures.append((case.name, "--strict: left out, because " + "; ".join(outcome[2])))
        else:
            statistics, description, warned = outcome
            case_warnings.extend((case.name, warning) for warning in warned)
            pool.add(statistics)
            if voxel_total is not None:
                voxel_total.merge(statistics)
            if cv is not None:
                kept.append(CaseStatistics.of(case.name, statistics))
            used.append(case.name)
            descriptions.append(description)
    progress(1.0, f"{len(used)} of {len(cases)} cases read")

    if not used:
        listing = "\n".join(f"  {name}: {message}" for name, message in failures)
        raise InputError(f"No case could be used to fit a calibrator:\n{listing}")
    voxel_total = voxel_total or pool.total()
    cross_validation = None
    if cv is not None:
        progress(1.0, f"cross-validating ({cv}) on {len(kept)} cases")
        cross_validation = cross_validate(kept, cv, default_candidates(options_by_method), case_weight)
    if method == AUTO:
        if cross_validation is None:  # never: auto always sets cv above
            raise RuntimeError("method auto needs cross-validation")
        method, options = cross_validation.chosen.method, dict(cross_validation.chosen.options)
    else:
        options = options_by_method.get(method, {})
    calibrator = fit_calibrator(pool.total(), method, region=_describe_regions(settings.region_policy, descriptions),
                                probability_source=settings.probability_source or settings.probability_name,
                                case_weight=case_weight,
                                cross_validation=None if cross_validation is None else cross_validation.to_dict(),
                                **options)
    return CohortFit(calibrator, voxel_total, voxel_total.expected_calibration_error(bins=ECE_MHR_BINS),
                     voxel_total.expected_calibration_error(calibrator.transform, bins=ECE_MHR_BINS), used, failures,
                     cross_validation, case_warnings)
