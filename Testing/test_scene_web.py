"""What the scene layer gained for the browser review, headless and on trame-slicer's scene.

trame-slicer's SlicerApp wires vtkMRMLColorLogic, not vtkSlicerColorLogic, so its scene cannot
create colour-legend nodes until the scene layer registers the class; the legend placement,
the contours in 3D and the annotators' masks work on any scene.
"""

import numpy as np
import pytest

from scene_fixtures import make_work_for, phantom_calibrator  # noqa: F401  (fixture)

import headless  # noqa: E402
import scenario  # noqa: E402
from TwinTrackLib import display, outputs, segmentation  # noqa: E402
from TwinTrackLib.sampledata import phantom_case  # noqa: E402


def _legends(agreement):
    found = []
    for node in (agreement.calibrated_node, agreement.raw_node):
        for index in range(node.GetNumberOfDisplayNodes()):
            if node.GetNthDisplayNode(index).IsA("vtkMRMLColorLegendDisplayNode"):
                found.append(node.GetNthDisplayNode(index))
    return found


def _check_agreement_scene(scene, phantom_calibrator, surfaces: bool):
    case = phantom_case()
    outcome = scenario.run_scenario(scene, make_work_for(phantom_calibrator, case.latent))
    agreement = outcome.agreement
    legends = _legends(agreement)
    assert len(legends) == 2 and all(legend.GetTitleText() for legend in legends)
    assert all(tuple(legend.GetPosition()) == display.LEGEND_PLACEMENTS["bottom"] for legend in legends)
    agreement.place_legends("top")
    assert all(tuple(legend.GetPosition()) == display.LEGEND_PLACEMENTS["top"] for legend in legends)
    with pytest.raises(ValueError, match="top"):
        agreement.place_legends("left")
    assert agreement.show_contours_in_3d() is surfaces
    if surfaces:
        assert segmentation_node_surface_points(agreement.segmentation_node) > 100, "no surface for 3D views"
        assert agreement.segmentation_node.GetDisplayNode().GetVisibility3D()
    return outcome


def segmentation_node_surface_points(node) -> int:
    import slicer

    name = slicer.vtkSegmentationConverter.GetClosedSurfaceRepresentationName()
    segmentation = node.GetSegmentation()
    return sum(segmentation.GetNthSegment(i).GetRepresentation(name).GetNumberOfPoints()
               for i in range(segmentation.GetNumberOfSegments()))


def test_legends_move_and_contours_go_3d_on_the_headless_scene(phantom_calibrator):
    scene, application_logic, color_logic = headless.make_scene()
    try:
        # No Segmentations module logic in this scene: no labelmap-to-surface converter.
        _check_agreement_scene(scene, phantom_calibrator, surfaces=False)
    finally:
        scene.Clear(True)


def test_the_agreement_scene_runs_on_trame_slicers_scene(phantom_calibrator):
    core = pytest.importorskip("trame_slicer.core", reason="the web review needs pip install -e '.[review]'")
    app = core.SlicerApp()
    assert not app.scene.IsNodeClassRegistered("vtkMRMLColorLegendDisplayNode"), \
        "trame-slicer now registers the legend class: display.register_legend_class may go"
    outcome = _check_agreement_scene(app.scene, phantom_calibrator, surfaces=True)
    assert outcome.agreement.readouts()["level"].startswith("≥ 60 %")
    app.scene.Clear(True)


def test_annotators_masks_become_one_outlined_segment_each(mrml):
    case = phantom_case()
    from TwinTrackLib.sampledata import add_ct

    ct = add_ct(mrml.scene, case)
    node = segmentation.add_rater_segmentation(mrml.scene, "Annotators", ct, case.annotations, case.geometry)
    counts = segmentation.segment_voxel_counts(node)
    assert list(counts) == [f"Annotator {k}" for k in range(1, len(case.annotations) + 1)]
    assert list(counts.values()) == [int(np.count_nonzero(mask)) for mask in case.annotations]
    assert node.GetDisplayNode().GetVisibility2DOutline() and not node.GetDisplayNode().GetVisibility2DFill()
    assert not outputs.output_nodes(mrml.scene), "the annotators' masks are the case's, not a result"


@pytest.fixture
def mrml():
    from types import SimpleNamespace

    scene, application_logic, color_logic = headless.make_scene()
    yield SimpleNamespace(scene=scene, app=application_logic, colors=color_logic)
    scene.Clear(True)
