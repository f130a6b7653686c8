"""The CURVAS-PDACVI vascular-involvement score against the official code's own numbers.

The reference numbers were computed once by running the challenge's official evaluation code on
the cases of vascular_helpers.build_cases (Testing/data/vascular_involvement_official.json says
how); the tests rebuild the arrays, check they are the ones that were scored (sha256), and
compare. The hand-built tests check the contact count's direction quirk and the fallback rules
from their definitions.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from TwinTrackCLI import EXIT_OK, main
from TwinTrackLogic.calibration import CalibrationStatistics, fit_calibrator
from TwinTrackLogic.evaluation.report import EvaluationSettings, evaluate_cohort, format_table
from TwinTrackLogic.evaluation.vascular import (
    ANGLE_GRID_DEG,
    OFFICIAL_PLANE_NAMES,
    PLANE_AXES,
    challenge_vi,
    contact_angles_deg,
    plane_score_deg,
    prediction_masks,
    vascular_involvement,
)
from TwinTrackLogic.io import Geometry, write_image
from TwinTrackLogic.vessels import VESSEL_LABELS
from vascular_helpers import OFFICIAL_REFERENCE, build_cases, digest

REFERENCE = json.loads((Path(__file__).parent / "data" / OFFICIAL_REFERENCE).read_text())["cases"]
TOLERANCE_DEG = 1e-3


@pytest.fixture(scope="module")
def cases():
    return build_cases()


def _arrays(case):
    arrays = {"vessels": case.vessels, "probability": case.probability}
    arrays.update({f"annotation_{i + 1}": mask.astype(np.uint8) for i, mask in enumerate(case.annotations)})
    return arrays


def _official_angles(records):
    """(masks, 3) in our plane order from the official per-mask dicts."""
    return np.array([[record[OFFICIAL_PLANE_NAMES[plane]] for plane in PLANE_AXES] for record in records])


def test_vascular_reference_cases_are_the_arrays_that_were_scored(cases):
    assert sorted(cases) == sorted(REFERENCE)
    for name, case in cases.items():
        assert {key: digest(array) for key, array in _arrays(case).items()} == REFERENCE[name]["sha256"], name


def test_vascular_challenge_score_equals_the_official_code(cases):
    for name, case in cases.items():
        scores = challenge_vi(case.probability, case.annotations, case.vessels)
        for vessel in VESSEL_LABELS:
            official = REFERENCE[name]["challenge_score"][vessel]
            assert scores[vessel]["challenge_score"] == pytest.approx(official, abs=TOLERANCE_DEG), (name, vessel)


def test_vascular_contact_angles_equal_the_official_code_per_mask(cases):
    for name, case in cases.items():
        raters = contact_angles_deg(case.annotations, case.vessels)
        thresholds = contact_angles_deg(prediction_masks(case.probability), case.vessels)
        for vessel in VESSEL_LABELS:
            official = REFERENCE[name]["max_angles_deg"][vessel]
            np.testing.assert_allclose(raters[vessel], _official_angles(official["raters"]), atol=1e-9,
                                       err_msg=f"{name} {vessel} raters")
            np.testing.assert_allclose(thresholds[vessel], _official_angles(official["thresholds"]), atol=1e-9,
                                       err_msg=f"{name} {vessel} thresholds")


def test_vascular_reference_covers_the_quirks(cases):
    """The stored cases reach what the docs claim was checked: angles above 360° and a 0-or-360 fallback."""
    largest = max(max(record[plane] for record in side for plane in record)
                  for case in REFERENCE.values() for vessel in case["max_angles_deg"].values()
                  for side in vessel.values())
    assert largest > 360.0
    assert REFERENCE["unanimous_raters_graded_prediction"]["challenge_score"]["SMV"] == 360.0
    assert REFERENCE["unanimous_raters_unanimous_prediction"]["challenge_score"]["SMV"] == 0.0


def _square_vessel_and_tumour(tumour_column):
    """One axial slice: a 3x3 SMA at rows 10-12, columns 10-12, and a one-voxel tumour in row 11."""
    vessels = np.zeros((1, 30, 30), np.uint8)
    vessels[0, 10:13, 10:13] = VESSEL_LABELS["SMA"]
    tumour = np.zeros(vessels.shape, bool)
    tumour[0, 11, tumour_column] = True
    return vessels, tumour


def test_vascular_contact_count_looks_one_way_only():
    # Tumour at column 14, one voxel of gap to the SMA's right edge. Grown by one voxel it reaches
    # column 13. Axial slice (rim: the 8 border voxels of the square): the rim voxel (11, 12) is
    # counted by the horizontal and by the anti-diagonal kernel (partner one column on, (11, 13)),
    # and (10, 12) by the diagonal kernel (partner (11, 13)): 3 of 8, 135°. Coronal slice y = 11
    # (one voxel thick, so its 3 vessel voxels are all rim): (0, 12) by horizontal and
    # anti-diagonal: 2 of 3, 240°. No sagittal slice holds both.
    vessels, right = _square_vessel_and_tumour(14)
    np.testing.assert_allclose(contact_angles_deg([right], vessels)["SMA"], [[135.0, 240.0, 0.0]])
    # The mirror image, tumour at column 8: the kernels only look one column or row on, so no contact.
    vessels, left = _square_vessel_and_tumour(8)
    np.testing.assert_allclose(contact_angles_deg([left], vessels)["SMA"], [[0.0, 0.0, 0.0]])
    assert all(not contact_angles_deg([left], vessels)[name].any() for name in VESSEL_LABELS)


def test_vascular_fallback_rules_by_hand():
    # Unanimous sets at angles off the 1000-point grid vanish there: both vanish -> 0, however far apart.
    assert 90.0 not in ANGLE_GRID_DEG and 100.0 not in ANGLE_GRID_DEG
    assert plane_score_deg(np.full(5, 90.0), np.full(6, 100.0)) == 0.0
    # Raters unanimous off the grid, prediction spread: the maximum penalty.
    assert plane_score_deg(np.full(5, 90.0), np.array([0.0, 20, 40, 60, 80, 100])) == 360.0
    # Raters unanimous at 0° (on the grid), prediction unanimous off it: |0 - 0| = 0, a "perfect" score.
    assert plane_score_deg(np.zeros(5), np.full(6, 90.0)) == 0.0
    # Identical spread sets: the two fits coincide.
    angles = np.array([10.0, 30, 50, 70, 90])
    assert plane_score_deg(angles, angles) == pytest.approx(0.0, abs=1e-9)
    # Raters all 0°, prediction 0..100°: W1 between a spike at 0 and a normal (mean 50, sd 34.2)
    # truncated to [0, 360] is the truncated normal's mean, computed here independently.
    spread = np.array([0.0, 20, 40, 60, 80, 100])
    density = np.exp(-0.5 * ((ANGLE_GRID_DEG - spread.mean()) / (spread.std() + 1e-6)) ** 2)
    expected = float(np.sum(ANGLE_GRID_DEG * density) / np.sum(density))
    assert plane_score_deg(np.zeros(5), spread) == pytest.approx(expected, abs=1e-6)


def test_vascular_scores_do_not_depend_on_which_array_axis_is_which(cases):
    """Transposing (z, y, x) permutes the per-plane angles; each plane's score moves with its angles."""
    case = cases["abutment_disputed"]
    order = (2, 0, 1)
    moved = challenge_vi(np.transpose(case.probability, order), [np.transpose(m, order) for m in case.annotations],
                         np.transpose(case.vessels, order))
    original = challenge_vi(case.probability, case.annotations, case.vessels)
    for vessel in VESSEL_LABELS:
        assert sorted(moved[vessel]["plane_scores"].values()) == pytest.approx(
            sorted(original[vessel]["plane_scores"].values()), abs=1e-9)
        assert moved[vessel]["challenge_score"] == pytest.approx(original[vessel]["challenge_score"], abs=1e-9)


def _write_case(folder, case, with_vessels=True):
    geometry = Geometry(case.vessels.shape[::-1], (0.8, 0.8, 2.0), (0.0, 0.0, 0.0))
    folder.mkdir(parents=True)
    write_image(folder / "image.nii.gz", np.zeros(case.vessels.shape, np.int16), geometry)
    for index, mask in enumerate(case.annotations):
        write_image(folder / f"annotation_{index + 1}.nii.gz", mask.astype(np.uint8), geometry)
    write_image(folder / "probability.nii.gz", case.probability, geometry)
    if with_vessels:
        write_image(folder / "vessels.nii.gz", case.vessels, geometry)


EVALUATED = ("abutment_disputed", "encasement", "celiac_in_plane")  # the last one without vessels.nii.gz


@pytest.fixture(scope="module")
def vessel_cohort(cases, tmp_path_factory):
    cohort = tmp_path_factory.mktemp("vessel_cohort")
    for name in EVALUATED:
        _write_case(cohort / name, cases[name], with_vessels=name != "celiac_in_plane")
    return cohort


def _expected(case, probability):
    return vascular_involvement(contact_angles_deg(case.annotations, case.vessels),
                                contact_angles_deg(prediction_masks(probability), case.vessels))


def test_evaluate_reports_vascular_involvement_per_vessel(cases, vessel_cohort, tmp_path):
    out = tmp_path / "report.json"
    assert main(["evaluate", "--cohort", str(vessel_cohort), "--out", str(out), "--bootstrap", "50"]) == EXIT_OK
    report = json.loads(out.read_text())
    assert "vascular_involvement" not in report["cases"]["celiac_in_plane"]
    for name in EVALUATED[:2]:
        case = cases[name]
        entry = report["cases"][name]["vascular_involvement"]
        assert list(entry) == list(VESSEL_LABELS)
        expected = _expected(case, case.probability)
        for vessel in VESSEL_LABELS:
            assert set(entry[vessel]) == {"challenge_score", "plane_scores", "raters_deg", "prediction_deg"}
            assert entry[vessel] == expected[vessel]  # JSON keeps floats exactly
            assert len(entry[vessel]["raters_deg"]["axial"]) == 5
            assert len(entry[vessel]["prediction_deg"]["sagittal"]) == 6
            assert entry[vessel]["challenge_score"] == pytest.approx(
                REFERENCE[name]["challenge_score"][vessel], abs=TOLERANCE_DEG)
    summary = report["summary"]
    assert summary["cases_with_vessels"] == 2
    for vessel in VESSEL_LABELS:
        stats = summary[f"vascular_involvement.{vessel}"]
        scores = [report["cases"][n]["vascular_involvement"][vessel]["challenge_score"] for n in EVALUATED[:2]]
        assert stats["n"] == 2 and stats["mean"] == pytest.approx(np.mean(scores))
        assert stats["ci95"][0] <= stats["mean"] <= stats["ci95"][1]
    assert "VI SMV " in format_table(report) and "2 of 3 case(s) with vessels.nii.gz" in format_table(report)


def test_evaluate_scores_vascular_involvement_before_and_after_calibration(cases, vessel_cohort, tmp_path):
    statistics = CalibrationStatistics()
    p = np.linspace(0, 1, 1001, dtype=np.float32)
    statistics.add(p, (0.6 * p).astype(np.float32), raters=5)  # calibrated = 0.6 p: fewer thresholds pass
    calibrator_path = tmp_path / "calibrator.json"
    fit_calibrator(statistics, "isotonic").save(calibrator_path)
    out = tmp_path / "report.json"
    assert main(["evaluate", "--cohort", str(vessel_cohort), "--calibrator", str(calibrator_path),
                 "--region", "all", "--out", str(out), "--bootstrap", "50"]) == EXIT_OK
    report = json.loads(out.read_text())
    name = "abutment_disputed"
    after = report["cases"][name]["vascular_involvement"]
    before = report["cases"][name]["uncalibrated"]["vascular_involvement"]
    assert before == _expected(cases[name], cases[name].probability)
    assert after["SMV"]["raters_deg"] == before["SMV"]["raters_deg"]
    assert after["SMV"]["prediction_deg"] != before["SMV"]["prediction_deg"]
    summary = report["summary"]
    for vessel in VESSEL_LABELS:
        change = [report["cases"][n]["vascular_involvement"][vessel]["challenge_score"]
                  - report["cases"][n]["uncalibrated"]["vascular_involvement"][vessel]["challenge_score"]
                  for n in EVALUATED[:2]]
        assert summary[f"change.vascular_involvement.{vessel}"]["mean"] == pytest.approx(np.mean(change))
        assert summary[f"uncalibrated.vascular_involvement.{vessel}"]["n"] == 2


def test_evaluate_fails_a_case_whose_vascular_labels_are_fractional(cases, tmp_path):
    case = cases["encasement"]
    folder = tmp_path / "cohort" / "fractional"
    _write_case(folder, case)
    geometry = Geometry(case.vessels.shape[::-1], (0.8, 0.8, 2.0), (0.0, 0.0, 0.0))
    write_image(folder / "vessels.nii.gz", case.vessels.astype(np.float32) * 0.5, geometry)
    report = evaluate_cohort(tmp_path / "cohort", EvaluationSettings(bootstrap_resamples=10))
    why = report["failed"]["fractional"]
    assert "vessels.nii.gz" in why and "fractional" in why and "label" in why
