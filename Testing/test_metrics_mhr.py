"""MHR calibration metrics and the per-case metric bundle, against hand-computed values."""

import numpy as np
import pytest

from TwinTrackLogic.io import Geometry
from TwinTrackLogic.evaluation.metrics import CaseReference, SCALAR_METRICS, agreement_curve, case_metrics
from TwinTrackLogic.evaluation.mhr import Reliability, brier_mhr, ece_mhr, ece_mhr_equal_mass, soft_dice

P = np.array([0.1, 0.3, 0.8, 0.9], dtype=np.float32)
MHR = np.array([0.0, 0.4, 1.0, 0.6], dtype=np.float32)


def test_ece_mhr_hand_computed():
    # 20 bins: every voxel alone in its bin, so ECE = mean |p - MHR| = (0.1 + 0.1 + 0.2 + 0.3) / 4.
    assert ece_mhr(P, MHR) == pytest.approx(0.175, abs=1e-6)
    # 2 bins: [0.1, 0.3] -> means 0.2 vs 0.2 (0); [0.8, 0.9] -> 0.85 vs 0.8, weight 2/4.
    assert ece_mhr(P, MHR, bins=2) == pytest.approx(0.025, abs=1e-6)


def test_ece_mhr_equal_mass_differs_from_equal_width():
    p = np.array([0.1, 0.2, 0.3, 0.9])
    mhr = np.array([0.0, 0.0, 0.6, 1.0])
    # Equal width (2 bins): {0.1, 0.2, 0.3} means 0.2 vs 0.2; {0.9} 0.9 vs 1 -> 0.1 / 4.
    assert ece_mhr(p, mhr, bins=2) == pytest.approx(0.025)
    # Equal mass (2 bins of 2): {0.1, 0.2} 0.15 vs 0 -> 0.075; {0.3, 0.9} 0.6 vs 0.8 -> 0.1.
    assert ece_mhr_equal_mass(p, mhr, bins=2) == pytest.approx(0.175)


def test_p_equal_to_one_falls_in_the_last_bin():
    reliability = Reliability.of(np.array([1.0, 0.97]), np.array([1.0, 0.8]), bins=20)
    assert reliability.count[-1] == 2 and reliability.count.sum() == 2


def test_perfect_calibration_scores_zero():
    mhr = np.array([0, 0.2, 0.2, 0.6, 1.0, 1.0], dtype=np.float32)
    assert ece_mhr(mhr, mhr) == 0.0
    assert ece_mhr_equal_mass(mhr, mhr) == 0.0
    assert brier_mhr(mhr, mhr) == 0.0


def test_brier_and_soft_dice_hand_computed():
    assert brier_mhr(P, MHR) == pytest.approx((0.01 + 0.01 + 0.04 + 0.09) / 4, abs=1e-6)
    # 2 (0 + 0.12 + 0.8 + 0.54) / (2.1 + 2.0)
    assert soft_dice(P, MHR) == pytest.approx(2 * 1.46 / 4.1, abs=1e-6)


def test_soft_dice_empty_corners():
    zeros = np.zeros(3, dtype=np.float32)
    assert soft_dice(zeros, zeros) == 1.0
    assert soft_dice(zeros, np.array([0, 1, 0], dtype=np.float32)) == 0.0
    assert soft_dice(np.array([0, 0.4, 0], dtype=np.float32), zeros) == 0.0


def test_reliability_adds_over_cases_and_survives_json():
    first = Reliability.of(P[:2], MHR[:2], bins=4)
    second = Reliability.of(P[2:], MHR[2:], bins=4)
    pooled = first + second
    assert pooled.ece() == pytest.approx(ece_mhr(P, MHR, bins=4))
    again = Reliability.from_json(pooled.to_json())
    assert np.array_equal(again.count, pooled.count)
    assert again.ece() == pytest.approx(pooled.ece())
    assert pooled.to_json()["mean_probability"][2] is None  # empty bin [0.5, 0.75): null


# --- the per-case bundle -------------------------------------------------------

def small_case():
    """6 x 6 x 6 voxels of 2 x 2 x 2 mm (8 mm³ each); 3 raters; tumour touching the border."""
    geometry = Geometry((6, 6, 6), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    core = np.zeros((6, 6, 6), dtype=bool)
    core[0:2, 0:2, 0:2] = True  # corner of the image: touches three borders
    generous = core.copy()
    generous[2, 0:2, 0:2] = True
    annotations = [core, core.copy(), generous]
    mhr = (core.astype(np.float32) * 2 + generous) / np.float32(3)
    region = np.zeros(core.shape, dtype=bool)
    region[0:4, 0:4, 0:4] = True
    return CaseReference(annotations, mhr, region, geometry)


def test_case_metrics_on_a_small_case_by_hand():
    reference = small_case()
    probability = reference.mhr.copy()  # perfectly calibrated
    result = case_metrics(probability, reference)
    assert set(SCALAR_METRICS) <= set(result)
    assert result["ece_mhr"] == 0.0 and result["brier_mhr"] == 0.0
    # Volumes in the region: MHR sums to 8 voxels (core) + 4 / 3 (the generous slab) = 9.333 voxels.
    assert result["mean_rater_volume_ml"] == pytest.approx(28 / 3 * 0.008)
    assert result["expected_volume_ml"] == pytest.approx(28 / 3 * 0.008, rel=1e-6)
    assert result["volume_error_ml"] == pytest.approx(0.0, abs=1e-6)
    # Raters' volumes 8, 8, 12 voxels of 8 mm³; predicted volume = their mean.
    assert result["rater_volumes_mm3"] == [64.0, 64.0, 96.0]
    assert result["predicted_volume_mm3"] == pytest.approx(224 / 3, rel=1e-6)
    assert len(result["ece_curvas_per_rater"]) == 3
    # STAPLE >= 0.5 of (core, core, core + slab) is the core; p > 0.5 is the core too.
    assert result["binary_dsc"] == pytest.approx(1.0, abs=1e-6)


def test_case_metrics_empty_prediction():
    reference = small_case()
    result = case_metrics(np.zeros(reference.mhr.shape, dtype=np.float32), reference)
    assert result["thresh_dsc"] == 0.0 and result["binary_dsc"] == 0.0 and result["soft_dice"] == 0.0
    assert result["expected_volume_ml"] == 0.0
    # Brier: squared MHR over the 64 region voxels: 8 core voxels at 1, 4 slab voxels at (1/3)^2.
    assert result["brier_mhr"] == pytest.approx((8 * 1.0 + 4 / 9) / 64, rel=1e-6)


def test_case_metrics_empty_annotations():
    geometry = Geometry((4, 4, 4), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    empty = np.zeros((4, 4, 4), dtype=bool)
    reference = CaseReference([empty, empty], np.zeros((4, 4, 4), np.float32), ~empty, geometry)
    result = case_metrics(np.zeros((4, 4, 4), dtype=np.float32), reference)
    assert result["thresh_dsc"] == 1.0 and result["binary_dsc"] == 1.0 and result["soft_dice"] == 1.0
    assert np.isnan(result["ece_curvas"])
    assert result["crps_volume"] == 0.0 and result["ece_mhr"] == 0.0 and result["brier_mhr"] == 0.0


def test_agreement_curve_reads_calibrated_and_rater_volumes():
    # 1 mL voxels. p: 0.9, 0.6, 0.3, 0; MHR (2 raters): 1, 0.5, 0.5, 0.
    p = np.array([0.9, 0.6, 0.3, 0.0], dtype=np.float32)
    mhr = np.array([1.0, 0.5, 0.5, 0.0], dtype=np.float32)
    curve = agreement_curve(p, mhr, 1.0, levels=np.array([0.0, 0.3, 0.5, 0.6, 0.95]))
    assert curve["probability_ml"] == [4.0, 3.0, 2.0, 2.0, 0.0]
    assert curve["raters_ml"] == [4.0, 3.0, 3.0, 1.0, 1.0]
