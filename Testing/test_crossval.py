"""Cross-validation from per-case statistics, case weights and ``auto``: the issue-12 contract."""

import numpy as np
import pytest

from TwinTrackLogic.calibration import CalibrationStatistics, fit_calibrator
from TwinTrackLogic.calibration.crossval import (Candidate, CaseStatistics, cross_validate, make_folds,
                                                 training_statistics)
from TwinTrackLogic.calibration.weighting import CasePool
from TwinTrackLogic.errors import InputError

RATERS = 5
BINS = 1 << 14  # a coarser layout than the default keeps these tests fast; the algebra is the same


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def case_pairs(seed, voxels, sharpness, shift=0.0):
    """(p, MHR) of one synthetic case: K binomial raters on a latent level; p a distorted view of it.

    sharpness 1 and shift 0 give an already calibrated p; the latent level has a heavy mass near 0
    and 1 (p reaches 1e-12), and a few exact zeros (MHR 0) are added, as an ensemble gives far from a tumour.
    """
    rng = np.random.default_rng(seed)
    latent = rng.beta(0.3, 0.3, voxels)
    mhr = (rng.binomial(RATERS, latent) / RATERS).astype(np.float32)
    logit = np.log(np.clip(latent, 1e-12, 1 - 1e-7)) - np.log1p(-np.clip(latent, 1e-12, 1 - 1e-7))
    p = sigmoid(sharpness * logit + shift).astype(np.float32)
    p[:20], mhr[:20] = 0.0, 0.0
    return p, mhr


def case_statistics(p, mhr):
    return CalibrationStatistics(BINS).add(p, mhr, raters=RATERS)


def cohort(sharpness, shift=0.0, cases=8, seed=0):
    rng = np.random.default_rng(seed)
    result = []
    for number in range(cases):
        p, mhr = case_pairs(seed * 100 + number, int(rng.integers(3_000, 12_000)), sharpness, shift)
        result.append(CaseStatistics.of(f"case_{number}", case_statistics(p, mhr)))
    return result


def from_scratch(cases, skip):
    return sum(case.statistics() for number, case in enumerate(cases) if number not in skip)


@pytest.mark.parametrize("cv", ["loo", 3])
def test_cross_validated_fits_equal_fits_from_scratch(cv):
    cases = cohort(sharpness=3.0, shift=0.4)
    total = sum(case.statistics() for case in cases)
    isotonic = Candidate.of("isotonic")
    report = cross_validate(cases, cv, [isotonic, Candidate.of("platt")], resamples=50).to_dict()
    for held in make_folds(len(cases), cv):
        training = training_statistics(total, [cases[i] for i in held])
        scratch = from_scratch(cases, set(held.tolist()))
        # "total minus the held-out cases" is the sum of the training cases, bit for bit
        assert np.array_equal(training.counts, scratch.counts)
        assert np.array_equal(training.sum_p, scratch.sum_p)
        assert np.array_equal(training.sum_mhr, scratch.sum_mhr)
        assert training.cases == scratch.cases == len(cases) - len(held)
        via_cv, direct = fit_calibrator(training, "isotonic"), fit_calibrator(scratch, "isotonic")
        assert np.array_equal(via_cv.x, direct.x) and np.array_equal(via_cv.y, direct.y)
        platt_cv, platt_direct = fit_calibrator(training, "platt"), fit_calibrator(scratch, "platt")
        assert (platt_cv.a, platt_cv.b) == (platt_direct.a, platt_direct.b)
        for i in held:  # the held-out score is the from-scratch fit's score on that case
            held_out = cases[i].statistics()
            expected = held_out.expected_calibration_error(direct.transform)
            assert report["per_case"][cases[i].name]["isotonic"]["ece"] == pytest.approx(expected, rel=1e-12)
            assert report["per_case"][cases[i].name]["isotonic"]["brier"] == pytest.approx(
                held_out.brier_score(direct.transform), rel=1e-9)
            identity = fit_calibrator(scratch, "identity").transform  # p as float32, as maps are
            assert report["per_case"][cases[i].name]["identity"]["ece"] == pytest.approx(
                held_out.expected_calibration_error(identity), rel=1e-12)


def test_brier_from_statistics_matches_per_voxel_brier():
    p, mhr = case_pairs(3, 20_000, sharpness=2.0, shift=-0.5)
    statistics = case_statistics(p, mhr)
    calibrator = fit_calibrator(statistics, "beta")
    per_voxel = np.mean((calibrator.transform(p).astype(np.float64) - mhr) ** 2)
    assert statistics.brier_score(calibrator.transform) == pytest.approx(per_voxel, abs=1e-5)
    assert statistics.brier_score() == pytest.approx(np.mean((p.astype(np.float64) - mhr) ** 2), abs=1e-7)


def test_identity_is_chosen_when_the_raw_map_is_already_calibrated():
    cross_validation = cross_validate(cohort(sharpness=1.0, cases=10, seed=1), "loo", resamples=500)
    report = cross_validation.to_dict()
    assert cross_validation.chosen == Candidate.of("identity")
    assert report["chosen"] == "identity" and report["verdict"].startswith("no method beats the raw map")
    # every method was scored, identity included, with intervals around the means
    assert set(report["methods"]) >= {"identity", "isotonic", "histogram", "platt", "temperature", "beta"}
    for summary in report["methods"].values():
        low, high = summary["per_case_ece"]["ci95"]
        assert low <= summary["per_case_ece"]["mean"] <= high


def test_a_calibrator_is_chosen_when_it_helps_on_held_out_cases():
    report = cross_validate(cohort(sharpness=3.0, shift=0.8, cases=10, seed=2), 5, resamples=500).to_dict()
    chosen = report["methods"][report["chosen"]]
    assert report["chosen"] != "identity"
    assert chosen["change_per_case_ece"]["ci95"][1] < 0 and chosen["change_pooled_ece"]["value"] < 0
    assert chosen["change_per_case_brier"]["mean"] < 0
    assert f"on {chosen['cases_improved']} of 10 cases" in report["verdict"]
    assert chosen["per_case_ece"]["mean"] < report["methods"]["identity"]["per_case_ece"]["mean"]


def duplicated(p, mhr, times):
    return np.tile(p, times), np.tile(mhr, times)


def pooled_fit(parts, case_weight):
    pool = CasePool(case_weight, BINS)
    for p, mhr in parts:
        pool.add(case_statistics(p, mhr))
    return fit_calibrator(pool.total(), "isotonic")


def test_equal_case_weights_make_one_huge_case_count_like_the_others():
    parts = [case_pairs(10, 4_000, 3.0, 0.5), case_pairs(11, 4_000, 3.0, 0.5), case_pairs(12, 4_000, 0.5, -1.0)]
    huge = parts[:2] + [duplicated(*parts[2], times=9)]  # the same case, nine times the voxels
    equal, equal_huge = pooled_fit(parts, "equal"), pooled_fit(huge, "equal")
    np.testing.assert_allclose(equal.x, equal_huge.x, rtol=1e-12, atol=0)
    np.testing.assert_allclose(equal.y, equal_huge.y, rtol=0, atol=1e-12)
    # with voxel weights the huge case takes over the fit
    voxels, voxels_huge = pooled_fit(parts, "voxels"), pooled_fit(huge, "voxels")
    grid = np.linspace(0, 1, 201, dtype=np.float32)
    assert np.abs(voxels.transform(grid) - voxels_huge.transform(grid)).max() > 0.1
    # and cross-validation with equal weights scores the two cohorts alike
    as_cases = [CaseStatistics.of(f"c{n}", case_statistics(p, m)) for n, (p, m) in enumerate(parts)]
    as_cases_huge = [CaseStatistics.of(f"c{n}", case_statistics(p, m)) for n, (p, m) in enumerate(huge)]
    candidates = [Candidate.of("isotonic")]
    first = cross_validate(as_cases, "loo", candidates, case_weight="equal", resamples=20).to_dict()
    second = cross_validate(as_cases_huge, "loo", candidates, case_weight="equal", resamples=20).to_dict()
    for name in ("c0", "c1"):  # (to rounding: a calibrated value on an ECE bin edge, e.g. 3/5, may move bins)
        assert first["per_case"][name]["isotonic"]["ece"] == pytest.approx(
            second["per_case"][name]["isotonic"]["ece"], abs=1e-5)
        assert first["per_case"][name]["isotonic"]["ece"] != pytest.approx(
            cross_validate(as_cases_huge, "loo", candidates, resamples=20).to_dict()
            ["per_case"][name]["isotonic"]["ece"], abs=1e-4)  # voxel weights: the huge case shows


def test_regularised_isotonic_has_at_most_max_steps_levels():
    p, mhr = case_pairs(5, 30_000, 3.0, 0.3)
    statistics = case_statistics(p, mhr)
    plain = fit_calibrator(statistics, "isotonic")
    pooled = fit_calibrator(statistics, "isotonic", max_steps=10)
    assert np.unique(pooled.y).size <= 10 < np.unique(plain.y).size
    assert np.all(np.diff(pooled.y) >= 0)
    # pooling keeps the total: calibrated values still sum to the MHR on the fitting voxels
    assert pooled.transform(p).sum(dtype=np.float64) == pytest.approx(mhr.sum(dtype=np.float64), rel=1e-2)


def test_folds_and_refusals():
    folds = make_folds(10, 3)
    assert sorted(np.concatenate(folds).tolist()) == list(range(10)) and len(folds) == 3
    assert [f.tolist() for f in make_folds(3, "loo")] == [[0], [1], [2]]
    with pytest.raises(InputError, match="--cv 11"):
        make_folds(10, 11)
    with pytest.raises(InputError, match="at least 2"):
        cross_validate(cohort(1.0, cases=1), "loo")
