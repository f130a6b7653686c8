"""Slice views rendered headless, checked pixel by pixel.

vtkMRMLSliceLogic blends CT and agreement map exactly as Slicer's slice views
do (no OpenGL); the full view with its colour legend renders offscreen
through EGL. Screenshots go to Testing/artefacts/.
"""

import numpy as np
import pytest

from scene_fixtures import ARTEFACTS, make_work_for, phantom_calibrator  # noqa: F401  (fixture)

import headless  # noqa: E402
import scenario  # noqa: E402
from TwinTrackLib import display, outputs, volumes  # noqa: E402
from TwinTrackLogic.review.colormaps import DEFAULT_COLOR_MAP, map_colors  # noqa: E402


def _offscreen_opengl_problem():
    """None if VTK can render offscreen here; else why not. Probed in a child
    process because a missing EGL/Mesa driver can abort the process."""
    import os
    import subprocess
    import sys

    probe = ("import vtk; w = vtk.vtkRenderWindow(); w.SetOffScreenRendering(True); w.SetSize(8, 8); "
             "w.Render(); print(w.GetClassName())")
    try:
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                              env=dict(os.environ))
    except subprocess.TimeoutExpired:
        return "offscreen rendering probe timed out"
    if done.returncode != 0:
        return (f"VTK could not open an offscreen OpenGL window (exit {done.returncode}); install Mesa's "
                f"EGL driver (Debian: libegl1 libegl-mesa0 libgl1-mesa-dri). {done.stderr.strip()[-300:]}")
    return None


@pytest.fixture(scope="module")
def review(phantom_calibrator):
    scene, application_logic, color_logic = headless.make_scene()
    view = headless.HeadlessSliceView(scene, application_logic, size=(480, 480))
    problem = _offscreen_opengl_problem()
    full_view = problem or True
    if problem is None:
        view.attach_render_window()  # before the result exists: the legend manager sees its nodes added
    from TwinTrackLib.sampledata import phantom_case

    case = phantom_case()
    outcome = scenario.run_scenario(scene, make_work_for(phantom_calibrator, case.latent))
    view.fit()
    # Slice through the tumour's centre of mass.
    k, j, i = np.argwhere(case.latent > 0.5).mean(axis=0)
    view.jump_to_ras((volumes.ijk_to_ras(case.geometry) @ np.array([i, j, k, 1.0]))[:3])
    yield outcome, view, full_view
    view.close()
    scene.Clear(True)
    del color_logic


def _reset(agreement, level=0.6, opacity=1.0):
    agreement.set_range(None)
    agreement.show_uncalibrated(False)
    agreement.set_level(level)
    agreement.set_opacity(opacity)


def _background_only(view, agreement):
    agreement.set_opacity(0.0)
    pixels = view.rgba()[..., :3].astype(int)
    agreement.set_opacity(1.0)
    return pixels


def _map_position(rgb: np.ndarray) -> np.ndarray:
    """For each pixel colour, the p in [0, 1] of the closest colour-map entry."""
    colors = map_colors(DEFAULT_COLOR_MAP, 256) * 255
    distance = np.linalg.norm(rgb[:, None, :] - colors[None, :, :], axis=2)
    return distance.argmin(axis=1) / 255.0, distance.min(axis=1)


def test_overlay_colours_the_region_above_the_level_and_nothing_else(review):
    outcome, view, _ = review
    _reset(outcome.agreement, level=0.6)
    background = _background_only(view, outcome.agreement)
    pixels = view.rgba()[..., :3].astype(int)
    p = view.layer_values("foreground")
    above, below = p >= 0.6, p < 0.6
    assert above.sum() > 50, "the slice must cut the tumour"
    assert np.array_equal(pixels[below], background[below]), "overlay drawn below the level"
    changed = np.any(pixels != background, axis=2)
    assert changed[above].mean() > 0.99, "voxels above the level are not coloured"
    # The colour is the map's colour for that voxel's agreement.
    position, distance = _map_position(pixels[above].astype(float))
    assert np.percentile(distance, 95) < 6.0
    assert np.abs(position - p[above]).max() < 0.02
    headless.write_png(ARTEFACTS / "slice_level_60.png", view.rgba())


def test_moving_the_level_changes_exactly_the_pixels_in_between(review):
    outcome, view, _ = review
    _reset(outcome.agreement, level=0.6)
    at_60 = view.rgba()[..., :3].astype(int)
    outcome.agreement.set_level(0.3)
    at_30 = view.rgba()[..., :3].astype(int)
    p = view.layer_values("foreground")
    differs = np.any(at_60 != at_30, axis=2)
    between = (p >= 0.3) & (p < 0.6)
    assert between.sum() > 20
    assert np.array_equal(differs, between), "only voxels between the two levels may change"
    assert display.ABOVE_ALL > 1.0 and outcome.agreement.calibrated_node.GetDisplayNode().GetLowerThreshold() == 0.3
    headless.write_png(ARTEFACTS / "slice_level_30.png", view.rgba())


def test_range_mode_shows_only_the_ambiguous_band(review):
    outcome, view, _ = review
    _reset(outcome.agreement)
    background = _background_only(view, outcome.agreement)
    outcome.agreement.set_range(0.2, 0.8)
    pixels = view.rgba()[..., :3].astype(int)
    p = view.layer_values("foreground")
    band = (p >= 0.2) & (p < 0.8)
    changed = np.any(pixels != background, axis=2)
    assert band.sum() > 20 and (p >= 0.8).sum() > 20
    assert not changed[~band].any(), "pixels outside the band are coloured"
    assert changed[band].mean() > 0.99
    text = outcome.agreement.readouts()["band"]
    assert text.startswith("Ambiguous band 20 %–80 % of annotators (1 to 3 of 5)")
    headless.write_png(ARTEFACTS / "slice_band_20_80.png", view.rgba())


def test_opacity_blends_overlay_and_ct(review):
    outcome, view, _ = review
    _reset(outcome.agreement, opacity=1.0)
    background = _background_only(view, outcome.agreement)
    opaque = view.rgba()[..., :3].astype(float)
    outcome.agreement.set_opacity(0.5)
    half = view.rgba()[..., :3].astype(float)
    above = view.layer_values("foreground") >= 0.6
    expected = 0.5 * opaque[above] + 0.5 * background[above]
    assert np.abs(half[above] - expected).max() <= 2.0


def test_uncalibrated_toggle_shows_the_raw_ensemble_map(review):
    outcome, view, _ = review
    _reset(outcome.agreement)
    outcome.agreement.show_uncalibrated(True)
    assert view.composite_node.GetForegroundVolumeID() == outcome.agreement.raw_node.GetID()
    raw_slice = view.layer_values("foreground")
    assert "not annotator agreement" in outcome.agreement.readouts()["level"]
    outcome.agreement.show_uncalibrated(False)
    assert view.composite_node.GetForegroundVolumeID() == outcome.agreement.calibrated_node.GetID()
    calibrated_slice = view.layer_values("foreground")
    inside = calibrated_slice > 0.05
    assert inside.sum() > 50
    # Both are the same voxels through different maps: the calibrator is monotone.
    order = np.argsort(raw_slice[inside], kind="stable")
    assert np.all(np.diff(calibrated_slice[inside][order]) >= -1e-6)
    assert not np.allclose(raw_slice[inside], calibrated_slice[inside], atol=0.02)
    assert "expected to label tumour" in outcome.agreement.readouts()["level"]


def test_color_legend_is_drawn_in_the_full_view(review):
    outcome, view, full_view = review
    if full_view is not True:
        pytest.skip(f"no offscreen OpenGL (EGL) context on this machine: {full_view}")
    _reset(outcome.agreement, opacity=0.7)
    with_legend = view.render_full(ARTEFACTS / "view_with_legend.png").astype(int)
    legend = outcome.agreement.calibrated_node.GetNthDisplayNode(1)
    assert legend.IsA("vtkMRMLColorLegendDisplayNode")
    assert legend.GetTitleText() == "Expected annotator agreement"
    legend.SetVisibility(False)
    without = view.render_full().astype(int)
    legend.SetVisibility(True)
    rows = with_legend.shape[0]
    bottom = slice(int(rows * 0.85), rows)
    differs = np.any(with_legend[bottom] != without[bottom], axis=2)
    assert differs.sum() > 500, "nothing drawn where the legend belongs"
    # The bar carries the map: its brightest, yellowest end is there.
    yellow = map_colors(DEFAULT_COLOR_MAP, 256)[-1] * 255
    distance = np.linalg.norm(with_legend[bottom][..., :3] - yellow, axis=2)
    assert distance.min() < 30
    # Above the legend the image is unchanged.
    assert np.array_equal(with_legend[: int(rows * 0.5)], without[: int(rows * 0.5)])


def test_remove_outputs_leaves_the_scene_as_before(review):
    outcome, view, _ = review
    scene = outcome.ct_node.GetScene()
    assert len(outputs.output_nodes(scene)) > 0
    ids = [node.GetID() for node in outputs.output_nodes(scene)]
    assert outcome.agreement.calibrated_node.GetID() in ids
    assert outcome.agreement.segmentation_node.GetID() in ids
    assert outcome.agreement.chart.GetID() in ids


def test_a_slider_step_modifies_the_colour_table_once(review):
    """Per-entry updates made every view and legend react 256 times per step
    (90 ms on a 512 x 512 x 100 result instead of 1.5 ms)."""
    import vtk

    outcome, _, _ = review
    table = outcome.agreement.table
    events = []
    tag = table.AddObserver(vtk.vtkCommand.ModifiedEvent, lambda caller, event: events.append(event))
    try:
        outcome.agreement.set_level(0.42)
    finally:
        table.RemoveObserver(tag)
    assert len(events) <= 2  # one per map sharing the table
    rgba = [0.0] * 4
    below, above = int(0.40 * 256), int(0.44 * 256)
    table.GetColor(below, rgba)
    assert rgba[3] == 0.0
    table.GetColor(above, rgba)
    assert rgba[3] == 1.0


def test_contour_segments_are_outlined_in_the_full_view(review):
    outcome, view, full_view = review
    if full_view is not True:
        pytest.skip(f"no offscreen OpenGL (EGL) context on this machine: {full_view}")
    _reset(outcome.agreement, opacity=0.7)
    segmentation_display = outcome.agreement.segmentation_node.GetDisplayNode()
    with_contours = view.render_full().astype(int)
    segmentation_display.SetVisibility(False)
    without = view.render_full().astype(int)
    segmentation_display.SetVisibility(True)
    differs = np.any(with_contours != without, axis=2)
    assert differs.sum() > 50, "no contour drawn"
    # Outlines hug the map: every changed pixel is near voxels at >= 20 % agreement.
    from scipy import ndimage

    near_map = ndimage.binary_dilation(view.layer_values("foreground") >= 0.2, iterations=12)
    rows = with_contours.shape[0]
    assert differs[: int(rows * 0.85)][~near_map[: int(rows * 0.85)]].sum() == 0


def test_replaying_unchanged_review_settings_touches_nothing(review):
    """The widget calls every review setter on each parameter change (each
    slider step): values that did not change must not recolour the table."""
    import vtk

    outcome, view, _ = review
    agreement = outcome.agreement
    _reset(agreement, level=0.6, opacity=0.7)
    events = []
    observed = [agreement.table, view.composite_node]
    tags = [node.AddObserver(vtk.vtkCommand.ModifiedEvent, lambda caller, event: events.append(caller))
            for node in observed]
    try:
        agreement.set_level(0.6)
        agreement.set_range(None, 0.8)
        agreement.set_opacity(0.7)
    finally:
        for node, tag in zip(observed, tags):
            node.RemoveObserver(tag)
    assert events == []
