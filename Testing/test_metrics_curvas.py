"""CURVAS-PDACVI metrics against hand-computed values on small arrays."""

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.stats import norm

from TwinTrackLogic.evaluation.curvas import (
    annotation_box,
    binary_dsc,
    crps_volume,
    dice,
    ece_curvas,
    staple_consensus,
    thresh_dsc,
    torch_bin_edges,
)


def column(values, dtype=np.float32):
    """A (n, 1, 1) volume: one voxel per value along z."""
    return np.asarray(values, dtype=dtype).reshape(-1, 1, 1)


def masks(*rows):
    return [column(row, bool) for row in rows]


# --- Dice ------------------------------------------------------------------

def test_dice_hand_values_and_corners():
    a = column([1, 1, 0, 0], bool)
    b = column([1, 0, 1, 0], bool)
    assert dice(a, b) == pytest.approx(2 * 1 / 4, abs=1e-6)
    assert dice(a, a) == pytest.approx(1.0, abs=1e-6)
    assert dice(a, ~a) == 0.0  # disjoint
    empty = column([0, 0, 0, 0], bool)
    assert dice(empty, empty) == 1.0
    assert dice(a, empty) == 0.0
    assert dice(empty, a) == 0.0


# --- thresh_dsc --------------------------------------------------------------

def test_thresh_dsc_hand_computed():
    # MHR = [1, 0.5, 0, 0]; p = [0.9, 0.3, 0.05, 0].
    # t = 0.1, 0.24: both {0, 1} -> 1; t = 0.38: p {0} vs MHR {0, 1} -> 2/3;
    # t = 0.52, 0.66, 0.8: both {0} -> 1. Mean = (5 + 2/3) / 6.
    annotations = masks([1, 1, 0, 0], [1, 0, 0, 0])
    probability = column([0.9, 0.3, 0.05, 0.0])
    assert thresh_dsc(probability, annotations) == pytest.approx((5 + 2 / 3) / 6, abs=1e-6)


def test_thresh_dsc_is_strict_and_compares_mhr_exactly():
    # One voxel marked by 4 of 5 raters: MHR = 0.8, which is NOT > 0.8.
    # p = 0.5: t = 0.1, 0.24, 0.38 -> both marked (1); 0.52, 0.66 -> only MHR (0);
    # t = 0.8 -> both empty (1). A float32 MHR (0.800000012) would make the last 0.
    annotations = masks([1], [1], [1], [1], [0])
    assert thresh_dsc(column([0.5]), annotations) == pytest.approx(4 / 6, abs=1e-6)
    # p exactly at a threshold is not above it: p = 0.8 is above 0.66 but not 0.8 in float64.
    assert thresh_dsc(column([0.8], np.float64), annotations) == pytest.approx(4 / 6 + 2 / 6, abs=1e-6)


def test_thresh_dsc_empty_prediction_and_empty_annotations():
    one_rater = masks([0, 1, 0])
    assert thresh_dsc(column([0, 0, 0]), one_rater) == 0.0  # MHR 1 > every t, p never
    nobody = masks([0, 0, 0], [0, 0, 0])
    assert thresh_dsc(column([0, 0, 0]), nobody) == 1.0
    # p = 0.3 exceeds t = 0.1 and 0.24 only (0 each); the other four are both empty (1).
    assert thresh_dsc(column([0, 0.3, 0]), nobody) == pytest.approx(4 / 6)


def test_thresh_dsc_single_voxel_and_identical_raters():
    same = masks([0, 1, 0], [0, 1, 0], [0, 1, 0])
    assert thresh_dsc(column([0, 0.95, 0]), same) == pytest.approx(1.0, abs=1e-6)
    # p = 0.45 on the voxel: above 0.1, 0.24, 0.38 (Dice 1); below 0.52, 0.66, 0.8 (Dice 0).
    assert thresh_dsc(column([0, 0.45, 0]), same) == pytest.approx(0.5, abs=1e-6)


# --- binary_dsc / STAPLE ------------------------------------------------------

def test_staple_of_identical_raters_is_their_mask():
    mask = np.zeros((4, 5, 6), dtype=bool)
    mask[1:3, 2:4, 2:5] = True
    consensus = staple_consensus([mask, mask, mask])
    assert np.array_equal(consensus, mask)


def test_staple_of_no_annotation_is_empty():
    empty = np.zeros((3, 3, 3), dtype=bool)
    assert not staple_consensus([empty, empty]).any()


def test_binary_dsc_hand_computed():
    mask = np.zeros((3, 4, 4), dtype=bool)
    mask[1, 1:3, 1:3] = True  # 4 voxels
    probability = np.zeros(mask.shape, dtype=np.float32)
    probability[1, 1, 1:3] = 0.9  # 2 voxels inside
    probability[0, 0, 0] = 0.7  # 1 outside
    probability[1, 2, 1] = 0.5  # not > 0.5
    # Dice = 2 * 2 / (3 + 4)
    assert binary_dsc(probability, [mask] * 3) == pytest.approx(4 / 7, abs=1e-6)
    # level 0.4: the 0.5 voxel now counts: 2 * 3 / (4 + 4)
    assert binary_dsc(probability, [mask] * 3, level=0.4) == pytest.approx(6 / 8, abs=1e-6)


def test_binary_dsc_empty_cases():
    empty = np.zeros((3, 3, 3), dtype=bool)
    mask = empty.copy()
    mask[1, 1, 1] = True
    nothing = np.zeros(mask.shape, dtype=np.float32)
    assert binary_dsc(nothing, [empty, empty]) == 1.0
    assert binary_dsc(nothing, [mask, mask]) == 0.0
    assert binary_dsc(mask.astype(np.float32), [empty, empty]) == 0.0
    assert binary_dsc(mask.astype(np.float32), [mask, mask]) == pytest.approx(1.0, abs=1e-6)


# --- ECE ---------------------------------------------------------------------

def test_ece_hand_computed_one_rater():
    # p: 0.91 (tumour, wrong), 0.91 (tumour, right), 0.25 (background, conf 0.75, right),
    # 0 (background, conf 1, right). Bins: two voxels at conf 0.91 with accuracy 0.5,
    # one at 0.75 with accuracy 1, one at 1.0 with accuracy 1.
    probability = column([0.91, 0.91, 0.25, 0.0])
    label = masks([0, 1, 0, 0])
    expected = (2 * abs(0.5 - 0.91) + abs(1 - 0.75) + 0) / 4
    mean, per_rater = ece_curvas(probability, label)
    assert per_rater == [pytest.approx(expected, abs=1e-6)]
    assert mean == pytest.approx(expected, abs=1e-6)


def test_ece_confidence_one_has_its_own_bin():
    # Confidence 0.99 (right) and exactly 1 (p = 0, wrong). In separate bins:
    # (|1 - 0.99| + |0 - 1|) / 2 = 0.505; merged into one bin it would be |0.5 - 0.995| = 0.495.
    mean, _ = ece_curvas(column([0.99, 0.0]), masks([1, 1]))
    assert mean == pytest.approx(0.505, abs=1e-6)


def test_ece_bin_edges_are_torchs_float32_edges():
    edges = torch_bin_edges(50)
    assert edges[0] == 0 and edges[50] == 1 and edges[25] == np.float32(0.5)
    # torch's fused multiply-add gives 1 - 0.02f * 11 = 0.78000003, one ulp above float32(0.78),
    # while 29 / 50 comes out as float32(0.58) exactly.
    assert edges[39] == np.nextafter(np.float32(0.78), np.float32(1))
    assert edges[29] == np.float32(0.58)


def test_ece_confidence_on_a_shifted_edge_stays_in_the_lower_bin():
    # Confidence 0.78 (right) lies below torch's edge 0.78000003, so it is in bin 38, and 0.79
    # (wrong) in bin 39: (|1 - 0.78| + |0 - 0.79| + 0) / 3. Sharing one bin they would give
    # 2 |0.5 - 0.785| / 3 instead. The third voxel (p = 1, right) anchors the box.
    mean, _ = ece_curvas(column([0.78, 0.79, 1.0]), masks([1, 0, 1]))
    assert mean == pytest.approx((0.22 + 0.79) / 3, abs=1e-6)


def test_ece_predicted_class_is_tumour_only_above_one_half():
    # The second voxel (p = 1, tumour, right, confidence 1) only anchors the annotation box.
    # p = 0.52 predicts tumour (confidence 0.52, right): |1 - 0.52| / 2.
    assert ece_curvas(column([0.52, 1.0]), masks([1, 1]))[0] == pytest.approx(0.24, abs=1e-6)
    # p = 0.48 predicts background (confidence 0.52, wrong): |0 - 0.52| / 2.
    assert ece_curvas(column([0.48, 1.0]), masks([1, 1]))[0] == pytest.approx(0.26, abs=1e-6)
    # p = 0.5 is a tie (confidence 0.5): |accuracy - 0.5| is 0.5 whichever class wins.
    assert ece_curvas(column([0.5, 1.0]), masks([1, 1]))[0] == pytest.approx(0.25, abs=1e-6)


def test_ece_per_rater_and_mean():
    probability = column([0.91, 0.0])
    raters = masks([1, 0], [0, 0])
    mean, per_rater = ece_curvas(probability, raters)
    # Rater 1: both right: (|1 - 0.91| + |1 - 1|) / 2; rater 2: first wrong: (0.91 + 0) / 2.
    assert per_rater == [pytest.approx(0.045, abs=1e-6), pytest.approx(0.455, abs=1e-6)]
    assert mean == pytest.approx(0.25, abs=1e-6)


def test_ece_box_is_20_below_and_19_above():
    # Annotation at z = 25 of 50: the box is z = 5 ... 44. Wrong voxels (p = 0.91, label 0)
    # at z = 4, 5, 44, 45: only 5 and 44 are inside; everything else is confidently right.
    probability = np.zeros(50, dtype=np.float32)
    label = np.zeros(50, dtype=bool)
    probability[25], label[25] = 1.0, True
    probability[[4, 5, 44, 45]] = 0.91
    box = annotation_box([column(label, bool)])
    assert box[0] == slice(5, 45)
    mean, _ = ece_curvas(column(probability), [column(label, bool)])
    assert mean == pytest.approx(2 * 0.91 / 40, abs=1e-6)


def test_ece_box_is_clamped_at_the_image_border():
    # Tumour touching the border (z = 0 and z = 2): the box starts at 0 instead of wrapping
    # round to the far end, and stops at 2 + 20 = 22.
    probability = np.zeros(30, dtype=np.float32)
    label = np.zeros(30, dtype=bool)
    label[[0, 2]] = True
    probability[[0, 2]] = 1.0
    probability[1] = 0.91  # wrong (label 0), inside the box
    probability[25] = 0.91  # wrong, outside
    assert annotation_box([column(label, bool)])[0] == slice(0, 22)
    mean, _ = ece_curvas(column(probability), [column(label, bool)])
    assert mean == pytest.approx(0.91 / 22, abs=1e-6)


def test_ece_box_spans_the_union_of_raters_in_every_axis():
    first = np.zeros((60, 60, 60), dtype=bool)
    second = first.copy()
    first[30, 30, 30] = True
    second[32, 25, 40] = True
    assert annotation_box([first, second]) == (slice(10, 52), slice(5, 50), slice(10, 60))


def test_ece_without_annotations_is_undefined():
    mean, per_rater = ece_curvas(column([0.3, 0.0]), masks([0, 0], [0, 0]))
    assert np.isnan(mean) and all(np.isnan(v) for v in per_rater)


def test_ece_empty_prediction_against_a_single_voxel():
    # p = 0 everywhere (confidence 1, background); one voxel is tumour for the rater.
    # Box: the whole 10 voxels; one wrong at confidence 1: ECE = |0.9 - 1| = 0.1.
    label = np.zeros(10, dtype=bool)
    label[3] = True
    mean, _ = ece_curvas(column(np.zeros(10)), [column(label, bool)])
    assert mean == pytest.approx(0.1, abs=1e-6)


# --- CRPS --------------------------------------------------------------------

def official_style_crps(predicted, volumes):
    """Reference by the definition: interpolated Gaussian CDF, adaptive quadrature."""
    mean, std = np.mean(volumes), np.std(volumes)
    grid = np.linspace(norm.ppf(0.01, mean, std), norm.ppf(0.99, mean, std), 100)
    values = norm.cdf(grid, mean, std)

    def cdf(y):
        if y < grid[0]:
            return 0.0
        if y > grid[-1]:
            return 1.0
        return float(np.interp(y, grid, values))

    def integrand(y):
        return (cdf(y) - 0.5 * (np.sign(y - predicted) + 1)) ** 2

    points = [p for p in [*grid, predicted] if mean - 3 * std < p < mean + 3 * std]
    value, _ = quad(integrand, mean - 3 * std, mean + 3 * std, points=points or None, limit=500)
    return value


def test_crps_is_zero_when_raters_agree_on_the_volume():
    assert crps_volume(123.0, [50.0, 50.0, 50.0]) == 0.0
    assert crps_volume(0.0, [0.0, 0.0]) == 0.0  # no rater marked anything


def test_crps_at_the_mean_matches_the_gaussian_closed_form():
    # For a Gaussian, CRPS at the mean is std * (2 phi(0) - 1/sqrt(pi)) = 0.2337 std; the
    # official interpolation and the +-3 std window change that by well under 1 %.
    volumes = [100.0, 200.0, 300.0]
    std = np.std(volumes)
    expected = std * (2 * norm.pdf(0) - 1 / np.sqrt(np.pi))
    assert crps_volume(200.0, volumes) == pytest.approx(expected, rel=0.01)


def test_crps_matches_quadrature_of_the_definition():
    volumes = [1000.0, 1500.0, 1700.0, 2400.0, 2600.0]
    for predicted in (0.0, 900.0, 1500.0, 1840.0, 2222.0, 4000.0, 1e6):
        assert crps_volume(predicted, volumes) == pytest.approx(official_style_crps(predicted, volumes),
                                                                rel=1e-6, abs=1e-6)


def test_crps_saturates_outside_the_window_and_is_symmetric():
    volumes = [10.0, 20.0, 30.0]
    std = np.std(volumes)
    far_low, far_high = crps_volume(-1e9, volumes), crps_volume(1e9, volumes)
    assert far_low == pytest.approx(crps_volume(20.0 - 3 * std, volumes))
    assert far_low == pytest.approx(far_high, rel=1e-9)
    assert crps_volume(20.0 - 5.0, volumes) == pytest.approx(crps_volume(20.0 + 5.0, volumes), rel=1e-9)
    # Closer to the raters is better.
    assert crps_volume(20.0, volumes) < crps_volume(25.0, volumes) < crps_volume(35.0, volumes)


def test_crps_scales_with_the_volume_unit():
    volumes = np.array([3.0, 5.0, 9.0])
    assert crps_volume(4.0 * 1000, volumes * 1000) == pytest.approx(1000 * crps_volume(4.0, volumes), rel=1e-9)


def test_crps_volume_with_a_vanishing_spread_is_zero_without_a_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a 0/0 in the slopes would raise here
        assert crps_volume(2e5, [1e5, 1e5, 1e5, 1e5 + 1e-11]) == 0.0
    # A real spread still counts.
    assert crps_volume(2e5, [1e5, 1.1e5, 0.9e5]) > 0.0
