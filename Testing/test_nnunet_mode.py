"""The nnU-Net-compatible stage mode without nnU-Net: its building blocks and a whole stage on a tiny ONNX model.

Parity with nnU-Net itself is in test_nnunet_parity.py (it needs the [nnunet] extra).
"""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from bundle_helpers import identity_model, sha256
from TwinTrackLogic.inference.bundle import load_bundle
from TwinTrackLogic.errors import InputError
from TwinTrackLogic.inference import Ensemble
from TwinTrackLogic.inference.nnunet_mode import gaussian_importance, nonzero_box, window_starts
from TwinTrackLogic.inference.nnunet_resample import new_shape, resample_to_shape, separate_z_axis
from TwinTrackLogic.io import Geometry, Volume


def test_window_starts_follow_nnunet_example():
    # nnU-Net's own comment: image 110, patch 64, step 0.5 -> starts 0, 23, 46.
    assert window_starts(110, 64, 0.5) == [0, 23, 46]
    assert window_starts(64, 64, 0.5) == [0]
    assert window_starts(125, 64, 0.5) == [0, 30, 61]


def test_gaussian_is_float16_peaks_at_ten_at_the_centre_index():
    gaussian = gaussian_importance((6, 9, 8), 0.125, "gaussian")
    assert gaussian.dtype == np.float16
    assert float(gaussian.max()) == 10.0
    assert np.unravel_index(np.argmax(gaussian), gaussian.shape) == (3, 4, 4)  # patch // 2, not (p - 1) / 2
    assert gaussian.min() > 0


def test_separate_z_rule():
    assert separate_z_axis((4.0, 2.6, 2.6), (3.0, 2.0, 2.0), None) is None
    assert separate_z_axis((4.0, 2.6, 2.6), (5.0, 1.5, 1.5), None) == 0  # target anisotropy 3.3 > 3
    assert separate_z_axis((5.0, 5.0, 1.0), (2.0, 2.0, 2.0), None) is None  # two coarse axes: no separate z
    assert separate_z_axis((1.0, 1.0, 1.0), (1.0, 1.0, 1.0), True) is None


def test_separate_z_takes_nearest_slices_and_keeps_the_range():
    volume = np.arange(4 * 6 * 6, dtype=np.float32).reshape(4, 6, 6)
    result = resample_to_shape(volume, (2, 6, 6), (2.5, 0.5, 0.5), (5.0, 0.5, 0.5), 3, 0)
    # z 4 -> 2 slices: nearest neighbour of coordinates 0.5 and 2.5, rounded half up as scipy does
    assert result.shape == (2, 6, 6)
    picked = [int(np.argmin([np.abs(result[j] - volume[k]).max() for k in range(4)])) for j in range(2)]
    assert picked == [1, 3] and all(np.allclose(result[j], volume[picked[j]], atol=1e-3) for j in range(2))
    smooth = resample_to_shape(volume, (6, 9, 9), (1.0, 1.0, 1.0), (0.7, 0.7, 0.7), 3, 0)
    assert smooth.min() >= volume.min() and smooth.max() <= volume.max()  # clipped to the input's range
    assert new_shape((48, 96, 96), (4.0, 2.6, 2.6), (5.0, 1.5, 1.5)) == (38, 166, 166)


def test_nonzero_box_fills_holes():
    array = np.zeros((6, 7, 8))
    array[1:5, 2:6, 3:7] = 1
    array[2:4, 3:5, 4:6] = 0  # a hole inside is still part of the body
    assert nonzero_box(array) == (slice(1, 5), slice(2, 6), slice(3, 7))
    assert nonzero_box(np.zeros((3, 3, 3))) is None


def _nnunet_identity_bundle(folder, folds=2, spacing=(1.0, 1.0, 1.0), patch=(8, 8, 8)):
    """A version-2 bundle whose one member is nnU-Net mode over identity 'folds' (logit 1 = input)."""
    folder.mkdir(parents=True)
    models = []
    for k in range(folds):
        identity_model(folder / f"fold_{k}.onnx", 2, patch)
        models.append({"name": f"fold_{k}", "model": f"fold_{k}.onnx", "sha256": sha256(folder / f"fold_{k}.onnx")})
    manifest = {"format": "twintrack-bundle", "version": 2, "id": "nnunet-identity",
                "members": [{"name": "identity", "mode": "nnunet", "models": models, "spacing_mm": list(spacing),
                             "patch_size": list(patch), "normalisation": {"scheme": "ct", "clip": [-100.0, 100.0],
                                                                           "mean": 0.0, "std": 50.0},
                             "output": {"channels": 2, "channel": 1, "activation": "softmax"},
                             "sliding_window": {"mirror_axes": [0, 1, 2]}}]}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_identity_stage_gives_softmax_of_normalised_ct_and_zero_outside_the_nonzero_box(tmp_path):
    bundle = load_bundle(_nnunet_identity_bundle(tmp_path / "b"))
    member = bundle.members[0]
    assert member.mode == "nnunet" and [f.name for f in member.nnunet.folds] == ["fold_0", "fold_1"]
    assert member.nnunet.image_resampling.order == 3 and member.nnunet.logit_resampling.order == 1
    rng = np.random.default_rng(0)
    ct = np.zeros((12, 14, 13), dtype=np.float32)
    ct[2:11, 1:13, 3:12] = rng.uniform(-150, 150, (9, 12, 9))
    geometry = Geometry((13, 14, 12), (1.0, 1.0, 1.0), (5.0, -3.0, 2.0))
    probability = Ensemble(bundle, device="cpu", threads=1).predict(Volume(ct, geometry)).probability
    # Same spacing: no resampling; identity logits blend to themselves, up to float16 rounding. In the
    # crop's outermost voxels the float16 Gaussian weights are subnormal (as in nnU-Net), so rounding is
    # coarser there: compare one voxel in.
    expected = 1.0 / (1.0 + np.exp(-np.clip(ct, -100, 100) / 50.0))
    inside = (slice(2, 11), slice(1, 13), slice(3, 12))
    interior = (slice(3, 10), slice(2, 12), slice(4, 11))
    assert np.abs(probability[interior] - expected[interior]).max() < 1e-3
    assert np.abs(probability[inside] - expected[inside]).max() < 0.1
    outside = np.ones(ct.shape, bool)
    outside[inside] = False
    assert np.all(probability[outside] == 0.0)  # background outside nnU-Net's crop, not sigmoid(0) = 0.5


def test_nnunet_mode_needs_version_2_and_valid_resampling(tmp_path):
    folder = _nnunet_identity_bundle(tmp_path / "b")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["members"][0]["nnunet"] = {"image_resampling": {"order": 7}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match=r"image_resampling.order is 7, outside \[0, 5\]"):
        load_bundle(folder)
    manifest["members"][0].pop("nnunet")
    manifest["members"][0]["models"][1]["sha256"] = "0" * 64
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="does not match the sha256"):
        Ensemble(folder, device="cpu")


def test_float16_overflow_is_refused_like_nnunet(tmp_path):
    bundle = load_bundle(_nnunet_identity_bundle(tmp_path / "b", folds=1))
    stage = bundle.members[0]
    huge = dict(stage.normalisation, clip=[-1e9, 1e9], std=1e-3)
    bundle = load_bundle(tmp_path / "b")
    object.__setattr__(bundle.members[0], "normalisation", huge)
    ct = np.full((8, 8, 8), 1e6, dtype=np.float32)
    with pytest.raises(InputError, match="float16"):
        Ensemble(bundle, device="cpu").predict(Volume(ct, Geometry((8, 8, 8), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))))


def test_no_region_runs_members_on_the_whole_ct(tmp_path):
    from bundle_helpers import identity_bundle

    folder = identity_bundle(tmp_path / "b", with_localiser=True)
    ct = np.full((20, 20, 20), -2.0, dtype=np.float32)
    ct[8:12, 8:12, 8:12] = 3.0  # the localiser's organ (sigmoid > 0.5 where CT > 0)
    volume = Volume(ct, Geometry((20, 20, 20), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)))
    ensemble = Ensemble(folder, device="cpu", threads=1)
    with_region = ensemble.predict(volume)
    whole = ensemble.predict(volume, use_region=False)
    assert with_region.probability[0, 0, 0] == 0.0 and not with_region.region[0, 0, 0]
    assert whole.region.all() and whole.organ is None
    assert abs(whole.probability[0, 0, 0] - 1 / (1 + np.exp(2.0))) < 1e-4


def test_mirror_batching_gives_the_per_mirror_result_bit_for_bit(tmp_path):
    bundle = load_bundle(_nnunet_identity_bundle(tmp_path / "b", folds=1, patch=(6, 8, 10)))
    rng = np.random.default_rng(3)
    ct = rng.uniform(-150, 150, (9, 11, 13)).astype(np.float32)  # no symmetry: a wrong flip-back shows
    volume = Volume(ct, Geometry((13, 11, 9), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)))
    ensemble = Ensemble(bundle, device="cpu", threads=1)
    calls = []
    network = ensemble.members[0].folds[0]
    run = network.logits
    network.logits = lambda batch: calls.append(len(batch)) or run(batch)
    one_by_one = ensemble.predict(volume).probability
    per_mirror = list(calls)
    calls.clear()
    ensemble.members[0].mirror_batching = True
    together = ensemble.predict(volume).probability
    assert per_mirror and set(per_mirror) <= {1, 2} and len(calls) * 8 == len(per_mirror)
    assert set(calls) <= {8, 16}
    np.testing.assert_array_equal(together, one_by_one)
    assert np.abs(one_by_one - 1.0 / (1.0 + np.exp(-np.clip(ct, -100, 100) / 50.0)))[2:-2, 2:-2, 2:-2].max() < 1e-3


@pytest.mark.parametrize("activation, channels, channel", [("sigmoid", 3, 1), ("softmax", 2, 0), ("softmax", 2, 1),
                                                           ("softmax", 3, 2)])
def test_float16_logit_probability_is_the_float32_activation_bit_for_bit(activation, channels, channel):
    from TwinTrackLogic.inference.network import channel_probability
    from TwinTrackLogic.inference.nnunet_mode import float16_logit_probability

    logits = np.random.default_rng(channels + channel).normal(0, 8, (channels, 4, 5, 6)).astype(np.float16)
    logits[0, 0, 0, 0] = 60000  # exp overflows to inf in float32: the limit, not NaN
    expected = channel_probability(logits[None].astype(np.float32), channel, activation)[0]
    result = float16_logit_probability(logits, channel, activation)
    assert result.dtype == np.float32 and result.shape == logits.shape[1:]
    np.testing.assert_array_equal(result, expected)
    assert np.isfinite(result).all()
