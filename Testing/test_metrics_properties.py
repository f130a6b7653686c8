"""Properties every metric must have, on random small arrays (hypothesis)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from TwinTrackLogic.evaluation.curvas import crps_volume, ece_curvas, thresh_dsc
from TwinTrackLogic.evaluation.mhr import brier_mhr, ece_mhr, ece_mhr_equal_mass, soft_dice

RATERS = 3


@st.composite
def case_arrays(draw):
    """p (n, 1, 1) float32 in [0, 1] and three rater masks, n from 1 to 40."""
    n = draw(st.integers(1, 40))
    probability = np.array(draw(st.lists(st.floats(0, 1, width=32), min_size=n, max_size=n)),
                           dtype=np.float32).reshape(n, 1, 1)
    masks = [np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n))).reshape(n, 1, 1)
             for _ in range(RATERS)]
    return probability, masks


@settings(max_examples=60, deadline=None)
@given(case_arrays())
def test_mhr_ece_never_exceeds_root_brier(arrays):
    # Per bin |mean(p - MHR)| <= sqrt(mean (p - MHR)^2) (Jensen), and the weighted mean of
    # square roots is at most the square root of the weighted mean: ECE <= sqrt(Brier).
    probability, masks = arrays
    mhr = np.mean(np.stack(masks), axis=0).astype(np.float32)
    root_brier = np.sqrt(brier_mhr(probability, mhr))
    assert 0.0 <= ece_mhr(probability, mhr) <= root_brier + 1e-9
    assert 0.0 <= ece_mhr_equal_mass(probability, mhr) <= root_brier + 1e-9
    assert 0.0 <= soft_dice(probability, mhr) <= 1.0 + 1e-12


@settings(max_examples=60, deadline=None)
@given(case_arrays())
def test_challenge_metrics_stay_in_range_and_per_rater_is_independent(arrays):
    probability, masks = arrays
    assert 0.0 <= thresh_dsc(probability, masks) <= 1.0
    mean, per_rater = ece_curvas(probability, masks)
    if not any(mask.any() for mask in masks):
        assert np.isnan(mean)
        return
    assert 0.0 <= mean <= 1.0 and len(per_rater) == RATERS
    # Each rater's ECE depends only on the box (from all raters) and that rater's mask: scoring the
    # rater alone, with the other raters' union forcing the same box, gives the same number.
    union = np.logical_or.reduce(masks)
    for mask, value in zip(masks, per_rater):
        alone = ece_curvas(probability, [mask, union])[1][0]
        assert abs(alone - value) < 1e-12


@settings(max_examples=60, deadline=None)
@given(st.floats(0, 1e6), st.lists(st.floats(0, 1e5), min_size=2, max_size=6))
def test_crps_is_non_negative_and_bounded_by_the_window(predicted, volumes):
    # The integrand is at most 1 over a window of 6 std.
    value = crps_volume(predicted, volumes)
    assert 0.0 <= value <= 6.0 * float(np.std(volumes)) * (1 + 1e-9) + 1e-9
