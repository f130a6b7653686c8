"""A rerun replaces only that CT's previous result (finding N6 of the second module audit): never
another CT's result, never a result reloaded without its CT reference, never the user's nodes,
and never the contour segmentation once the user added or painted segments in it."""

# ruff: noqa: F811  (pytest fixtures are imported, then named as parameters)
from __future__ import annotations

import numpy as np
import pytest

from scene_fixtures import mrml, phantom_calibrator  # noqa: F401  (fixtures)
from TwinTrackLib import outputs
from TwinTrackLib.sampledata import add_ct, phantom_case
from TwinTrackLib.segmentation import segment_name
from TwinTrackLogic.io import Volume
from TwinTrackLogic.pipeline import run_case


@pytest.fixture(scope="module")
def case_and_result(phantom_calibrator):
    case = phantom_case()

    def predict(volume, progress=None, token=None):
        from types import SimpleNamespace

        return SimpleNamespace(probability=np.sqrt(np.clip(case.latent, 0, 1)).astype(np.float32),
                               region=np.ones(case.latent.shape, dtype=bool))

    result = run_case(Volume(case.image, case.geometry), predict=predict, calibrator=phantom_calibrator)
    return case, result


def ids(nodes) -> set:
    return {node.GetID() for node in nodes}


def test_a_rerun_on_one_ct_leaves_the_other_cts_result_alone(mrml, case_and_result):
    case, result = case_and_result
    ct_a, ct_b = add_ct(mrml.scene, case, "CT A"), add_ct(mrml.scene, case, "CT B")
    first_a = outputs.AgreementScene(mrml.scene, ct_a, result)
    b = outputs.AgreementScene(mrml.scene, ct_b, result)
    of_b = ids(outputs.output_nodes(mrml.scene, ct_b))
    assert of_b and not of_b & ids(outputs.output_nodes(mrml.scene, ct_a))
    assert len(outputs.output_nodes(mrml.scene, ct_a)) == len(of_b)
    old_a = ids(outputs.output_nodes(mrml.scene, ct_a))

    second_a = outputs.AgreementScene(mrml.scene, ct_a, result)
    assert ids(outputs.output_nodes(mrml.scene, ct_b)) == of_b and b.intact, "CT B's result was touched"
    new_a = ids(outputs.output_nodes(mrml.scene, ct_a))
    assert len(new_a) == len(old_a) and not new_a & old_a, "CT A's old result was not replaced"
    assert not first_a.intact and second_a.intact


def test_the_users_nodes_and_a_result_without_its_ct_reference_stay(mrml, case_and_result):
    case, result = case_and_result
    ct = add_ct(mrml.scene, case, "CT")
    mine = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "TwinTrack agreement contours")
    older = mrml.scene.AddNewNodeByClass("vtkMRMLTableNode", "TwinTrack volume by agreement")
    older.SetAttribute(outputs.OUTPUT_ATTRIBUTE, "1")  # a result from a scene saved before the reference
    outputs.AgreementScene(mrml.scene, ct, result)
    outputs.AgreementScene(mrml.scene, ct, result)
    assert mine.GetScene() is mrml.scene and older.GetScene() is mrml.scene


def test_a_contour_segmentation_with_the_users_segments_is_kept_as_theirs(mrml, case_and_result):
    case, result = case_and_result
    ct = add_ct(mrml.scene, case, "CT")
    first = outputs.AgreementScene(mrml.scene, ct, result, contour_levels=(0.2, 0.5))
    contours = first.segmentation_node
    assert not outputs.holds_user_segments(contours)
    first.add_segment_at_level(0.6)  # "Create segment at current level"
    assert outputs.holds_user_segments(contours)

    second = outputs.AgreementScene(mrml.scene, ct, result, contour_levels=(0.2, 0.5))
    assert contours.GetScene() is mrml.scene, "the rerun deleted the user's segment"
    assert contours.GetAttribute(outputs.OUTPUT_ATTRIBUTE) is None and contours not in outputs.output_nodes(mrml.scene)
    assert "(your segments)" in contours.GetName()
    names = {contours.GetSegmentation().GetNthSegment(i).GetName()
             for i in range(contours.GetSegmentation().GetNumberOfSegments())}
    assert segment_name(0.6) in names
    assert second.segmentation_node is not contours and second.intact
    # Kept means the user's: the next rerun leaves it too.
    outputs.AgreementScene(mrml.scene, ct, result)
    assert contours.GetScene() is mrml.scene


def test_painting_on_a_contour_segment_counts_as_the_users_work(mrml, case_and_result):
    import slicer

    case, result = case_and_result
    ct = add_ct(mrml.scene, case, "CT")
    first = outputs.AgreementScene(mrml.scene, ct, result, contour_levels=(0.5,))
    contours = first.segmentation_node
    segment_id = contours.GetSegmentation().GetNthSegmentID(0)
    labelmap = contours.GetSegmentation().GetSegment(segment_id).GetRepresentation(
        slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    labelmap.GetPointData().GetScalars().SetValue(0, 1 - labelmap.GetPointData().GetScalars().GetValue(0))
    assert outputs.holds_user_segments(contours)
    outputs.AgreementScene(mrml.scene, ct, result, contour_levels=(0.5,))
    assert contours.GetScene() is mrml.scene


def test_an_unchanged_contour_segmentation_is_replaced(mrml, case_and_result):
    case, result = case_and_result
    ct = add_ct(mrml.scene, case, "CT")
    contours = outputs.AgreementScene(mrml.scene, ct, result).segmentation_node
    outputs.AgreementScene(mrml.scene, ct, result)
    assert contours.GetScene() is None


def test_deleting_the_ct_detaches_its_result_review(mrml, case_and_result):
    """F3's gap: without its CT the uncalibrated toggle would show a background that is gone."""
    case, result = case_and_result
    ct = add_ct(mrml.scene, case, "CT")
    agreement = outputs.AgreementScene(mrml.scene, ct, result)
    assert agreement.intact
    mrml.scene.RemoveNode(ct)
    assert not agreement.intact
