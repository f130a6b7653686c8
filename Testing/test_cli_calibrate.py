"""`twintrack calibrate` and `twintrack apply` on small phantom cohorts."""

import shutil

import numpy as np
import pytest

from TwinTrackLogic.calibration import FitSettings, fit_cohort, load_calibrator
from TwinTrackCLI import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, main
from TwinTrackLogic.io import find_cases, read_image, write_image
from TwinTrackLogic.phantom import generate_case, write_case

RATERS = 3


def overconfident_probability(case):
    """An over-confident ensemble output: the latent tumour field pushed towards 0 and 1."""
    latent = np.clip(case.latent, 1e-4, 1 - 1e-4)
    return (1 / (1 + (latent / (1 - latent)) ** -4)).astype(np.float32)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cohort")
    for index in range(3):
        case = generate_case(index, RATERS, seed=5, size="small")
        write_case(case, folder)
        write_image(folder / case.name / "probability.nii.gz", overconfident_probability(case), case.geometry)
    return folder


def copy_cohort(cohort, tmp_path):
    target = tmp_path / "cohort"
    shutil.copytree(cohort, target)
    return target


def test_calibrate_writes_a_calibrator_and_a_summary(cohort, tmp_path, capsys):
    out = tmp_path / "cal.json"
    assert main(["calibrate", "--cohort", str(cohort), "--out", str(out)]) == EXIT_OK
    summary = capsys.readouterr().out
    calibrator = load_calibrator(out)
    assert calibrator.method == "isotonic" and calibrator.raters == RATERS and calibrator.cases == 3
    assert f"{calibrator.voxels:,} voxels" in summary and "3 of 3 cases" in summary
    assert "pancreas.nii.gz dilated 10 mm" in calibrator.region
    ece_line = next(line for line in summary.splitlines() if line.startswith("ECE against MHR"))
    before, after = (float(ece_line.split(word)[1].split(",")[0]) for word in ("before ", "after "))
    assert after < before


def test_calibrate_with_another_method_region_and_probability_name(cohort, tmp_path):
    cohort = copy_cohort(cohort, tmp_path)
    for folder in cohort.iterdir():
        if folder.is_dir():
            (folder / "probability.nii.gz").rename(folder / "ensemble.nii.gz")
    out = tmp_path / "platt.json"
    code = main(["calibrate", "--cohort", str(cohort), "--out", str(out), "--method", "platt",
                 "--probability", "ensemble.nii.gz", "--region", "bbox"])
    assert code == EXIT_OK
    calibrator = load_calibrator(out)
    assert calibrator.method == "platt" and calibrator.probability_source == "ensemble.nii.gz"
    assert "bounding box" in calibrator.region


def test_a_bad_case_is_reported_and_the_rest_still_fit(cohort, tmp_path, capsys):
    cohort = copy_cohort(cohort, tmp_path)
    broken = read_image(cohort / "case_001" / "probability.nii.gz")
    broken.array[0, 0, 0] = 1.7  # (NaN cannot be tested this way: ITK reads NaN in NIfTI as 0)
    write_image(cohort / "case_001" / "probability.nii.gz", broken.array, broken.geometry)
    out = tmp_path / "cal.json"
    assert main(["calibrate", "--cohort", str(cohort), "--out", str(out)]) == EXIT_PARTIAL
    printed = capsys.readouterr().out
    assert "1 case(s) were skipped" in printed and "case_001" in printed and "outside [0, 1]" in printed
    assert load_calibrator(out).cases == 2


def test_no_usable_case_is_a_clear_error(cohort, tmp_path, capsys):
    out = tmp_path / "cal.json"
    code = main(["calibrate", "--cohort", str(cohort), "--out", str(out), "--probability", "absent.nii.gz"])
    assert code == EXIT_ERROR
    assert "No case could be used" in capsys.readouterr().err
    assert not out.exists()


def test_different_rater_counts_are_refused(cohort, tmp_path, capsys):
    cohort = copy_cohort(cohort, tmp_path)
    (cohort / "case_002" / f"annotation_{RATERS}.nii.gz").unlink()
    assert main(["calibrate", "--cohort", str(cohort), "--out", str(tmp_path / "c.json")]) == EXIT_ERROR
    assert "different numbers of raters" in capsys.readouterr().err


def test_case_with_empty_annotations_counts_when_it_has_an_organ(cohort, tmp_path):
    cohort = copy_cohort(cohort, tmp_path)
    empty = read_image(cohort / "case_000" / "annotation_1.nii.gz")
    for number in range(1, RATERS + 1):
        write_image(cohort / "case_000" / f"annotation_{number}.nii.gz", np.zeros_like(empty.array),
                    empty.geometry)
    result = fit_cohort(find_cases(cohort))
    assert result.used == ["case_000", "case_001", "case_002"] and not result.failures
    # With the bbox policy and p > 0.01 in the case it still has a region; remove the
    # probability there too and the case has nothing to surround: skipped, others used.
    probability = read_image(cohort / "case_000" / "probability.nii.gz")
    write_image(cohort / "case_000" / "probability.nii.gz", np.zeros_like(probability.array),
                probability.geometry)
    result = fit_cohort(find_cases(cohort), FitSettings(region_policy="bbox"))
    assert [name for name, _ in result.failures] == ["case_000"]


def test_probability_hook_is_used_for_cases_without_a_file(cohort, tmp_path):
    cohort = copy_cohort(cohort, tmp_path)
    (cohort / "case_001" / "probability.nii.gz").unlink()
    asked = []

    def ensemble(case):
        asked.append(case.name)
        return overconfident_probability(generate_case(1, RATERS, seed=5, size="small"))

    result = fit_cohort(find_cases(cohort), FitSettings(probability_source="bundle:demo"), probability_for=ensemble)
    assert asked == ["case_001"] and len(result.used) == 3
    assert result.calibrator.probability_source == "bundle:demo"


def test_apply_keeps_the_geometry_and_matches_transform(cohort, tmp_path, capsys):
    calibrator_path = tmp_path / "cal.json"
    assert main(["calibrate", "--cohort", str(cohort), "--out", str(calibrator_path)]) == EXIT_OK
    source = cohort / "case_001" / "probability.nii.gz"  # case 1 has a non-identity direction
    out = tmp_path / "calibrated.nii.gz"
    assert main(["apply", "--calibrator", str(calibrator_path), "--probability", str(source),
                 "--out", str(out)]) == EXIT_OK
    original, calibrated = read_image(source), read_image(out)
    assert original.geometry.differences(calibrated.geometry) == []
    assert calibrated.array.dtype == np.float32
    expected = load_calibrator(calibrator_path).transform(original.array)
    assert np.array_equal(calibrated.array, expected)
    assert not np.array_equal(calibrated.array, original.array)


def test_apply_refuses_a_tampered_calibrator(cohort, tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text('{"format": "twintrack-calibrator", "version": 9}')
    code = main(["apply", "--calibrator", str(path), "--probability",
                 str(cohort / "case_000" / "probability.nii.gz"), "--out", str(tmp_path / "o.nii.gz")])
    assert code == EXIT_ERROR
    assert "bad.json" in capsys.readouterr().err
    assert not (tmp_path / "o.nii.gz").exists()


def test_cohort_fit_reports_progress_and_stops_on_cancel(cohort):
    from TwinTrackLogic.errors import Cancelled
    from TwinTrackLogic.progress import CancelToken

    seen = []
    token = CancelToken()

    def progress(fraction, message):
        seen.append(fraction)
        if len(seen) == 2:
            token.cancel()

    with pytest.raises(Cancelled):
        fit_cohort(find_cases(cohort), progress=progress, token=token)
    assert seen == sorted(seen) and len(seen) == 2
