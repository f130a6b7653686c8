"""`twintrack bundle info` and `bundle check` on bundles that need no nnU-Net (the demo bundle, a copy)."""

import shutil
from pathlib import Path

from TwinTrackLogic.cli import main

DEMO = Path(__file__).resolve().parent.parent / "Resources" / "DemoBundle"


def test_info_describes_every_stage_and_the_calibrator(capsys):
    assert main(["bundle", "info", str(DEMO)]) == 0
    out = capsys.readouterr().out
    assert "format version 1" in out and out.count("mode twintrack") == 4  # localiser + 3 members
    assert "dilated by 10.0 mm" in out and "calibrator.json (fitted with 5 raters)" in out


def test_check_passes_then_catches_a_replaced_model_and_a_broken_calibrator(tmp_path, capsys):
    copy = tmp_path / "bundle"
    shutil.copytree(DEMO, copy)
    assert main(["bundle", "check", str(copy)]) == 0
    out = capsys.readouterr().out
    assert out.count("sha256 ok") == 4 and "all checks passed" in out
    (copy / "calibrator.json").write_text("{}")
    assert main(["bundle", "check", str(copy)]) == 2
    assert "calibrator.json" in capsys.readouterr().err
    shutil.copy(DEMO / "member_1.onnx", copy / "member_2.onnx")
    assert main(["bundle", "check", str(copy)]) == 2
    assert "member_2.onnx does not match the sha256" in capsys.readouterr().err
