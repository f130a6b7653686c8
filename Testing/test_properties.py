"""Property-based tests: the file parsers never crash on hostile input, and the
calibrators keep their invariants on any data."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bundle_helpers import identity_bundle

from TwinTrackLogic.inference.bundle import load_bundle
from TwinTrackLogic.calibration import METHODS, CalibrationStatistics, fit_calibrator
from TwinTrackLogic.calibration.calibrators import Calibrator
from TwinTrackLogic.errors import InputError

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=20,
)


def _paths(data, prefix=()):
    """Every key path of a nested JSON value."""
    yield prefix
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(data, list):
        for index, value in enumerate(data[:4]):
            yield from _paths(value, prefix + (index,))


def _mutate(data, path, value, delete):
    data = copy.deepcopy(data)
    if not path:
        return value
    target = data
    for key in path[:-1]:
        target = target[key]
    if delete and isinstance(target, dict):
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


def _fitted_statistics(seed=0, size=20_000, raters=5):
    rng = np.random.default_rng(seed)
    p = rng.random(size).astype(np.float32)
    mhr = (rng.binomial(raters, p ** 1.7) / raters).astype(np.float32)
    statistics = CalibrationStatistics()
    statistics.add(p, mhr, raters=raters)
    return statistics


VALID_CALIBRATORS = {method: fit_calibrator(_fitted_statistics(), method, region="r", probability_source="s").to_dict()
                     for method in METHODS}


@settings(max_examples=150, deadline=None)
@given(method=st.sampled_from(sorted(METHODS)), choice=st.integers(0, 10**6), value=JSON_VALUES,
       delete=st.booleans())
def test_calibrator_parser_refuses_or_accepts_but_never_crashes(method, choice, value, delete):
    valid = VALID_CALIBRATORS[method]
    paths = list(_paths(valid))
    tampered = _mutate(valid, paths[choice % len(paths)], value, delete)
    try:
        calibrator = Calibrator.from_dict(tampered, source="tampered.json")
    except InputError as error:
        assert "tampered.json" in str(error)
        return
    # Whatever was accepted must still be a usable calibrator.
    out = calibrator.transform(np.linspace(0, 1, 101, dtype=np.float32))
    assert np.all(np.isfinite(out)) and out.min() >= 0.0 and out.max() <= 1.0


@pytest.fixture(scope="module")
def bundle_manifest(tmp_path_factory):
    folder = identity_bundle(tmp_path_factory.mktemp("bundle"), members=2, with_localiser=True)
    return folder, json.loads((folder / "manifest.json").read_text())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(choice=st.integers(0, 10**6), value=JSON_VALUES, delete=st.booleans())
def test_manifest_parser_refuses_or_accepts_but_never_crashes(bundle_manifest, tmp_path_factory, choice, value,
                                                              delete):
    folder, valid = bundle_manifest
    paths = list(_paths(valid))
    tampered = _mutate(valid, paths[choice % len(paths)], value, delete)
    copy_folder = tmp_path_factory.mktemp("tampered")
    for model in Path(folder).glob("*.onnx"):
        (copy_folder / model.name).symlink_to(model)
    (copy_folder / "manifest.json").write_text(json.dumps(tampered))
    try:
        bundle = load_bundle(copy_folder)
    except InputError as error:
        assert "manifest.json" in str(error) or str(copy_folder) in str(error)
        return
    for stage in bundle.members:  # accepted: every model path stays inside the bundle
        assert Path(stage.model_path).resolve().parent == copy_folder.resolve()


def _random_data(draw_seed, size, raters):
    return _fitted_statistics(draw_seed, size, raters)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), size=st.integers(50, 5000), raters=st.integers(2, 7),
       method=st.sampled_from(sorted(METHODS)))
def test_calibrated_values_lie_in_unit_interval_and_chunking_does_not_matter(seed, size, raters, method):
    calibrator = fit_calibrator(_random_data(seed, size, raters), method)
    rng = np.random.default_rng(seed + 1)
    p = rng.random((7, 11, 13)).astype(np.float32)
    p.flat[:3] = [0.0, 1.0, 0.5]
    whole = calibrator.transform(p)
    assert whole.dtype == np.float32 and whole.shape == p.shape
    assert np.all((whole >= 0.0) & (whole <= 1.0))
    pieces = np.concatenate([calibrator.transform(chunk) for chunk in np.array_split(p.reshape(-1), 5)])
    assert np.array_equal(pieces, whole.reshape(-1))
    assert np.array_equal(calibrator.transform(p[::-1, :, ::2]), whole[::-1, :, ::2])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), size=st.integers(50, 5000), raters=st.integers(2, 7))
def test_isotonic_is_monotone(seed, size, raters):
    calibrator = fit_calibrator(_random_data(seed, size, raters), "isotonic")
    grid = np.sort(np.random.default_rng(seed).random(2000).astype(np.float32))
    assert np.all(np.diff(calibrator.transform(grid)) >= 0)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31), raters=st.integers(3, 7))
def test_isotonic_is_near_identity_on_calibrated_data(seed, raters):
    rng = np.random.default_rng(seed)
    p = rng.random(400_000).astype(np.float32)
    mhr = (rng.binomial(raters, p) / raters).astype(np.float32)  # already calibrated: E[MHR | p] = p
    statistics = CalibrationStatistics()
    statistics.add(p, mhr, raters=raters)
    calibrator = fit_calibrator(statistics, "isotonic")
    grid = np.linspace(0.05, 0.95, 19, dtype=np.float32)
    assert np.max(np.abs(calibrator.transform(grid) - grid)) < 0.03


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), parts=st.integers(2, 6))
def test_statistics_merge_equals_one_pass(seed, parts):
    rng = np.random.default_rng(seed)
    p = rng.random(3000).astype(np.float32)
    mhr = (rng.binomial(4, p) / 4).astype(np.float32)
    whole = CalibrationStatistics()
    whole.add(p, mhr, raters=4)
    merged = CalibrationStatistics()
    for p_part, mhr_part in zip(np.array_split(p, parts), np.array_split(mhr, parts)):
        piece = CalibrationStatistics()
        piece.add(p_part, mhr_part, raters=4)
        merged.merge(CalibrationStatistics.from_dict(json.loads(json.dumps(piece.to_dict()))))
    assert np.array_equal(merged.counts, whole.counts)
    assert np.allclose(merged.sum_mhr, whole.sum_mhr, rtol=1e-12, atol=1e-9)
    assume(whole.voxels > 0)
    a = fit_calibrator(whole, "isotonic").transform(p)
    b = fit_calibrator(merged, "isotonic").transform(p)
    assert np.allclose(a, b, atol=1e-6)
