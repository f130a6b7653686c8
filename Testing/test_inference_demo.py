"""The embedded demo ensemble on held-out phantoms: segmentation quality and calibration."""

import numpy as np
import pytest

from TwinTrackLogic.inference.bundle import default_bundle_dir, load_bundle
from TwinTrackLogic.calibration import load_calibrator
from TwinTrackLogic.inference import Ensemble
from TwinTrackLogic.io import Volume, mhr_from_masks
from TwinTrackLogic.evaluation.mhr import ece_mhr
from TwinTrackLogic.phantom import generate_case

# Held-out split: phantom seed 13 (training used 11, the demo calibrator 12, 14 and 16), indices never printed
# by the training script's validation (0-3).
TEST_SEED = 13
TEST_INDICES = range(20, 24)


@pytest.fixture(scope="module")
def held_out():
    bundle = load_bundle(default_bundle_dir())
    ensemble = Ensemble(bundle, device="cpu", threads=2)
    results = []
    for index in TEST_INDICES:
        case = generate_case(index, raters=5, seed=TEST_SEED)
        prediction = ensemble.predict(Volume(case.image.astype(np.float32), case.geometry))
        results.append((case, prediction))
    return bundle, results


def dice(a, b):
    return 2 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1)


def test_demo_ensemble_segments_the_raters_majority(held_out):
    _, results = held_out
    scores = [dice(prediction.probability > 0.5, mhr_from_masks(case.annotations) > 0.5)
              for case, prediction in results]
    assert np.mean(scores) >= 0.6, scores


def test_localiser_finds_the_pancreas_and_the_region_holds_the_tumour(held_out):
    _, results = held_out
    for case, prediction in results:
        assert prediction.probability.shape == case.geometry.shape
        assert dice(prediction.organ, case.pancreas > 0) > 0.7
        tumour = mhr_from_masks(case.annotations) > 0
        assert prediction.region[tumour].mean() > 0.95


def test_calibration_lowers_ece_against_mhr(held_out):
    bundle, results = held_out
    calibrator = load_calibrator(bundle.default_calibrator_path)
    raw, calibrated, mhr = [], [], []
    for case, prediction in results:
        inside = prediction.region
        raw.append(prediction.probability[inside])
        calibrated.append(calibrator.transform(prediction.probability[inside]))
        mhr.append(mhr_from_masks(case.annotations)[inside])
    raw, calibrated, mhr = (np.concatenate(v) for v in (raw, calibrated, mhr))
    assert ece_mhr(calibrated, mhr) < ece_mhr(raw, mhr)
