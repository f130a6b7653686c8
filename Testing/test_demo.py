"""The README's main command: `twintrack demo` runs the whole job and says where it put it."""

import json
import re
from pathlib import Path

import pytest

from TwinTrackCLI import main
from TwinTrackLogic.io import read_image


@pytest.mark.slow  # over ~4 s: left out of the fast loop
def test_demo_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--calibration-cases", "2", "--review-cases", "1"]) == 0
    printed = capsys.readouterr().out
    assert f"Everything the demo wrote is in {out.resolve()}" in printed
    for command in ("twintrack phantom", "twintrack calibrate", "twintrack predict", "twintrack evaluate"):
        assert f"$ {command}" in printed
    calibrator = json.loads((out / "calibrator.json").read_text())
    assert calibrator["fitting"]["cases"] == 2 and calibrator["fitting"]["raters"] == 5
    assert calibrator["fitting"]["probability_source"].startswith("bundle:")
    report = json.loads((out / "report.json").read_text())
    assert list(report["cases"]) == ["case_100"] and "uncalibrated" in report["cases"]["case_100"]
    case = out / "review" / "case_100"
    calibrated = read_image(case / "calibrated.nii.gz")
    assert calibrated.geometry.differences(read_image(case / "image.nii.gz").geometry) == []
    assert 0.5 < calibrated.array.max() <= 1.0
    assert read_image(case / "tumour_50.nii.gz").array.sum() > 0
    pngs = sorted(p.name for p in (out / "previews").iterdir())
    assert pngs == ["case_100_calibrated.png", "case_100_raw_calibrated_raters.png"]
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["agreement_volume.png", "per_case_ece.png",
                                                               "reliability.png"]


@pytest.mark.slow
def test_the_demo_numbers_the_readme_quotes_are_what_the_default_demo_gives(tmp_path):
    """The README's headline (pooled ECE against the MHR, raw -> calibrated) comes from the default
    demo; rerun it and compare, so a change in the phantom, the models or the fit cannot leave the
    README quoting numbers the code no longer gives."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    quoted = re.search(r"drops from (\d\.\d+) \(raw ensemble\) to\s+(\d\.\d+)\s+\(calibrated\)", readme)
    assert quoted, "the README no longer quotes the demo's pooled ECE in the expected words"
    raw, calibrated = (float(value) for value in quoted.groups())
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    pooled = json.loads((out / "report.json").read_text())["pooled"]
    # The README rounds to 4 decimals; the run is deterministic on one machine, so half a unit of
    # the last digit plus a little for BLAS differences between machines.
    assert pooled["uncalibrated"]["ece_mhr"] == pytest.approx(raw, abs=6e-5)
    assert pooled["calibrated"]["ece_mhr"] == pytest.approx(calibrated, abs=6e-5)
