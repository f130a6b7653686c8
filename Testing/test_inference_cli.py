"""`twintrack predict` and `twintrack calibrate --bundle` on identity bundles (probability = sigmoid(CT))."""


import numpy as np
import pytest

from bundle_helpers import identity_bundle
from TwinTrackLogic.calibration import load_calibrator
from TwinTrackCLI import main
from TwinTrackLogic.io import Geometry, read_image, write_image
from TwinTrackLogic.phantom import write_cohort


@pytest.fixture()
def ct_file(tmp_path):
    angle = np.deg2rad(7)
    direction = [np.cos(angle), -np.sin(angle), 0, np.sin(angle), np.cos(angle), 0, 0, 0, 1]
    geometry = Geometry((21, 17, 9), (0.9, 1.1, 2.0), (10.0, -20.0, 30.0), direction)
    ct = np.random.default_rng(3).normal(size=geometry.shape).astype(np.float32)
    return write_image(tmp_path / "ct.nii.gz", ct, geometry), ct, geometry


def test_predict_writes_raw_probability_and_mask_on_the_ct_grid(tmp_path, ct_file):
    path, ct, geometry = ct_file
    bundle = identity_bundle(tmp_path / "bundle", spacing=(0.9, 1.1, 2.0), patch=(8, 8, 8))
    code = main(["predict", "--image", str(path), "--bundle", str(bundle), "--no-calibration",
                 "--out", str(tmp_path / "p.nii.gz"), "--mask-out", str(tmp_path / "m.nii.gz"),
                 "--level", "70", "--device", "cpu", "--threads", "1"])
    assert code == 0
    probability = read_image(tmp_path / "p.nii.gz")
    assert not probability.geometry.differences(geometry)
    np.testing.assert_allclose(probability.array, 1 / (1 + np.exp(-ct)), atol=1e-5)
    mask = read_image(tmp_path / "m.nii.gz").array
    assert np.array_equal(mask.astype(bool), probability.array >= 0.7)


@pytest.mark.slow  # over ~4 s: left out of the fast loop
def test_predict_applies_a_calibrator_and_keeps_the_raw_output(tmp_path, ct_file):
    path, ct, _ = ct_file
    bundle = identity_bundle(tmp_path / "bundle", spacing=(0.9, 1.1, 2.0), patch=(8, 8, 8))
    cohort = tmp_path / "cohort"
    write_cohort(cohort, 2, raters=3, seed=5)
    assert main(["calibrate", "--cohort", str(cohort), "--bundle", str(bundle), "--out",
                 str(tmp_path / "cal.json")]) == 0
    calibrator = load_calibrator(tmp_path / "cal.json")
    assert "bundle:test-bundle" in calibrator.probability_source
    assert main(["predict", "--image", str(path), "--bundle", str(bundle), "--calibrator",
                 str(tmp_path / "cal.json"), "--out", str(tmp_path / "p.nii.gz"),
                 "--raw-out", str(tmp_path / "raw.nii.gz")]) == 0
    raw = read_image(tmp_path / "raw.nii.gz").array
    np.testing.assert_allclose(raw, 1 / (1 + np.exp(-ct)), atol=1e-5)
    calibrated = read_image(tmp_path / "p.nii.gz").array
    np.testing.assert_allclose(calibrated, calibrator.transform(raw), atol=1e-6)


def test_predict_refuses_a_bundle_without_calibrator_unless_told(tmp_path, ct_file, capsys):
    path, _, _ = ct_file
    bundle = identity_bundle(tmp_path / "bundle")
    code = main(["predict", "--image", str(path), "--bundle", str(bundle), "--out", str(tmp_path / "p.nii.gz")])
    assert code == 2
    assert "--no-calibration" in capsys.readouterr().err
    assert not (tmp_path / "p.nii.gz").exists()


def test_predict_defaults_to_the_demo_bundle_and_its_calibrator(tmp_path, monkeypatch):
    monkeypatch.delenv("TWINTRACK_BUNDLE", raising=False)
    cohort = tmp_path / "cohort"
    write_cohort(cohort, 1, raters=5, seed=13, first_index=40)
    image = cohort / "case_040" / "image.nii.gz"
    assert main(["predict", "--image", str(image), "--out", str(tmp_path / "p.nii.gz"),
                 "--raw-out", str(tmp_path / "raw.nii.gz"), "--threads", "2"]) == 0
    calibrated = read_image(tmp_path / "p.nii.gz").array
    raw = read_image(tmp_path / "raw.nii.gz").array
    assert 0.0 <= calibrated.min() and calibrated.max() <= 1.0
    assert (raw > 0).any() and not np.array_equal(calibrated, raw)
