"""Cross-validation from per-case statistics: how a calibrator does on cases it has not seen.

Each case is kept as its own sparse :class:`CaseStatistics`. A fold's
training statistics are "all cases minus the held-out ones", built from one
dense total with no second pass over any image; since the per-bin sums are
exact (see :mod:`.statistics`), that equals the from-scratch sum of the
training cases bit for bit with voxel weights (with equal case weights, to
rounding). Every candidate (identity included) is fitted on each fold and
scored on each held-out case, against that case's MHR, inside its region:

- per case: ECE against MHR (``ECE_MHR_BINS`` equal-width bins) and Brier
  score against MHR; summarised as mean, median, share of cases improved
  over the identity, and the mean paired change against the identity;
- pooled: the same two over all held-out voxels together;
- 95 % intervals: percentile bootstrap over cases (the same resamples for
  every candidate, so changes are paired).

The rule that ``--method auto`` uses (:data:`RULE`) picks a calibrator only
when the held-out numbers say it helps; otherwise the identity (keep the raw
map). Memory: the sparse cases and one dense total, never an image.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import InputError
from .calibrators import METHODS, check_options, fit_calibrator
from .statistics import ECE_MHR_BINS, CalibrationStatistics, reliability_sums
from .weighting import check_case_weight

BOOTSTRAP_RESAMPLES = 2000
RULE = ("the candidate with the lowest mean held-out per-case ECE among those whose mean paired change "
        "in per-case ECE against the raw map has a 95 % bootstrap interval entirely below 0, which lower the "
        "pooled held-out ECE, and which lower the mean held-out per-case Brier score (a proper score: a "
        "coarser map can lower a binned ECE without being closer to the MHR); the identity (keep the raw "
        "map) when there is none")


@dataclass(frozen=True)
class Candidate:
    """A method with its options, as cross-validation fits it."""

    method: str
    options: Tuple[Tuple[str, object], ...] = ()

    @classmethod
    def of(cls, method: str, **options) -> "Candidate":
        completed = check_options(method, options)
        return cls(method, tuple(sorted(completed.items())))

    @property
    def label(self) -> str:
        defaults = {option.name: option.default for option in METHODS[self.method].options}
        changed = [f"{name}={value}" for name, value in self.options if defaults.get(name) != value]
        return f"{self.method}({', '.join(changed)})" if changed else self.method


def default_candidates(options_by_method: Optional[Dict[str, dict]] = None) -> List[Candidate]:
    """Every method once (with the given options), plus regularised isotonic fits (max_steps 30, 100).

    The grid is the study's (docs/calibration-study.md: max_steps 10 was worse than no calibration).
    """
    options_by_method = options_by_method or {}
    order = ["identity", "isotonic"] + sorted(set(METHODS) - {"identity", "isotonic"})
    candidates = [Candidate.of(method, **options_by_method.get(method, {})) for method in order]
    for steps in (30, 100):
        candidate = Candidate.of("isotonic", **{**options_by_method.get("isotonic", {}), "max_steps": steps})
        if candidate not in candidates:
            candidates.append(candidate)
    return candidates


@dataclass
class CaseStatistics:
    """One case's statistics, sparse: its non-empty fine bins only."""

    name: str
    bins: int
    index: np.ndarray  # fine-bin numbers (intp), increasing
    counts: np.ndarray  # int64
    sum_p: np.ndarray
    sum_mhr: np.ndarray
    sum_mhr_squared: float
    raters: Optional[int]

    @classmethod
    def of(cls, name: str, statistics: CalibrationStatistics) -> "CaseStatistics":
        if statistics.sum_mhr_squared is None:
            raise InputError(f"Case {name}: its statistics lack 'sum_mhr_squared'; recompute them from the images.")
        index = np.flatnonzero(statistics.counts)
        return cls(name, statistics.bins, index, statistics.counts[index].copy(), statistics.sum_p[index].copy(),
                   statistics.sum_mhr[index].copy(), float(statistics.sum_mhr_squared), statistics.raters)

    @property
    def voxels(self) -> int:
        return int(self.counts.sum())

    def statistics(self) -> CalibrationStatistics:
        """The dense statistics again (for fitting on this case alone)."""
        dense = CalibrationStatistics(self.bins)
        dense.counts[self.index] = self.counts
        dense.sum_p[self.index] = self.sum_p
        dense.sum_mhr[self.index] = self.sum_mhr
        dense.sum_mhr_squared, dense.cases, dense.raters = self.sum_mhr_squared, 1, self.raters
        return dense


def make_folds(cases: int, cv: Union[str, int], seed: int = 0) -> List[np.ndarray]:
    """Held-out case numbers of each fold: ``"loo"`` (one case each) or K folds of a seeded shuffle."""
    if cv == "loo":
        return [np.array([number]) for number in range(cases)]
    folds = int(cv)
    if not 2 <= folds <= cases:
        raise InputError(f"--cv {cv}: K-fold cross-validation needs 2 <= K <= the number of cases ({cases}); "
                         "use --cv loo to hold out one case at a time.")
    order = np.random.default_rng(seed).permutation(cases)
    return [np.sort(order[fold::folds]) for fold in range(folds)]


@dataclass
class _Scores:
    ece: np.ndarray  # per case
    brier: np.ndarray
    bin_weight: np.ndarray  # cases x ECE bins, for pooling and reliability diagrams
    bin_value: np.ndarray
    bin_mhr: np.ndarray


@dataclass
class CrossValidation:
    """The outcome of :func:`cross_validate`; :meth:`to_dict` is what the calibrator file stores."""

    report: Dict
    chosen: Candidate
    candidates: List[Candidate] = field(default_factory=list)

    def to_dict(self) -> Dict:
        return self.report

    @property
    def verdict(self) -> str:
        return self.report["verdict"]


def _case_factors(cases: Sequence[CaseStatistics], case_weight: str) -> np.ndarray:
    voxels = np.array([case.voxels for case in cases], dtype=np.float64)
    if case_weight == "voxels":
        return np.ones(voxels.size)
    return voxels.mean() / voxels


def _dense_total(cases: Sequence[CaseStatistics], factors: np.ndarray, weighted: bool) -> CalibrationStatistics:
    total = CalibrationStatistics(cases[0].bins)
    if weighted:
        total.counts = total.counts.astype(np.float64)
    for case, factor in zip(cases, factors, strict=True):
        if weighted:
            total.counts[case.index] += case.counts * factor
            total.sum_p[case.index] += case.sum_p * factor
            total.sum_mhr[case.index] += case.sum_mhr * factor
        else:
            total.counts[case.index] += case.counts
            total.sum_p[case.index] += case.sum_p
            total.sum_mhr[case.index] += case.sum_mhr
    total.cases = len(cases)
    total.raters = cases[0].raters
    return total


def training_statistics(total: CalibrationStatistics, held_out: Sequence[CaseStatistics],
                        factors: Optional[Sequence[float]] = None) -> CalibrationStatistics:
    """``total`` minus the held-out cases (a new object; ``total`` is unchanged).

    factors: the held-out cases' weights when ``total`` holds weighted (equal-case) sums; None for
    voxel weights, where the subtraction is exact.
    """
    training = CalibrationStatistics(total.bins)
    training.counts, training.sum_p, training.sum_mhr = total.counts.copy(), total.sum_p.copy(), total.sum_mhr.copy()
    training.sum_mhr_squared = None  # only the held-out cases' own value is ever needed
    training.cases, training.raters = total.cases - len(held_out), total.raters
    for number, case in enumerate(held_out):
        factor = 1 if factors is None else factors[number]
        training.counts[case.index] -= case.counts * factor
        training.sum_p[case.index] -= case.sum_p * factor
        training.sum_mhr[case.index] -= case.sum_mhr * factor
    if factors is not None:
        # Rounding may leave a residue far below one voxel's weight where only held-out voxels were.
        touched = np.unique(np.concatenate([case.index for case in held_out]))
        residue = touched[training.counts[touched] < 1e-12 * total.counts[touched]]
        training.counts[residue] = training.sum_p[residue] = training.sum_mhr[residue] = 0.0
    return training


def _score(case: CaseStatistics, values: np.ndarray) -> Tuple[float, float, np.ndarray, np.ndarray, np.ndarray]:
    counts = case.counts.astype(np.float64)
    weight, value_sum, mhr_sum = reliability_sums(values, counts, case.sum_mhr, ECE_MHR_BINS)
    ece = float(np.abs(value_sum - mhr_sum).sum() / counts.sum())
    # Element-wise sums, not np.dot: a BLAS call wakes its thread pool, whose spinning threads
    # made the whole cross-validation twice as slow in CPU time on a 2-core machine (measured).
    brier = float((np.sum(counts * values * values) - 2.0 * np.sum(values * case.sum_mhr)
                   + case.sum_mhr_squared) / counts.sum())
    return ece, brier, weight, value_sum, mhr_sum


def _interval(samples: np.ndarray) -> List[float]:
    low, high = np.percentile(samples, [2.5, 97.5])
    return [float(low), float(high)]


def _resampled_sums(draws: np.ndarray, per_case: np.ndarray) -> np.ndarray:
    """Sum over each bootstrap resample's cases (rows of ``draws``) of ``per_case`` (cases x ...).

    Indexing, not a matrix product: see :func:`_score` on BLAS threads.
    """
    return per_case[draws].sum(axis=1)


def _pooled_ece(draws: np.ndarray, scores: _Scores) -> np.ndarray:
    """Pooled ECE of each bootstrap resample (rows of ``draws``: the case numbers drawn)."""
    value = _resampled_sums(draws, scores.bin_value)
    mhr = _resampled_sums(draws, scores.bin_mhr)
    weight = _resampled_sums(draws, scores.bin_weight.sum(axis=1))
    return np.abs(value - mhr).sum(axis=1) / weight


def _one_blas_thread():
    """A context that keeps BLAS to one thread, where threadpoolctl is installed.

    The smooth fits call BLAS on vectors of 2 or 3 numbers (L-BFGS-B) hundreds of times; each call
    wakes the BLAS thread pool, whose spinning threads made cross-validation 2.3 times slower in CPU
    time on a 2-core machine (benchmarks/bench_crossval.py).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def cross_validate(cases: Sequence[CaseStatistics], cv: Union[str, int] = "loo",
                   candidates: Optional[Sequence[Candidate]] = None, case_weight: str = "voxels",
                   resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> CrossValidation:
    """Score every candidate out of sample; see the module docstring for what is reported."""
    with _one_blas_thread():
        return _cross_validate(cases, cv, candidates, case_weight, resamples, seed)


def _cross_validate(cases, cv, candidates, case_weight, resamples, seed) -> CrossValidation:
    case_weight = check_case_weight(case_weight)
    if len(cases) < 2:
        raise InputError(f"Cross-validation needs at least 2 usable cases, not {len(cases)}.")
    if len({case.bins for case in cases}) != 1:
        raise InputError("The cases' statistics use different fine-bin layouts; compute them with one --bins.")
    if len({case.raters for case in cases}) != 1:
        raise InputError("The cases have different rater counts; MHR levels only mean the same thing "
                         "with the same number of raters.")
    candidates = list(candidates) if candidates is not None else default_candidates()
    identity = Candidate.of("identity")
    if identity not in candidates:
        candidates.insert(0, identity)
    folds = make_folds(len(cases), cv, seed)
    factors = _case_factors(cases, case_weight)
    weighted = case_weight != "voxels"
    total = _dense_total(cases, factors, weighted)
    layout_means = [case.sum_p / case.counts for case in cases]

    n = len(cases)
    scores = {c: _Scores(np.zeros(n), np.zeros(n), *(np.zeros((n, ECE_MHR_BINS)) for _ in range(3)))
              for c in candidates}
    for held in folds:
        training = training_statistics(total, [cases[i] for i in held], factors[held] if weighted else None)
        for candidate in candidates:
            calibrator = fit_calibrator(training, candidate.method, **dict(candidate.options))
            for i in held:
                values = calibrator.transform(layout_means[i]).astype(np.float64)
                s = scores[candidate]
                s.ece[i], s.brier[i], s.bin_weight[i], s.bin_value[i], s.bin_mhr[i] = _score(cases[i], values)

    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(resamples, n))
    everything = np.arange(n)[None, :]
    voxels = np.array([case.voxels for case in cases], dtype=np.float64)
    base = scores[identity]
    base_pooled = _pooled_ece(draws, base)
    methods = {}
    for candidate in candidates:
        s = scores[candidate]
        pooled = _pooled_ece(draws, s)
        pooled_brier = _resampled_sums(draws, s.brier * voxels) / _resampled_sums(draws, voxels)
        change = s.ece - base.ece
        brier_change = s.brier - base.brier
        methods[candidate.label] = {
            "method": candidate.method, "options": dict(candidate.options),
            "per_case_ece": {"mean": float(s.ece.mean()), "median": float(np.median(s.ece)),
                             "ci95": _interval(_resampled_sums(draws, s.ece) / n)},
            "per_case_brier": {"mean": float(s.brier.mean()), "median": float(np.median(s.brier)),
                               "ci95": _interval(_resampled_sums(draws, s.brier) / n)},
            "pooled_ece": {"value": float(_pooled_ece(everything, s)[0]), "ci95": _interval(pooled)},
            "pooled_brier": {"value": float(np.sum(s.brier * voxels) / voxels.sum()),
                             "ci95": _interval(pooled_brier)},
            "change_per_case_ece": {"mean": float(change.mean()),
                                    "ci95": _interval(_resampled_sums(draws, change) / n)},
            "change_per_case_brier": {"mean": float(brier_change.mean()),
                                      "ci95": _interval(_resampled_sums(draws, brier_change) / n)},
            "change_pooled_ece": {"value": float(_pooled_ece(everything, s)[0]
                                                 - _pooled_ece(everything, base)[0]),
                                  "ci95": _interval(pooled - base_pooled)},
            "cases_improved": int(np.sum(change < 0)),
            "share_improved": float(np.mean(change < 0)),
        }
    chosen = choose(methods, candidates, identity)
    best = min((c for c in candidates if c != identity), key=lambda c: methods[c.label]["per_case_ece"]["mean"],
               default=identity)
    shown = {c.label: c for c in (identity, chosen, best)}
    report = {
        "cv": cv if cv == "loo" else int(cv), "folds": len(folds), "cases": n, "case_weight": case_weight,
        "ece_bins": ECE_MHR_BINS, "bootstrap_resamples": resamples, "seed": seed,
        "candidates": [c.label for c in candidates], "methods": methods,
        "per_case": {case.name: {c.label: {"ece": float(scores[c].ece[i]), "brier": float(scores[c].brier[i])}
                                 for c in candidates} for i, case in enumerate(cases)},
        "reliability": {label: {"count": scores[c].bin_weight.tolist(), "sum_value": scores[c].bin_value.tolist(),
                                "sum_mhr": scores[c].bin_mhr.tolist()}
                        for label, c in shown.items()},
        "rule": RULE, "chosen": chosen.label, "best": best.label, "verdict": verdict(methods, chosen, identity, n),
    }
    return CrossValidation(report, chosen, candidates)


def choose(methods: Dict[str, Dict], candidates: Sequence[Candidate], identity: Candidate) -> Candidate:
    """The candidate :data:`RULE` picks from the summaries in ``methods``."""
    best, best_ece = identity, np.inf
    for candidate in candidates:
        if candidate == identity:
            continue
        summary = methods[candidate.label]
        helps = (summary["change_per_case_ece"]["ci95"][1] < 0 and summary["change_pooled_ece"]["value"] < 0
                 and summary["change_per_case_brier"]["mean"] < 0)
        if helps and summary["per_case_ece"]["mean"] < best_ece:
            best, best_ece = candidate, summary["per_case_ece"]["mean"]
    return best


def verdict(methods: Dict[str, Dict], chosen: Candidate, identity: Candidate, cases: int) -> str:
    """One line: what the chosen calibrator does out of sample, or that none helps."""
    raw = methods[identity.label]
    if chosen == identity:
        others = [label for label in methods if label != identity.label]
        best = min(others, key=lambda label: methods[label]["per_case_ece"]["mean"])
        change = methods[best]["change_per_case_ece"]
        return (f"no method beats the raw map out of sample: keep it (best, {best}: held-out per-case ECE "
                f"change {change['mean']:+.4f} [{change['ci95'][0]:+.4f}, {change['ci95'][1]:+.4f}], "
                f"lower on {methods[best]['cases_improved']} of {cases} cases)")
    summary = methods[chosen.label]
    change = summary["change_per_case_ece"]
    return (f"{chosen.label} lowers held-out per-case ECE on {summary['cases_improved']} of {cases} cases, "
            f"mean {change['mean']:+.4f} [{change['ci95'][0]:+.4f}, {change['ci95'][1]:+.4f}]; pooled ECE "
            f"{raw['pooled_ece']['value']:.4f} -> {summary['pooled_ece']['value']:.4f}")



def summary_lines(report: Dict) -> List[str]:
    """The terminal table of a cross-validation report (held-out values, 95 % intervals)."""
    cv = "leave-one-case-out" if report["cv"] == "loo" else f"{report['cv']}-fold"
    lines = [f"Cross-validation ({cv}, {report['cases']} cases, case weight {report['case_weight']}); "
             f"held out, against MHR, ECE with {report['ece_bins']} bins, 95 % bootstrap intervals over cases:",
             f"  {'method':<26} {'per-case ECE':>26} {'median':>7} {'improved':>9} {'pooled ECE':>26} "
             f"{'per-case Brier':>15} {'pooled Brier':>13}"]

    def with_interval(value, interval):
        return f"{value:.4f} [{interval[0]:.4f}, {interval[1]:.4f}]"

    for label, summary in report["methods"].items():
        case_ece, pooled = summary["per_case_ece"], summary["pooled_ece"]
        improved = "-" if summary["method"] == "identity" else f"{summary['cases_improved']}/{report['cases']}"
        mark = "*" if label == report["chosen"] else " "
        lines.append(f"{mark} {label:<26} {with_interval(case_ece['mean'], case_ece['ci95']):>26} "
                     f"{case_ece['median']:>7.4f} {improved:>9} {with_interval(pooled['value'], pooled['ci95']):>26} "
                     f"{summary['per_case_brier']['mean']:>15.4f} {summary['pooled_brier']['value']:>13.4f}")
    lines.append(f"Verdict: {report['verdict']}")
    return lines
