"""`predict --cohort` with --no-region and --strict, and `calibrate --bundle`: the domain checks of one image."""

import json

from bundle_helpers import DOMAIN, domain_cohort, identity_bundle
from TwinTrackCLI import EXIT_OK, EXIT_PARTIAL, main
from TwinTrackLogic.io import read_image


def _record(out, case):
    return json.loads((out / case / "probability.provenance.json").read_text())


def test_strict_fails_only_the_case_outside_the_domain(tmp_path, capsys):
    bundle = identity_bundle(tmp_path / "bundle", with_localiser=True, domain=DOMAIN)
    cohort, out = domain_cohort(tmp_path / "cohort"), tmp_path / "out"
    common = ["predict", "--cohort", str(cohort), "--bundle", str(bundle), "--no-calibration"]
    assert main(common + ["--out", str(out), "--strict"]) == EXIT_PARTIAL
    printed = capsys.readouterr().out
    assert "case_b: --strict:" in printed and "spacing" in printed and "case_a:" not in printed.split("failed")[-1]
    assert (out / "case_a" / "probability.nii.gz").is_file() and not (out / "case_b").exists()
    assert main(common + ["--out", str(tmp_path / "lenient")]) == EXIT_OK
    assert "warning: case_b:" in capsys.readouterr().out
    assert _record(tmp_path / "lenient", "case_b")["warnings"]


def test_no_region_runs_the_whole_image_and_resume_tells_the_two_apart(tmp_path, capsys):
    bundle = identity_bundle(tmp_path / "bundle", with_localiser=True)
    cohort, out = domain_cohort(tmp_path / "cohort"), tmp_path / "out"
    common = ["predict", "--cohort", str(cohort), "--bundle", str(bundle), "--no-calibration", "--out", str(out)]
    assert main(common + ["--no-region"]) == EXIT_OK
    assert read_image(out / "case_a" / "region.nii.gz").array.all()
    assert _record(out, "case_a")["region_source"] == "whole image"
    capsys.readouterr()
    assert main(common) == EXIT_OK  # with the localiser now: not up to date, recomputed
    assert "Predicted 2 case(s), 0 already up to date" in capsys.readouterr().out
    region = read_image(out / "case_a" / "region.nii.gz").array
    assert 0 < region.sum() < region.size and _record(out, "case_a")["region_source"] == "localiser"
    assert main(common) == EXIT_OK
    assert "Predicted 0 case(s), 2 already up to date" in capsys.readouterr().out
    assert main(common + ["--no-region"]) == EXIT_OK
    assert "Predicted 2 case(s), 0 already up to date" in capsys.readouterr().out


def test_calibrate_with_a_bundle_reports_each_case_outside_the_domain(tmp_path, capsys):
    bundle = identity_bundle(tmp_path / "bundle", with_localiser=True, domain=DOMAIN)
    cohort = domain_cohort(tmp_path / "cohort", annotated=True)
    assert main(["calibrate", "--cohort", str(cohort), "--bundle", str(bundle), "--out",
                 str(tmp_path / "cal.json")]) == EXIT_OK
    printed = capsys.readouterr().out
    assert "Fitted on: 2 of 2 cases" in printed
    warned = [line for line in printed.splitlines() if line.startswith("warning: ")]
    assert warned and all(line.startswith("warning: case_b: ") for line in warned) and "spacing" in warned[0]
    assert main(["calibrate", "--cohort", str(cohort), "--bundle", str(bundle), "--strict", "--out",
                 str(tmp_path / "strict.json")]) == EXIT_PARTIAL
    printed = capsys.readouterr().out
    assert "Fitted on: 1 of 2 cases" in printed and "case_b: --strict: left out, because the voxel spacing" in printed
    assert "warning: " not in printed
    assert main(["calibrate", "--cohort", str(cohort), "--strict", "--out", str(tmp_path / "x.json")]) == 2
    assert "--strict leaves out cases outside the bundle's domain; it needs --bundle" in capsys.readouterr().err
