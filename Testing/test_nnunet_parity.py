"""Parity with nnU-Net itself: ``nnUNetv2_predict --save_probabilities`` against the exported bundle.

A tiny but real nnU-Net results folder is built once (Testing/nnunet_fixture.py: nnU-Net's own
planning and preprocessing, a shrunk network, two briefly fitted folds, nnU-Net's checkpoint
format and nnU-Net's own predictions) and cached under .cache/ (TWINTRACK_NNUNET_FIXTURE to
move it). Needs the [nnunet] extra; skipped without it.

Tolerance: TwinTrack's nnU-Net mode emulates nnU-Net 2.8.1's float16 logit accumulation, so it
should land within about 1e-3 of nnU-Net; the test allows 2.5e-3 and demands the same p > 0.5
voxels except where nnU-Net's own p is within that tolerance of 0.5.
"""

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("nnunetv2")

from nnunet_fixture import CONFIGURATIONS, DATASET, TEST_CASES, results_folder  # noqa: E402
from TwinTrackCLI import main  # noqa: E402
from TwinTrackLogic.inference import Ensemble  # noqa: E402
from TwinTrackLogic.io import read_image  # noqa: E402

TOLERANCE = 2.5e-3


@pytest.fixture(scope="session")
def bundles(fixture_folder, tmp_path_factory):
    """Per configuration: the bundle of folds 0 and 1, and one of fold 0 alone."""
    root = tmp_path_factory.mktemp("nnunet-bundles")
    made = {}
    for configuration in CONFIGURATIONS:
        for folds in ("0,1", "0"):
            out = root / f"{configuration}-{folds.replace(',', '')}"
            assert main(["bundle", "from-nnunet", f"{results_folder(fixture_folder, configuration)}:{folds}",
                         "--out", str(out)]) == 0
            made[configuration, folds] = out
    return made


def nnunet_probability(fixture_folder, configuration, case):
    with np.load(fixture_folder / "predictions" / configuration / f"{case}.npz") as saved:
        return saved["probabilities"][1]


def twintrack_probability(bundle, fixture_folder, case):
    image = read_image(fixture_folder / "nnUNet_raw" / DATASET / "imagesTs" / f"{case}_0000.nii.gz",
                       dtype=np.float32)
    return Ensemble(bundle, device="cpu", threads=2).predict(image).probability


@pytest.mark.parametrize("case", TEST_CASES)
@pytest.mark.parametrize("configuration", sorted(CONFIGURATIONS))
def test_two_fold_bundle_matches_nnunet_predict(fixture_folder, bundles, configuration, case):
    expected = nnunet_probability(fixture_folder, configuration, case)
    found = twintrack_probability(bundles[configuration, "0,1"], fixture_folder, case)
    assert found.shape == expected.shape
    difference = np.abs(found - expected)
    decided = np.abs(expected - 0.5) > TOLERANCE
    print(f"{configuration} {case}: max |Δp| {difference.max():.2e}, mean {difference.mean():.1e}, "
          f"nnU-Net p>0.5 voxels {(expected > 0.5).sum()}, TwinTrack {(found > 0.5).sum()}")
    assert difference.max() <= TOLERANCE
    assert np.array_equal((found > 0.5)[decided], (expected > 0.5)[decided])
    assert (expected > 0.5).sum() > 50  # the networks find something: the threshold test is not vacuous


@pytest.mark.parametrize("configuration", sorted(CONFIGURATIONS))
def test_folds_matter_so_parity_tests_their_blending(fixture_folder, bundles, configuration):
    # Fold 0 alone must be far from nnU-Net's two-fold output, or the test above could not see fold blending.
    expected = nnunet_probability(fixture_folder, configuration, TEST_CASES[0])
    single = twintrack_probability(bundles[configuration, "0"], fixture_folder, TEST_CASES[0])
    assert np.abs(single - expected).max() > 20 * TOLERANCE


def test_border_case_is_cropped_to_nonzero(fixture_folder):
    # The second test image has zero slabs: nnU-Net crops them away and reports background there.
    image = read_image(fixture_folder / "nnUNet_raw" / DATASET / "imagesTs" / f"{TEST_CASES[1]}_0000.nii.gz")
    assert np.all(image.array[:3] == 0)
    expected = nnunet_probability(fixture_folder, "3d_fullres", TEST_CASES[1])
    assert np.all(expected[:3] == 0) and np.all(expected[:, :, -7:] == 0)
