"""`twintrack calibrate --cv / --method auto / --case-weight / --<method>-<option>`, and the calibrator interface."""

import json

import numpy as np
import pytest

from TwinTrackLogic.calibration import METHODS, CalibrationStatistics, Calibrator, fit_calibrator, load_calibrator
from TwinTrackCLI import EXIT_ERROR, EXIT_OK, main
from TwinTrackLogic.io import write_image
from TwinTrackLogic.phantom import generate_case, write_case

RATERS = 3


def overconfident_probability(case, power):
    latent = np.clip(case.latent, 1e-4, 1 - 1e-4)
    return (1 / (1 + (latent / (1 - latent)) ** -power)).astype(np.float32)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cohort")
    for index in range(5):
        case = generate_case(index, RATERS, seed=7, size="small")
        write_case(case, folder)
        write_image(folder / case.name / "probability.nii.gz", overconfident_probability(case, 4 + index % 2),
                    case.geometry)
    return folder


def test_cv_reports_every_method_and_stores_the_report_and_plots(cohort, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out, plots = tmp_path / "cal.json", tmp_path / "plots"
    assert main(["calibrate", "--cohort", str(cohort), "--out", str(out), "--method", "auto", "--cv", "loo",
                 "--case-weight", "equal", "--plots", str(plots)]) == EXIT_OK
    printed = capsys.readouterr().out
    calibrator = load_calibrator(out)
    report = calibrator.provenance.cross_validation
    assert report["cases"] == 5 and report["folds"] == 5 and report["case_weight"] == "equal"
    assert calibrator.provenance.case_weight == "equal"
    assert calibrator.method == report["methods"][report["chosen"]]["method"]
    for method in METHODS:  # every method is scored out of sample, identity included
        assert method in report["methods"] and method in printed
    assert set(report["per_case"]) == {f"case_{i:03d}" for i in range(5)}
    assert f"Verdict: {report['verdict']}" in printed
    # the over-confident map is miscalibrated on every case: calibration must help out of sample
    assert report["chosen"] != "identity" and report["verdict"].startswith(report["chosen"])
    assert report["methods"][report["chosen"]]["cases_improved"] >= 4
    for name in ("cv_reliability.png", "cv_per_case_ece.png"):
        assert (plots / name).read_bytes().startswith(b"\x89PNG")


def test_method_options_reach_the_fit_and_the_file(cohort, tmp_path):
    out = tmp_path / "histogram.json"
    assert main(["calibrate", "--cohort", str(cohort), "--out", str(out), "--method", "histogram",
                 "--histogram-bins", "7", "--histogram-strategy", "quantile"]) == EXIT_OK
    calibrator = load_calibrator(out)
    assert calibrator.values.size <= 7 and calibrator.provenance.options == {"bins": 7, "strategy": "quantile"}
    assert "cross_validation" not in json.loads(out.read_text())["fitting"]
    out = tmp_path / "steps.json"
    assert main(["calibrate", "--cohort", str(cohort), "--out", str(out), "--isotonic-max-steps", "5"]) == EXIT_OK
    assert np.unique(load_calibrator(out).y).size <= 5


def test_help_names_the_new_options_and_the_auto_rule(capsys):
    assert main(["calibrate", "--help"]) == 0  # main returns argparse's exit code
    printed = " ".join(capsys.readouterr().out.split())
    for flag in ("--cv", "--case-weight", "--histogram-bins", "--histogram-strategy", "--isotonic-max-steps",
                 "auto", "identity", "95 % bootstrap interval entirely below 0"):
        assert flag in printed, flag


def test_plots_without_cross_validation_and_bad_folds_are_refused(cohort, tmp_path, capsys):
    out = tmp_path / "cal.json"
    assert main(["calibrate", "--cohort", str(cohort), "--out", str(out), "--plots", str(tmp_path)]) == EXIT_ERROR
    assert "--cv" in capsys.readouterr().err and not out.exists()
    assert main(["calibrate", "--cohort", str(cohort), "--out", str(out), "--cv", "9"]) == EXIT_ERROR
    assert "--cv 9" in capsys.readouterr().err and not out.exists()
    # Refused while the command line is parsed: argparse's exit code 2, returned by main.
    assert main(["calibrate", "--cohort", str(cohort), "--out", str(out), "--cv", "1"]) == EXIT_ERROR
    assert "argument --cv" in capsys.readouterr().err and not out.exists()


def test_a_new_method_is_one_class_and_registers_itself(tmp_path):
    class Halving(Calibrator):
        method = "halving-for-test"

        @classmethod
        def fit(cls, statistics, provenance=None, **options):
            return cls(provenance)

        def _transform_chunk(self, p):
            return p / 2

        def parameters(self):
            return {}

        @classmethod
        def _from_parameters(cls, parameters, problem, provenance):
            return cls(provenance)

    try:
        assert METHODS["halving-for-test"] is Halving
        statistics = CalibrationStatistics(1024).add(np.array([0.2, 0.8], np.float32), np.array([0.0, 1.0]),
                                                     raters=2)
        calibrator = fit_calibrator(statistics, "halving-for-test", region="r")
        assert calibrator.provenance.voxels == 2 and calibrator.region == "r"
        calibrator.save(tmp_path / "h.json")
        loaded = load_calibrator(tmp_path / "h.json")
        assert isinstance(loaded, Halving) and loaded.transform(np.array([0.5], np.float32))[0] == 0.25
        with pytest.raises(TypeError, match="halving-for-test"):
            type("Again", (Halving,), {})  # a second class under the same name is refused
    finally:
        del METHODS["halving-for-test"]


def test_unknown_option_is_refused_naming_the_valid_ones():
    from TwinTrackLogic.errors import InputError
    statistics = CalibrationStatistics(1024).add(np.array([0.2, 0.8], np.float32), np.array([0.0, 1.0]))
    with pytest.raises(InputError, match="bins, strategy"):
        fit_calibrator(statistics, "histogram", bin=3)
    with pytest.raises(TypeError):
        Calibrator()  # the interface is abstract
