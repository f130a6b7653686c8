"""`twintrack bundle info` and `bundle check` on bundles that need no nnU-Net (the demo bundle, a copy)."""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from TwinTrackCLI import main
from TwinTrackLogic.io import Geometry, write_image

DEMO = Path(__file__).resolve().parent.parent / "Resources" / "DemoBundle"


def test_info_describes_every_stage_and_the_calibrator(capsys):
    assert main(["bundle", "info", str(DEMO)]) == 0
    out = capsys.readouterr().out
    assert "format version 3" in out and out.count("mode twintrack") == 5  # localiser + 3 members + vessels
    assert "dilated by 10.0 mm" in out and "calibrator.json (fitted with 5 raters)" in out


def test_check_passes_then_catches_a_replaced_model_and_a_broken_calibrator(tmp_path, capsys):
    copy = tmp_path / "bundle"
    shutil.copytree(DEMO, copy)
    assert main(["bundle", "check", str(copy)]) == 0
    out = capsys.readouterr().out
    assert out.count("sha256 ok") == 5 and "all checks passed" in out
    (copy / "calibrator.json").write_text("{}")
    assert main(["bundle", "check", str(copy)]) == 2
    assert "calibrator.json" in capsys.readouterr().err
    shutil.copy(DEMO / "member_1.onnx", copy / "member_2.onnx")
    assert main(["bundle", "check", str(copy)]) == 2
    assert "member_2.onnx does not match the sha256" in capsys.readouterr().err


def _edited_copy(tmp_path, edit):
    import json

    copy = tmp_path / "bundle"
    shutil.copytree(DEMO, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    edit(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def test_check_lists_the_domain_predict_will_check(capsys):
    assert main(["bundle", "check", str(DEMO)]) == 0
    out = capsys.readouterr().out
    assert "domain: valid, trained on synthetic phantoms only; predict checks each CT for (9):" in out
    assert "pancreas volume (mL) in [20.9, 66.0]" in out and "region at most 10% of the body" in out


def test_check_says_when_no_domain_is_declared(tmp_path, capsys):
    assert main(["bundle", "check", str(_edited_copy(tmp_path, lambda m: m.pop("domain")))]) == 0
    assert "domain: none declared, so predict cannot warn" in capsys.readouterr().out


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["domain"]["spacing_mm"].update(min=[4.0, 0.48, 1.5]),
     r"domain.spacing_mm has min \[4.0, 0.48, 1.5\] above max"),
    (lambda m: m["domain"]["organ"].update(volume_ml=[66.0, 20.9]),
     r"domain.organ.volume_ml is \[66.0, 20.9\]: the low end is above the high end"),
    (lambda m: m["domain"]["body_hu"].update(p50=[42.5, 16.5]), "domain.body_hu.p50 is"),
    (lambda m: m.update(localiser=None), "domain.organ describes the localiser's organ, but the bundle has no localiser"),
])
def test_an_impossible_domain_is_refused_when_the_bundle_loads(tmp_path, capsys, edit, message):
    copy = _edited_copy(tmp_path, edit)
    assert main(["bundle", "check", str(copy)]) == 2
    assert re.search(message, capsys.readouterr().err)
    image = tmp_path / "ct.nii.gz"
    write_image(image, np.zeros((8, 8, 8), np.float32), Geometry((8, 8, 8), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)))
    assert main(["predict", "--bundle", str(copy), "--image", str(image), "--out", str(tmp_path / "p.nii.gz")]) == 2
    assert re.search(message, capsys.readouterr().err)  # every front end loads through the same reader
