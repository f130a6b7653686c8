"""PNG previews: written atomically, reoriented to radiological view, overlay where p is high."""

import numpy as np
import pytest

from TwinTrackLogic.io import Volume, mhr_from_masks
from TwinTrackLogic.phantom import generate_case
from TwinTrackLogic.review.preview import choose_slices, save_comparison, save_preview

plt = pytest.importorskip("matplotlib.pyplot")


def test_preview_png_is_written_with_overlay(tmp_path):
    case = generate_case(1, raters=5, seed=0)  # flipped direction
    mhr = mhr_from_masks(case.annotations)
    path = save_preview(tmp_path / "preview.png", Volume(case.image, case.geometry), mhr, raters=5)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["preview.png"]
    pixels = plt.imread(path)
    # The overlay (the Slicer module's agreement colour map) adds saturated pixels that a grey CT
    # never has; its top end is yellow: red and green high, blue low.
    rgb = pixels[..., :3]
    assert ((rgb.max(axis=-1) - rgb.min(axis=-1)) > 0.25).sum() > 50
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    assert ((red > 0.6) & (green > 0.6) & (blue < 0.35)).sum() > 5


def test_choose_slices_centres_on_the_tumour():
    calibrated = np.zeros((30, 8, 8), np.float32)
    calibrated[10:15, 2:5, 2:5] = 0.5
    calibrated[12] = 0.9
    chosen = choose_slices(calibrated, 3)
    assert 12 in chosen and all(10 <= index <= 14 for index in chosen)
    assert choose_slices(np.zeros((7, 4, 4), np.float32), 3) == [3]


def test_comparison_has_one_panel_per_map(tmp_path):
    case = generate_case(0, raters=5, seed=0)
    mhr = mhr_from_masks(case.annotations)
    ct = Volume(case.image, case.geometry)
    one = plt.imread(save_comparison(tmp_path / "one.png", ct, {"MHR": mhr}, raters=5))
    three = plt.imread(save_comparison(tmp_path / "three.png", ct,
                                       {"raw": np.clip(mhr * 2, 0, 1), "calibrated": mhr, "MHR": mhr}, raters=5))
    assert three.shape[1] > 1.8 * one.shape[1]  # three panels are much wider than one
