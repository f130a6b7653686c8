"""Nothing trusted that was not verified (issue 24): cohort resume checks every output against the
sha256 and size its sidecar recorded, and says why it recomputes; a calibrator of another panel
than the bundle's goes through only with --allow-rater-mismatch, with a warning."""

import hashlib
import json
import shutil
from pathlib import Path

from corpus import _calibrator, _cohort, _ct  # noqa: E402

from bundle_helpers import identity_bundle  # noqa: E402
from TwinTrackCLI import EXIT_OK, main  # noqa: E402

OUTPUTS = ("probability.nii.gz", "mask.nii.gz", "region.nii.gz")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_resume_recomputes_outputs_that_differ_from_their_record_and_says_so(tmp_path, capsys):
    _cohort(tmp_path, cases=3)
    bundle = identity_bundle(tmp_path / "bundle", spacing=(2.6, 2.6, 4.0), patch=(8, 8, 8))
    out = tmp_path / "out"
    command = ["predict", "--cohort", str(tmp_path / "cohort"), "--out", str(out), "--no-calibration",
               "--bundle", str(bundle)]
    assert main(command) == EXIT_OK
    record = json.loads((out / "case_000" / "probability.provenance.json").read_text())
    for name in OUTPUTS:  # the record holds each output's own digest and size
        path = out / "case_000" / name
        assert record["output_files"][name] == {"sha256": _sha256(path), "bytes": path.stat().st_size}
    good = {case: _sha256(out / case / "probability.nii.gz") for case in ("case_000", "case_001")}
    # case_000: its map cut short; case_001: its mask replaced by case_002's; case_002: untouched.
    whole = (out / "case_000" / "probability.nii.gz").read_bytes()
    (out / "case_000" / "probability.nii.gz").write_bytes(whole[: len(whole) // 2])
    shutil.copy(out / "case_002" / "mask.nii.gz", out / "case_001" / "mask.nii.gz")
    capsys.readouterr()
    assert main(command) == EXIT_OK
    captured = capsys.readouterr()
    assert "Predicted 2 case(s), 1 already up to date" in captured.out
    assert "case_000: predicted again" in captured.err and "probability.nii.gz differs from its record" in captured.err
    assert "case_001: predicted again" in captured.err and "mask.nii.gz differs from its record" in captured.err
    assert {case: _sha256(out / case / "probability.nii.gz") for case in good} == good  # recomputed whole
    # A missing output is recomputed and named too.
    (out / "case_002" / "region.nii.gz").unlink()
    assert main(command) == EXIT_OK
    assert "region.nii.gz missing" in capsys.readouterr().err


def test_a_sidecar_without_output_checksums_is_not_trusted(tmp_path, capsys):
    _cohort(tmp_path)
    bundle = identity_bundle(tmp_path / "bundle", spacing=(2.6, 2.6, 4.0), patch=(8, 8, 8))
    out = tmp_path / "out"
    command = ["predict", "--cohort", str(tmp_path / "cohort"), "--out", str(out), "--no-calibration",
               "--bundle", str(bundle)]
    assert main(command) == EXIT_OK
    sidecar = out / "case_000" / "probability.provenance.json"
    record = json.loads(sidecar.read_text())
    del record["output_files"]  # as an older TwinTrack wrote it
    sidecar.write_text(json.dumps(record))
    capsys.readouterr()
    assert main(command) == EXIT_OK
    assert "records no checksums of its outputs" in capsys.readouterr().err
    assert "output_files" in json.loads(sidecar.read_text())


def test_a_calibrator_of_another_panel_needs_allow_rater_mismatch(tmp_path, capsys):
    _ct(tmp_path)  # the identity bundle declares 3 raters
    _calibrator(lambda data: None)(tmp_path)  # fitted with 5
    command = ["predict", "--image", str(tmp_path / "ct.nii.gz"), "--bundle", str(tmp_path / "bundle"),
               "--calibrator", str(tmp_path / "cal.json"), "--out", str(tmp_path / "out.nii.gz")]
    assert main(command) == 2 and not (tmp_path / "out.nii.gz").exists()
    capsys.readouterr()
    assert main(command + ["--allow-rater-mismatch"]) == EXIT_OK
    err = capsys.readouterr().err
    assert "warning:" in err and "panel of 5 raters" in err and "--allow-rater-mismatch: used as asked" in err
    assert (tmp_path / "out.nii.gz").is_file()


def test_the_slicer_job_runs_a_calibrator_of_another_panel_but_says_so(tmp_path):
    """The panel has no --allow-rater-mismatch: its job warns (the banner shows it) instead of refusing."""
    from TwinTrackLogic.io import read_image
    from TwinTrackLogic.progress import CancelToken
    from TwinTrackLogic.worker.jobs import ensemble_job

    _ct(tmp_path)  # the identity bundle declares 3 raters
    _calibrator(lambda data: None)(tmp_path)  # fitted with 5
    work = ensemble_job(read_image(tmp_path / "ct.nii.gz"), bundle_dir=tmp_path / "bundle",
                        calibrator_path=tmp_path / "cal.json", device="cpu")
    result = work(lambda fraction, message: None, CancelToken())
    assert any("panel of 5 raters" in warning and "declares 3" in warning and "Pick the calibrator" in warning
               for warning in result.warnings)
    data = json.loads((tmp_path / "cal.json").read_text())
    data["fitting"]["raters"] = 3  # the same calibrator, for the bundle's panel
    (tmp_path / "cal3.json").write_text(json.dumps(data))
    matched = ensemble_job(read_image(tmp_path / "ct.nii.gz"), bundle_dir=tmp_path / "bundle",
                           calibrator_path=tmp_path / "cal3.json", device="cpu")
    assert not any("raters" in warning for warning in matched(lambda f, m: None, CancelToken()).warnings)
