"""`twintrack evaluate` from the command line: outputs, exit codes, messages."""

import json

import numpy as np

from TwinTrackCLI import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, main
from TwinTrackLogic.io import write_image
from TwinTrackLogic.phantom import generate_case, write_case

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_cohort(folder, indices, probability_name="probability.nii.gz"):
    for index in indices:
        case = generate_case(index, raters=3, seed=5, size="small")
        case_folder = write_case(case, folder)
        # Too sure: every voxel any rater might mark gets p = 0.97.
        probability = np.where(case.latent > 0.2, 0.97, 0.0).astype(np.float32)
        write_image(case_folder / probability_name, probability, case.geometry)
    return folder


def test_evaluate_writes_report_table_and_plots(tmp_path, capsys):
    cohort = write_cohort(tmp_path / "cohort", [0, 1], probability_name="ensemble.nii.gz")
    out = tmp_path / "out" / "report.json"
    code = main(["evaluate", "--cohort", str(cohort), "--probability", "ensemble.nii.gz", "--binary-threshold", "0.6",
                 "--out", str(out), "--plots", str(tmp_path / "plots"), "--bootstrap", "100"])
    assert code == EXIT_OK
    report = json.loads(out.read_text())
    assert sorted(report["cases"]) == ["case_000", "case_001"]
    assert report["settings"]["binary_threshold"] == 0.6 and report["settings"]["probability_name"] == "ensemble.nii.gz"
    for name in ("reliability.png", "agreement_volume.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:8] == PNG_SIGNATURE
    printed = capsys.readouterr().out
    assert "thresh_dsc" in printed and "crps_volume" in printed and str(out) in printed
    # Nothing half-written is left next to the outputs.
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_evaluate_exit_code_1_when_a_case_fails(tmp_path, capsys):
    cohort = write_cohort(tmp_path / "cohort", [0, 1])
    (cohort / "case_001" / "annotation_2.nii.gz").write_bytes(b"not an image")
    code = main(["evaluate", "--cohort", str(cohort), "--out", str(tmp_path / "r.json"), "--bootstrap", "50"])
    assert code == EXIT_PARTIAL
    report = json.loads((tmp_path / "r.json").read_text())
    assert list(report["cases"]) == ["case_000"] and "annotation_2" in report["failed"]["case_001"]
    assert "FAILED case_001" in capsys.readouterr().out


def test_evaluate_refuses_bad_settings_and_empty_results(tmp_path, capsys):
    cohort = write_cohort(tmp_path / "cohort", [0])
    code = main(["evaluate", "--cohort", str(cohort), "--out", str(tmp_path / "r.json"), "--binary-threshold", "1.5"])
    assert code == EXIT_ERROR and "--binary-threshold" in capsys.readouterr().err
    code = main(["evaluate", "--cohort", str(cohort), "--probability", "missing.nii.gz",
                 "--out", str(tmp_path / "r.json")])
    assert code == EXIT_ERROR
    assert "No case" in capsys.readouterr().err
    code = main(["evaluate", "--cohort", str(cohort), "--calibrator", str(tmp_path / "nothing.json"),
                 "--out", str(tmp_path / "r2.json")])
    assert code == EXIT_ERROR and "nothing.json" in capsys.readouterr().err


def test_plots_without_matplotlib_are_refused_before_the_run(tmp_path, capsys, monkeypatch):
    import sys
    cohort = write_cohort(tmp_path / "cohort", [0])
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    code = main(["evaluate", "--cohort", str(cohort), "--out", str(tmp_path / "r.json"),
                 "--plots", str(tmp_path / "plots")])
    assert code == EXIT_ERROR
    assert "twintrack[plots]" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()
