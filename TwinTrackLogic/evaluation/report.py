"""Evaluation of a multi-rater cohort: per-case metrics, bootstrap summary, report JSON.

A cohort run maps :func:`evaluate_row` over the cases (each one independent:
it reads its own files and returns a JSON-ready dict, so it can run in another
process or on another machine) and then :func:`summarise` reduces the results.
A case that fails with an input problem is recorded under ``failed`` and the
run goes on.

Report layout (``report.json``)::

    {"cases": {"<case>": {"thresh_dsc": ..., "binary_dsc": ..., "ece_curvas": ...,
                          "ece_curvas_per_rater": [...], "crps_volume": ..., "ece_mhr": ...,
                          "brier_mhr": ..., "soft_dice": ..., ...,
                          "vascular_involvement": {"<vessel>": {"challenge_score": ..., ...}},
                                                                        # with vessels.nii.gz
                          "uncalibrated": {...the same metrics...}},   # with a calibrator
               ...},
     "summary": {"<metric>": {"mean": ..., "median": ..., "ci95": [lo, hi], "n": ...},
                 "vascular_involvement.<vessel>": {...}, "cases_with_vessels": n,
                 "uncalibrated.<metric>": {...}, "change.<metric>": {...}, ...},
     "settings": {...}, "failed": {"<case>": "<why>"}, "pooled": {...}}

``change.<metric>`` is calibrated minus uncalibrated, paired per case. Values
that are undefined for a case (ECE without any annotation) are ``null`` and
left out of the summary (``n`` says how many cases count).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Dict, Optional

import numpy as np
from scipy import stats

from .. import __version__
from ..calibration import load_calibrator
from ..cohort.casemap import CaseFailed, CaseMap, each_case
from ..cohort.cases import DEFAULT_DILATION_MM, DEFAULT_PADDING_MM, load_case
from ..errors import InputError
from ..io import Case, Geometry, Volume, find_cases, read_on_grid, write_json
from ..io.finite import check_finite
from ..pipeline import run_case
from ..progress import CancelToken, ProgressCallback, no_progress
from ..vessels import VESSEL_LABELS
from .metrics import SCALAR_METRICS, CaseReference, case_metrics
from .mhr import Reliability

BOOTSTRAP_RESAMPLES = 2000
VASCULAR_KEY = "vascular_involvement"


@dataclass
class EvaluationSettings:
    """How a cohort is evaluated; recorded in the report."""

    probability_name: str = "probability.nii.gz"
    calibrator_path: Optional[str] = None
    binary_threshold: float = 0.5  # binary_dsc counts p > threshold (the challenge's strict >)
    region_policy: str = "auto"
    dilation_mm: float = DEFAULT_DILATION_MM
    padding_mm: float = DEFAULT_PADDING_MM
    bootstrap_resamples: int = BOOTSTRAP_RESAMPLES
    seed: int = 0

    def check(self) -> None:
        if not 0.0 <= self.binary_threshold < 1.0:  # also refuses NaN
            raise InputError(f"--binary-threshold must lie in [0, 1) (binary_dsc counts p > threshold as "
                             f"tumour), not {self.binary_threshold:g}.")
        if self.bootstrap_resamples < 1:
            raise InputError(f"--bootstrap must be at least 1, not {self.bootstrap_resamples}.")


def evaluate_case(case: Case, settings: EvaluationSettings, calibrator=None) -> Dict:
    """All metrics of one case; with a calibrator, also the uncalibrated ones."""
    data = load_case(case, settings.probability_name, region_policy=settings.region_policy,
                     dilation_mm=settings.dilation_mm, padding_mm=settings.padding_mm)
    # A calibrator that does not know its rater count (0) is trusted; one that does must match.
    if calibrator is not None and calibrator.raters and calibrator.raters != data.raters:
        raise InputError(
            f"Case {case.name} has {data.raters} rater(s) but the calibrator was fitted on cases with "
            f"{calibrator.raters}; its levels mean 'fraction of {calibrator.raters} raters'. Evaluate it "
            "on cases with the same number of raters."
        )
    vessels = None if case.vessels is None else read_vessel_labels(case.vessels, data.geometry, case.image)
    reference = CaseReference(data.annotations, data.mhr, data.region, data.geometry, vessels)
    if calibrator is None:
        result = case_metrics(data.probability, reference, settings.binary_threshold)
    else:
        uncalibrated = case_metrics(data.probability, reference, settings.binary_threshold)
        # The one pipeline step: calibrated inside the region only, 0 outside, as `predict` does.
        calibrated = run_case(Volume(data.probability, data.geometry), raw=data.probability,
                              region=data.region, calibrator=calibrator).calibrated
        result = case_metrics(calibrated, reference, settings.binary_threshold)
        result["uncalibrated"] = uncalibrated
    result["raters"] = data.raters
    result["region"] = data.region_description
    return result


def read_vessel_labels(path, reference: Geometry, reference_path=None) -> np.ndarray:
    """A vessel label map (CURVAS labels) on the CT grid, as int32; InputError if it holds non-integers."""
    labels = read_on_grid(path, reference, reference_path)
    check_finite(labels, path, "A vessel label map holds whole-number labels (1 portal vein, 2 SMV, 3 aorta, "
                               "4 celiac trunk, 5 SMA); fix the export.")
    if not np.issubdtype(labels.dtype, np.integer) and not np.array_equal(labels, np.round(labels)):
        raise InputError(f"{path} holds fractional values, so it is not a vessel label map (whole numbers: "
                         "1 portal vein, 2 SMV, 3 aorta, 4 celiac trunk, 5 SMA). Export the vessels as labels, "
                         "or move the file out of the case folder to evaluate without vascular involvement.")
    return labels.astype(np.int32)


def evaluate_row(case: Case, settings: EvaluationSettings, calibrator=None) -> Dict:
    """The map step of a cohort run: one case's metrics as a JSON-ready dict (what travels back)."""
    return _json_ready(evaluate_case(case, settings, calibrator))


def _finite(values) -> np.ndarray:
    values = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return values[np.isfinite(values)]


def metric_seed(seed: int, metric: str) -> np.random.Generator:
    """The random stream of one metric's interval: the run's seed and the metric's name, so an
    interval does not change when another metric is added, removed or computed in another order."""
    return np.random.default_rng([seed, zlib.crc32(metric.encode("utf-8"))])


def bootstrap_summary(values, resamples: int = BOOTSTRAP_RESAMPLES,
                      rng: Optional[np.random.Generator] = None) -> Dict:
    """Mean, median and the 95 % interval of the mean over cases.

    The interval is scipy.stats.bootstrap's percentile bootstrap (``method="percentile"``,
    ``resamples`` resamples of the cases, drawn from ``rng``). Undefined values (None, NaN) are
    left out; ``n`` is the number counted. One case, or cases that all agree, give an interval of
    zero width (there is nothing to resample).
    """
    values = _finite(values)
    if values.size == 0:
        return {"mean": None, "median": None, "ci95": [None, None], "n": 0}
    mean = float(values.mean())
    if values.size == 1 or np.all(values == values[0]):
        low = high = mean
    else:
        interval = stats.bootstrap((values,), np.mean, n_resamples=resamples, method="percentile",
                                   confidence_level=0.95, vectorized=True,
                                   rng=rng or np.random.default_rng(0)).confidence_interval
        low, high = float(interval.low), float(interval.high)
    return {"mean": mean, "median": float(np.median(values)), "ci95": [low, high], "n": int(values.size)}


def _pooled(cases: Dict[str, Dict], key: Optional[str]) -> Dict:
    """Cohort reliability (bins summed over cases) and mean agreement curve."""
    results = [c if key is None else c[key] for c in cases.values()]
    reliability: Optional[Reliability] = None
    for result in results:
        part = Reliability.from_json(result["reliability"])
        reliability = part if reliability is None else reliability + part
    if reliability is None:
        raise InputError("There are no cases to pool into a cohort reliability.")
    curves = [result["agreement_curve"] for result in results]
    return {
        "reliability": reliability.to_json(),
        "ece_mhr": reliability.ece(),
        "agreement_curve": {
            "levels": curves[0]["levels"],
            "mean_probability_ml": np.mean([c["probability_ml"] for c in curves], axis=0).tolist(),
            "mean_raters_ml": np.mean([c["raters_ml"] for c in curves], axis=0).tolist(),
        },
    }


def summarise(cases: Dict[str, Dict], settings: EvaluationSettings) -> Dict:
    """Bootstrap summary of every scalar metric (and, with a calibrator, before and change)."""
    names = sorted(cases)
    summary: Dict = {}
    calibrated = any("uncalibrated" in cases[n] for n in names)
    for metric in SCALAR_METRICS:
        before = [cases[n]["uncalibrated"][metric] for n in names] if calibrated else None
        _summarise_metric(summary, metric, [cases[n][metric] for n in names], before, settings)
    summary.update(_vascular_summary(cases, names, settings))
    return summary


def _summarise_metric(summary: Dict, key: str, after, before, settings: EvaluationSettings) -> None:
    """``key`` over the cases; with ``before`` (uncalibrated values) also ``uncalibrated.key`` and ``change.key``."""
    def interval(name, values):
        return bootstrap_summary(values, settings.bootstrap_resamples, metric_seed(settings.seed, name))

    summary[key] = interval(key, after)
    if before is not None:
        summary[f"uncalibrated.{key}"] = interval(f"uncalibrated.{key}", before)
        change = [None if a is None or b is None else a - b for a, b in zip(after, before)]
        summary[f"change.{key}"] = interval(f"change.{key}", change)


def _vascular_summary(cases: Dict[str, Dict], names, settings: EvaluationSettings) -> Dict:
    """Per vessel, the challenge score over the cases that have vessels (before, change with a calibrator)."""
    with_vessels = [n for n in names if VASCULAR_KEY in cases[n]]
    summary: Dict = {"cases_with_vessels": len(with_vessels)}
    calibrated = any("uncalibrated" in cases[n] for n in with_vessels)
    for vessel in VESSEL_LABELS if with_vessels else ():
        after = [cases[n][VASCULAR_KEY][vessel]["challenge_score"] for n in with_vessels]
        before = ([cases[n]["uncalibrated"][VASCULAR_KEY][vessel]["challenge_score"] for n in with_vessels]
                  if calibrated else None)
        _summarise_metric(summary, f"{VASCULAR_KEY}.{vessel}", after, before, settings)
    return summary


def _json_ready(value):
    """NaN and infinities become null (strict JSON); numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def evaluate_cohort(cohort, settings: EvaluationSettings, progress: ProgressCallback = no_progress,
                    token: Optional[CancelToken] = None, calibrator=None, case_map: CaseMap = map) -> Dict:
    """Evaluate every case of a cohort folder; returns the report dict (see module docstring).

    ``calibrator``: an already loaded calibrator; else the one at
    ``settings.calibrator_path``, if any. case_map: how the per-case map runs
    (see :mod:`TwinTrackLogic.cohort.casemap`; default in-process); rows come back in case order.
    """
    settings.check()
    if calibrator is None and settings.calibrator_path is not None:
        calibrator = load_calibrator(settings.calibrator_path)
    cases = find_cases(cohort)
    results: Dict[str, Dict] = {}
    failed: Dict[str, str] = {}
    progress(0.0, f"evaluating {len(cases)} case(s)")
    for case, outcome in each_case(partial(evaluate_row, settings=settings, calibrator=calibrator), cases,
                                   case_map, progress, token):
        if isinstance(outcome, CaseFailed):
            failed[case.name] = outcome.message
        else:
            results[case.name] = outcome
    progress(1.0, f"evaluated {len(results)} of {len(cases)} case(s)")
    recorded = asdict(settings)
    recorded.update(cohort=str(Path(cohort).resolve()), software_version=__version__,
                    definitions="docs/metrics.md", cases_evaluated=len(results), cases_failed=len(failed))
    if calibrator is not None:
        # Recorded because p = 0 inside the region (ensemble misses near the organ) is calibrated
        # to this value; outside the region the calibrated map stays 0 (see evaluate_case).
        at_zero = float(calibrator.transform(np.zeros(1, dtype=np.float32))[0])
        recorded.update(calibrator_method=getattr(calibrator, "method", None),
                        calibrator_raters=getattr(calibrator, "raters", None),
                        calibrated_value_at_zero=at_zero)
    report = {"cases": results, "summary": summarise(results, settings) if results else {},
              "settings": recorded, "failed": failed}
    if results:
        pooled = {"calibrated" if calibrator is not None else "probability": _pooled(results, None)}
        if calibrator is not None:
            pooled["uncalibrated"] = _pooled(results, "uncalibrated")
        report["pooled"] = pooled
    return _json_ready(report)


def write_report(path, report: Dict) -> Path:
    """Write the report as strict JSON, atomically."""
    return write_json(path, report)


def format_table(report: Dict) -> str:
    """A short terminal table: mean and 95 % CI per metric, and before/change with a calibrator."""
    summary = report["summary"]
    calibrated = any(key.startswith("uncalibrated.") for key in summary)

    def number(value) -> str:
        return "-" if value is None else f"{value:.4g}"

    header = f"{'metric':<20} {'mean':>10} {'95% CI':>24}"
    if calibrated:
        header += f" {'uncalibrated':>13} {'change':>10}"
    lines = [header, "-" * len(header)]
    rows = [(metric, metric) for metric in SCALAR_METRICS]
    rows += [(f"VI {vessel}", f"{VASCULAR_KEY}.{vessel}") for vessel in VESSEL_LABELS]
    for label, metric in rows:
        stats = summary.get(metric)
        if stats is None:
            continue
        interval = f"[{number(stats['ci95'][0])}, {number(stats['ci95'][1])}]"
        line = f"{label:<20} {number(stats['mean']):>10} {interval:>24}"
        if calibrated:
            line += (f" {number(summary[f'uncalibrated.{metric}']['mean']):>13}"
                     f" {number(summary[f'change.{metric}']['mean']):>10}")
        lines.append(line)
    cases = len(report["cases"])
    if "cases_with_vessels" in summary:
        lines.append(f"VI: the CURVAS-PDACVI vascular-involvement score in degrees (lower is better), over the "
                     f"{summary['cases_with_vessels']} of {cases} case(s) with vessels.nii.gz.")
    lines.append(f"{cases} case(s) evaluated; 95 % CI: bootstrap over cases "
                 f"({report['settings']['bootstrap_resamples']} resamples).")
    for name, why in report.get("failed", {}).items():
        lines.append(f"FAILED {name}: {why}")
    return "\n".join(lines)
