"""Sliding window and two-stage engine through identity ONNX models built at test time."""

import numpy as np
import onnxruntime
import pytest
from scipy import ndimage

from bundle_helpers import identity_bundle, identity_model, stage, write_manifest
from TwinTrackLogic.errors import Cancelled, InputError
from TwinTrackLogic.inference import Ensemble
from TwinTrackLogic.inference.sliding_window import importance_map, sliding_window, window_starts
from TwinTrackLogic.io import Geometry, Volume
from TwinTrackLogic.progress import CancelToken

PATCH = (8, 12, 10)


@pytest.fixture(scope="module")
def identity_session(tmp_path_factory):
    path = identity_model(tmp_path_factory.mktemp("model") / "identity.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda batch: session.run(None, {"image": batch})[0][:, 0]


@pytest.mark.parametrize("shape", [(5, 7, 3), PATCH, (9, 13, 11), (23, 31, 17), (8, 40, 10)])
@pytest.mark.parametrize("overlap, mirror_axes, batch_size", [(0.5, (), 2), (0.25, (0, 1, 2), 3), (0.0, (2,), 1)])
def test_identity_model_is_reproduced_at_borders_and_overlaps(identity_session, shape, overlap, mirror_axes,
                                                              batch_size):
    volume = np.random.default_rng(sum(shape)).normal(size=shape).astype(np.float32)
    output = sliding_window(volume, identity_session, PATCH, overlap, batch_size=batch_size,
                            mirror_axes=mirror_axes)
    assert output.shape == volume.shape and output.dtype == np.float32
    np.testing.assert_allclose(output, volume, rtol=1e-5, atol=1e-6)


def test_windows_cover_every_voxel_with_the_overlap():
    for size in (8, 9, 17, 40, 101):
        starts = window_starts(size, 8, 0.5)
        assert starts[0] == 0 and starts[-1] + 8 == max(size, 8)
        assert all(b - a <= 4 for a, b in zip(starts, starts[1:]))


def test_gaussian_importance_peaks_in_the_centre_and_is_positive_everywhere():
    weight = importance_map((9, 12, 7))
    assert weight.min() > 0
    assert weight[4, 5, 3] == weight[4, 6, 3] == weight.max()  # centre of 9 x 12 x 7, symmetric in y
    assert weight[0, 0, 0] < 0.01 * weight.max()


def test_weighted_mean_favours_window_centres():
    """A predictor that returns each window's own offset: the blend must weight centres, not edges."""
    volume = np.zeros((8, 8, 24), dtype=np.float32)
    calls = []

    def predictor(batch):
        calls.append(len(batch))
        return np.full((len(batch),) + batch.shape[2:], float(len(calls)), dtype=np.float32)

    output = sliding_window(volume, predictor, (8, 8, 8), overlap=0.5, batch_size=1)
    # Windows start at x = 0, 4, 8, 12, 16 and return 1..5; x = 4 is the centre of window 1 (value 1) ... the
    # voxel at the centre of window k must be closer to k than to any neighbour.
    for k, centre in enumerate((3, 7, 11, 15, 19), start=1):
        assert abs(output[4, 4, centre] - k) < 0.5


def test_cancel_stops_within_one_patch():
    volume = np.zeros((8, 8, 40), dtype=np.float32)
    token = CancelToken()
    calls = []

    def predictor(batch):
        calls.append(1)
        return batch[:, 0]

    def progress(fraction, message):
        if fraction > 0:
            token.cancel()

    with pytest.raises(Cancelled):
        sliding_window(volume, predictor, (8, 8, 8), overlap=0.5, batch_size=1, progress=progress, token=token)
    assert len(calls) == 1


def oblique_geometry(shape_zyx, spacing=(1.0, 1.0, 1.0)):
    angle = np.deg2rad(10)
    direction = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, -1]])
    return Geometry(tuple(reversed(shape_zyx)), spacing, (-40.0, 12.5, 300.0), direction.ravel())


def test_engine_output_is_sigmoid_of_ct_on_the_ct_grid(tmp_path):
    folder = identity_bundle(tmp_path / "b", members=3, channels=2, patch=PATCH)
    geometry = oblique_geometry((11, 30, 21))
    ct = np.random.default_rng(1).normal(size=geometry.shape).astype(np.float32)
    prediction = Ensemble(folder, device="cpu", threads=1).predict(Volume(ct, geometry))
    assert prediction.geometry == geometry and prediction.probability.shape == geometry.shape
    assert prediction.organ is None and prediction.region.all()
    np.testing.assert_allclose(prediction.probability, 1 / (1 + np.exp(-ct)), atol=1e-5)
    assert 0.0 <= prediction.probability.min() and prediction.probability.max() <= 1.0


def test_engine_resamples_to_the_member_spacing_and_back(tmp_path):
    folder = identity_bundle(tmp_path / "b", spacing=(2.0, 2.0, 2.0), patch=PATCH)
    geometry = oblique_geometry((20, 40, 36))
    z, y, x = np.mgrid[:20, :40, :36].astype(np.float32)
    ct = np.sin(x / 9.0) + np.cos(y / 11.0) + z / 20.0 - 1  # smooth: linear interpolation is nearly exact
    probability = Ensemble(folder, device="cpu").predict(Volume(ct, geometry)).probability
    inner = (slice(2, -2), slice(2, -2), slice(2, -2))
    np.testing.assert_allclose(probability[inner], (1 / (1 + np.exp(-ct)))[inner], atol=0.01)


def test_localiser_region_is_dilated_organ_and_probability_is_zero_outside(tmp_path):
    folder = identity_bundle(tmp_path / "b", with_localiser=True, patch=PATCH)
    geometry = Geometry((40, 30, 20), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    ct = np.full(geometry.shape, -5.0, dtype=np.float32)
    ct[8:12, 10:16, 15:22] = 5.0  # the "organ": sigmoid(5) > 0.5 > sigmoid(-5)
    prediction = Ensemble(folder, device="cpu").predict(Volume(ct, geometry))
    assert np.array_equal(prediction.organ, ct > 0)
    expected_region = ndimage.distance_transform_edt(ct <= 0) <= 2.0
    assert np.array_equal(prediction.region, expected_region)
    assert not prediction.probability[~prediction.region].any()
    np.testing.assert_allclose(prediction.probability[prediction.region],
                               1 / (1 + np.exp(-ct[prediction.region])), atol=1e-5)


def test_engine_progress_and_cancel(tmp_path):
    folder = identity_bundle(tmp_path / "b", members=2, patch=(4, 4, 4), sliding_window={"batch_size": 1})
    geometry = Geometry((16, 16, 16), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    ct = np.zeros(geometry.shape, dtype=np.float32)
    ensemble = Ensemble(folder, device="cpu")
    reports = []
    ensemble.predict(Volume(ct, geometry), progress=lambda f, m: reports.append((f, m)))
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("member 2/2: patch" in m for _, m in reports)

    token = CancelToken()
    seen = []

    def cancel_after_first(fraction, message):
        seen.append(message)
        token.cancel()

    with pytest.raises(Cancelled):
        ensemble.predict(Volume(ct, geometry), progress=cancel_after_first, token=token)
    assert len(seen) == 1


def test_missing_onnx_file_is_named(tmp_path):
    folder = identity_bundle(tmp_path / "b")
    (folder / "member_1.onnx").unlink()
    with pytest.raises(InputError, match="member_1.onnx"):
        Ensemble(folder)


def test_corrupted_onnx_with_matching_hash_is_a_clear_error(tmp_path):
    folder = tmp_path / "b"
    folder.mkdir()
    (folder / "member_1.onnx").write_bytes(b"this is not an ONNX graph" * 10)
    write_manifest(folder, [stage("member_1.onnx", folder)])
    with pytest.raises(InputError, match="cannot be loaded by onnxruntime"):
        Ensemble(folder, device="cpu")


@pytest.mark.parametrize("build, message", [
    (lambda p: identity_model(p, channels=3), "3 channels, the manifest says 1"),
    (lambda p: identity_model(p, input_rank=4), "rank 4"),
    (lambda p: identity_model(p, input_channels=2), "2 channels; TwinTrack feeds 1"),
    (lambda p: identity_model(p, patch=(8, 8, 16)), "patch_size"),
])
def test_wrong_shaped_onnx_is_refused_at_load(tmp_path, build, message):
    folder = tmp_path / "b"
    folder.mkdir()
    build(folder / "member_1.onnx")
    write_manifest(folder, [stage("member_1.onnx", folder, patch=(8, 8, 8))])
    with pytest.raises(InputError, match=message) as error:
        Ensemble(folder, device="cpu")
    assert "member_1.onnx" in str(error.value)


def test_cuda_request_without_cuda_is_explained(tmp_path):
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(InputError, match="--device cpu"):
        Ensemble(identity_bundle(tmp_path / "b"), device="cuda")
