"""Cross-validation from per-case statistics against refitting from scratch, same data, same run.

100 synthetic cases (20,000 region voxels each, 5 raters, an over-confident
p), each reduced to its calibration statistics at the default resolution
(325,632 fine bins). Two ways to get the held-out scores of every candidate
(``crossval.default_candidates``: identity, isotonic, histogram, Platt,
temperature, beta, isotonic with max_steps 30 and 100):

- TwinTrack (``crossval.cross_validate``): one dense total; each fold's
  training statistics are the total minus the held-out cases (sparse).
- reference: for each fold, the training cases' dense statistics are summed
  from scratch (``sum(...)``) and the same candidates are fitted and scored.

Both are timed on the same folds, in CPU seconds of this process (the wall
time is printed too; on a shared machine it is the CPU time times the load);
the held-out scores must agree (isotonic bit for bit). Images are never
involved: memory is the sparse per-case statistics (their size is printed),
one dense total (8 MB) and one fold's copy.

    .venv/bin/python benchmarks/bench_crossval.py            # LOO and 10-fold, 100 cases
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from TwinTrackLogic.calibration import CalibrationStatistics, fit_calibrator
from TwinTrackLogic.calibration.crossval import (CaseStatistics, _one_blas_thread, cross_validate,
                                                 default_candidates, make_folds)

RATERS = 5


def make_cases(count: int, voxels: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    cases = []
    for number in range(count):
        latent = rng.beta(0.4, 0.4, voxels)
        mhr = (rng.binomial(RATERS, latent) / RATERS).astype(np.float32)
        logit = np.log(np.clip(latent, 1e-6, 1 - 1e-6)) - np.log1p(-np.clip(latent, 1e-6, 1 - 1e-6))
        shift = rng.normal(0.0, 0.5)  # every case its own bias, as rater panels and scanners differ
        p = (1 / (1 + np.exp(-(2.5 * logit + shift + rng.normal(0, 0.4, voxels))))).astype(np.float32)
        statistics = CalibrationStatistics().add(p, mhr, raters=RATERS)
        cases.append(CaseStatistics.of(f"case_{number:03d}", statistics))
    return cases


def reference(cases, cv, candidates):
    """Per fold: sum the training cases' dense statistics from scratch, fit, score the held-out cases."""
    with _one_blas_thread():  # the same BLAS setting as cross_validate, so only the method differs
        return _reference(cases, cv, candidates)


def _reference(cases, cv, candidates):
    ece = {candidate.label: np.zeros(len(cases)) for candidate in candidates}
    for held in make_folds(len(cases), cv):
        skip = set(held.tolist())
        training = sum(case.statistics() for number, case in enumerate(cases) if number not in skip)
        for candidate in candidates:
            calibrator = fit_calibrator(training, candidate.method, **dict(candidate.options))
            for i in held:
                ece[candidate.label][i] = cases[i].statistics().expected_calibration_error(calibrator.transform)
    return ece


def timed(function, *args):
    """(result, wall seconds, CPU seconds of this process)."""
    started, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    return result, time.perf_counter() - started, time.process_time() - cpu


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--voxels", type=int, default=20_000)
    args = parser.parse_args(argv)
    cases = make_cases(args.cases, args.voxels)
    candidates = default_candidates()
    nonzero = sum(case.index.size for case in cases)
    print(f"{args.cases} cases x {args.voxels:,} voxels; sparse per-case statistics: {nonzero:,} non-empty bins "
          f"({nonzero * 32 / 1e6:.1f} MB); {len(candidates)} candidates: {', '.join(c.label for c in candidates)}")
    for cv in ("loo", 10):
        ours, our_wall, our_time = timed(cross_validate, cases, cv, candidates)
        theirs, their_wall, their_time = timed(reference, cases, cv, candidates)
        report = ours.to_dict()
        worst = 0.0
        for candidate in candidates:
            got = np.array([report["per_case"][case.name][candidate.label]["ece"] for case in cases])
            if candidate.method == "isotonic":
                assert np.array_equal(got, theirs[candidate.label]), candidate.label
            worst = max(worst, float(np.abs(got - theirs[candidate.label]).max()))
        print(f"--cv {cv}: {report['folds']} folds, {report['folds'] * len(candidates)} fits")
        print(f"  TwinTrack (total minus held-out): CPU {our_time:6.2f} s (wall {our_wall:6.2f} s; includes the "
              f"bootstrap, {report['bootstrap_resamples']} resamples)")
        print(f"  reference (sum from scratch):     CPU {their_time:6.2f} s (wall {their_wall:6.2f} s)")
        print(f"  ratio (CPU): {their_time / our_time:.1f}x faster; held-out per-case ECE agree "
              f"(isotonic bit for bit, all within {worst:.1e})")
        print(f"  verdict: {report['verdict']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
