"""Bootstrap bands of the reliability diagrams (evaluate --plots, calibrate --cv --plots)."""

import numpy as np
import pytest

from TwinTrackLogic.evaluation.plots import reliability_band


def test_band_holds_the_pooled_curve_and_widens_with_disagreeing_cases():
    rng = np.random.default_rng(0)
    count = rng.integers(50, 200, size=(12, 5)).astype(float)
    value = count * np.linspace(0.1, 0.9, 5)
    agreeing = value.copy()  # every case: MHR = value, so resampling cases changes nothing
    x, y, low, high = reliability_band(count, value, agreeing, resamples=300)
    np.testing.assert_allclose(x, np.linspace(0.1, 0.9, 5))
    np.testing.assert_allclose(y, x)
    np.testing.assert_allclose(low, y)
    np.testing.assert_allclose(high, y)
    # half the cases over-, half under-estimate: the band must open around the pooled curve
    disagreeing = value * np.where(np.arange(12)[:, None] % 2 == 0, 0.6, 1.4)
    x, y, low, high = reliability_band(count, value, disagreeing, resamples=300)
    assert np.all(low < y) and np.all(y < high) and np.all(high - low > 0.02)


def test_empty_bins_are_left_out():
    count = np.array([[10.0, 0.0, 5.0], [10.0, 0.0, 5.0]])
    x, y, low, high = reliability_band(count, count * 0.5, count * 0.25, resamples=50)
    assert x.size == y.size == low.size == high.size == 2
    assert y == pytest.approx([0.25, 0.25])
