"""Cohort evaluation: bootstrap summary, report shape, failed cases, and calibration helping."""

import json

import numpy as np
import pytest

from TwinTrackLogic.calibration import CalibrationStatistics, fit_calibrator
from TwinTrackLogic.cohort.cases import load_case
from TwinTrackLogic.io import find_cases, write_image
from TwinTrackLogic.evaluation.metrics import SCALAR_METRICS
from TwinTrackLogic.phantom import generate_case, write_case
from TwinTrackLogic.evaluation.report import (EvaluationSettings, bootstrap_summary, metric_seed, summarise, evaluate_cohort, format_table,
                                   write_report)

RATERS = 5


def overconfident(latent: np.ndarray) -> np.ndarray:
    """A sharpened, shifted version of the phantom's latent tumour field: too sure, too big."""
    clipped = np.clip(latent, 1e-4, 1 - 1e-4)
    logit = np.log(clipped / (1 - clipped))
    probability = 1 / (1 + np.exp(-4.0 * (logit + 0.7)))
    probability[latent == 0] = 0.0
    return probability.astype(np.float32)


def write_phantom_cohort(folder, indices, seed=11):
    for index in indices:
        case = generate_case(index, raters=RATERS, seed=seed, size="small")
        case_folder = write_case(case, folder)
        write_image(case_folder / "probability.nii.gz", overconfident(case.latent), case.geometry)
    return folder


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """Calibration cases 0, 1 and held-out evaluation cases 2, 3 of the same phantom cohort."""
    root = tmp_path_factory.mktemp("cohorts")
    fitting = write_phantom_cohort(root / "fit", [0, 1])
    held_out = write_phantom_cohort(root / "test", [2, 3])
    statistics = CalibrationStatistics()
    for case in find_cases(fitting):
        data = load_case(case)
        statistics.add(data.probability, data.mhr, data.region, raters=data.raters)
    calibrator = fit_calibrator(statistics, "isotonic")
    calibrator_path = root / "calibrator.json"
    calibrator.save(calibrator_path)
    return held_out, calibrator_path


# --- bootstrap ---------------------------------------------------------------

def test_bootstrap_summary_by_hand():
    summary = bootstrap_summary([1.0, 2.0, 6.0], resamples=500, rng=np.random.default_rng(1))
    assert summary["mean"] == pytest.approx(3.0) and summary["median"] == 2.0 and summary["n"] == 3
    low, high = summary["ci95"]
    assert 1.0 <= low < 3.0 < high <= 6.0  # means of resamples lie between min and max


def test_bootstrap_interval_covers_the_true_mean_about_as_often_as_it_says():
    """scipy's percentile bootstrap of the mean: about 95 % coverage on normal samples of 20 cases
    (a little under: the percentile method is known to undercover at small n)."""
    draw = np.random.default_rng(7)
    trials = 200
    hits = 0
    for trial in range(trials):
        low, high = bootstrap_summary(draw.normal(10.0, 2.0, 20), resamples=999,
                                      rng=np.random.default_rng(trial))["ci95"]
        hits += low <= 10.0 <= high
    assert 0.88 <= hits / trials <= 0.99


def test_each_metric_has_its_own_seeded_interval_whatever_else_is_summarised(monkeypatch):
    import TwinTrackLogic.evaluation.report as report

    settings = EvaluationSettings(bootstrap_resamples=300, seed=5)
    values = [0.01, 0.03, 0.02, 0.08]
    alone = bootstrap_summary(values, 300, metric_seed(5, "ece_mhr"))["ci95"]
    assert alone != bootstrap_summary(values, 300, metric_seed(5, "brier_mhr"))["ci95"]
    for metrics in (("ece_mhr",), ("brier_mhr", "ece_mhr", "soft_dice")):
        monkeypatch.setattr(report, "SCALAR_METRICS", metrics)
        cases = {f"c{i}": {metric: v + 0.1 * j for j, metric in enumerate(metrics)} | {"ece_mhr": v}
                 for i, v in enumerate(values)}
        assert summarise(cases, settings)["ece_mhr"]["ci95"] == alone


def test_bootstrap_summary_leaves_out_undefined_values():
    summary = bootstrap_summary([None, 4.0, float("nan")], resamples=50)
    assert summary == {"mean": 4.0, "median": 4.0, "ci95": [4.0, 4.0], "n": 1}
    assert bootstrap_summary([None])["mean"] is None


# --- the end-to-end claim ------------------------------------------------------

def test_calibration_lowers_mhr_errors_on_held_out_cases(split, tmp_path):
    held_out, calibrator_path = split
    settings = EvaluationSettings(calibrator_path=str(calibrator_path), bootstrap_resamples=200)
    report = evaluate_cohort(held_out, settings)
    assert sorted(report["cases"]) == ["case_002", "case_003"] and report["failed"] == {}
    for name, case in report["cases"].items():
        before = case["uncalibrated"]
        assert case["ece_mhr"] < 0.5 * before["ece_mhr"], name
        assert case["brier_mhr"] < before["brier_mhr"], name
    summary = report["summary"]
    assert summary["change.ece_mhr"]["mean"] < 0 and summary["change.brier_mhr"]["mean"] < 0
    assert summary["ece_mhr"]["mean"] < summary["uncalibrated.ece_mhr"]["mean"]
    # The pooled reliability diagram says the same thing.
    assert report["pooled"]["calibrated"]["ece_mhr"] < report["pooled"]["uncalibrated"]["ece_mhr"]

    # The file is strict JSON with the documented shape.
    path = write_report(tmp_path / "report.json", report)
    again = json.loads(path.read_text())
    case = again["cases"]["case_002"]
    for metric in ("thresh_dsc", "binary_dsc", "ece_curvas", "ece_curvas_per_rater", "crps_volume",
                   "ece_mhr", "brier_mhr", "soft_dice"):
        assert metric in case and metric in case["uncalibrated"]
    assert len(case["ece_curvas_per_rater"]) == RATERS
    for metric in SCALAR_METRICS:
        stats = again["summary"][metric]
        assert set(stats) >= {"mean", "median", "ci95"} and len(stats["ci95"]) == 2
    assert again["settings"]["calibrator_path"] == str(calibrator_path)
    assert again["settings"]["binary_threshold"] == 0.5
    assert 0.0 <= again["settings"]["calibrated_value_at_zero"] <= 1.0


def test_a_bad_case_is_reported_and_the_rest_evaluated(split, tmp_path):
    held_out, _ = split
    cohort = write_phantom_cohort(tmp_path / "cohort", [4, 5])
    (cohort / "case_005" / "probability.nii.gz").unlink()
    report = evaluate_cohort(cohort, EvaluationSettings(bootstrap_resamples=50))
    assert list(report["cases"]) == ["case_004"]
    assert "case_005" in report["failed"] and "probability.nii.gz" in report["failed"]["case_005"]
    assert "uncalibrated" not in report["cases"]["case_004"]
    assert not any(key.startswith("change.") for key in report["summary"])
    table = format_table(report)
    assert "ece_mhr" in table and "FAILED case_005" in table


def test_calibrator_with_another_rater_count_fails_the_case(split, tmp_path):
    _, calibrator_path = split
    case = generate_case(6, raters=3, seed=11, size="small")
    folder = write_case(case, tmp_path / "three")
    write_image(folder / "probability.nii.gz", overconfident(case.latent), case.geometry)
    report = evaluate_cohort(tmp_path / "three", EvaluationSettings(calibrator_path=str(calibrator_path)))
    assert report["cases"] == {}
    assert "3 rater(s)" in report["failed"]["case_006"]


def test_case_without_annotations_gives_null_ece(tmp_path):
    case = generate_case(7, raters=2, seed=11, size="small")
    case.annotations = [np.zeros_like(mask) for mask in case.annotations]
    folder = write_case(case, tmp_path / "empty")
    write_image(folder / "probability.nii.gz", np.zeros(case.geometry.shape, np.float32), case.geometry)
    report = evaluate_cohort(tmp_path / "empty", EvaluationSettings(bootstrap_resamples=20))
    result = report["cases"]["case_007"]
    assert result["ece_curvas"] is None and result["thresh_dsc"] == 1.0 and result["crps_volume"] == 0.0
    assert report["summary"]["ece_curvas"]["n"] == 0
    json.dumps(report, allow_nan=False)  # strict JSON: no NaN anywhere


def test_calibrated_map_is_zero_outside_the_region(split):
    """A calibrator that lifts p = 0 must not spread that over the whole image."""
    held_out, _ = split
    statistics = CalibrationStatistics()
    p = np.linspace(0, 1, 1000, dtype=np.float32)
    statistics.add(p, np.full_like(p, 0.4), raters=RATERS)  # maps every p to 0.4
    lifting = fit_calibrator(statistics, "isotonic")
    assert lifting.transform(np.zeros(1, np.float32))[0] == pytest.approx(0.4)
    case = find_cases(held_out)[0]
    report = evaluate_cohort(held_out, EvaluationSettings(bootstrap_resamples=10), calibrator=lifting)
    data = load_case(case)
    region_ml = data.region.sum() * data.geometry.voxel_volume_ml
    curve = report["cases"][case.name]["agreement_curve"]
    at_level = dict(zip(np.round(curve["levels"], 2), curve["probability_ml"]))
    assert at_level[0.3] == pytest.approx(region_ml, rel=1e-6)  # the region, not the whole image
    assert at_level[0.5] == 0.0
