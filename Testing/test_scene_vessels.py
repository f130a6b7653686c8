"""Vessels from the Slicer scene (TwinTrackLib.vesselnodes), headless on slicer-core MRML: a segmentation
matched by segment name, a labelmap by CURVAS value or by its colour names, on the CT's grid or another."""

from __future__ import annotations

import numpy as np
import pytest

from scene_fixtures import mrml  # noqa: F401  (fixture)
from TwinTrackLib import sampledata, segmentation
from TwinTrackLib.vesselnodes import SOURCE_ATTRIBUTE, vessel_for_name, vessels_from_node
from TwinTrackLib.volumes import add_scalar_volume, add_volume
from TwinTrackLogic.errors import InputError
from TwinTrackLogic.io import Geometry, Volume
from TwinTrackLogic.phantom import generate_case
from TwinTrackLogic.vessels import VESSEL_LABELS


@pytest.fixture(scope="module")
def case():
    return generate_case(1, raters=3, seed=0, size="small")


def _segmentation(scene, ct_node, masks_by_name, geometry):
    import slicer

    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "My vessels")
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(ct_node)
    for name, mask in masks_by_name.items():
        segment = slicer.vtkSegment()
        segment.SetName(name)
        segment.AddRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName(),
                                  segmentation._oriented_labelmap(mask, geometry))
        node.GetSegmentation().AddSegment(segment)
    return node


@pytest.mark.parametrize("spelling, vessel", [
    ("SMA", "SMA"), ("superior mesenteric artery", "SMA"), ("Superior_Mesenteric_Artery", "SMA"),
    ("portal_vein", "portal vein"), ("Portal Vein", "portal vein"), ("smv", "SMV"),
    ("Coeliac trunk", "celiac trunk"), ("celiac-axis", "celiac trunk"), ("AORTA", "aorta"),
    ("pancreas", None), ("Segment_1", None), ("superior mesenteric", None)])
def test_vessel_names_match_case_insensitively_with_synonyms(spelling, vessel):
    assert vessel_for_name(spelling) == vessel


def test_a_segmentation_with_named_segments_gives_the_curvas_labels(mrml, case):
    ct = sampledata.add_ct(mrml.scene, case)
    names = {"portal vein": "Portal_Vein", "SMV": "superior mesenteric vein", "aorta": "Aorta",
             "celiac trunk": "coeliac trunk", "SMA": "sma"}
    masks = {names[vessel]: case.vessels == label for vessel, label in VESSEL_LABELS.items()}
    masks["Pancreas"] = case.pancreas > 0
    node = _segmentation(mrml.scene, ct, masks, case.geometry)
    found = vessels_from_node(node, ct)
    assert found.labels.dtype == np.uint8 and np.array_equal(found.labels, case.vessels)
    assert found.source == "Slicer node My vessels"
    assert found.matched == names
    assert len(found.notes) == 1 and "'Pancreas'" in found.notes[0] and "left out" in found.notes[0]


def test_a_segmentation_missing_vessels_says_which_and_one_naming_none_is_refused(mrml, case):
    ct = sampledata.add_ct(mrml.scene, case)
    node = _segmentation(mrml.scene, ct, {"SMA": case.vessels == 5}, case.geometry)
    found = vessels_from_node(node, ct)
    assert np.array_equal(found.labels, np.where(case.vessels == 5, 5, 0))
    assert found.notes == ["Not in 'My vessels': portal vein, SMV, aorta, celiac trunk (no read-out for them)."]
    other = _segmentation(mrml.scene, ct, {"Segment_1": case.vessels == 5, "tumour": case.vessels == 1},
                          case.geometry)
    with pytest.raises(InputError, match=r"No segment of 'My vessels' is named after a vessel \('Segment_1', "
                                         r"'tumour'\)\. Name the segments portal vein, SMV"):
        vessels_from_node(other, ct)
    twice = _segmentation(mrml.scene, ct, {"SMA": case.vessels == 5, "superior mesenteric artery": case.vessels == 2},
                          case.geometry)
    with pytest.raises(InputError, match="two segments for the SMA: 'SMA' and 'superior mesenteric artery'"):
        vessels_from_node(twice, ct)


def test_a_labelmap_with_curvas_values_on_the_ct_grid_is_taken_as_is(mrml, case):
    ct = sampledata.add_ct(mrml.scene, case)
    node = add_scalar_volume(mrml.scene, "vessels", case.vessels, case.geometry,
                             node_class="vtkMRMLLabelMapVolumeNode")
    found = vessels_from_node(node, ct)
    assert np.array_equal(found.labels, case.vessels)
    assert found.matched == {vessel: f"label {label}" for vessel, label in VESSEL_LABELS.items()}
    assert found.notes == []
    node.SetAttribute(SOURCE_ATTRIBUTE, "case vessels.nii.gz")
    assert vessels_from_node(node, ct).source == "case vessels.nii.gz"


def test_a_labelmap_with_an_unknown_value_is_refused_naming_it(mrml, case):
    ct = sampledata.add_ct(mrml.scene, case)
    labels = case.vessels.copy()
    labels[labels == 4] = 9
    node = add_scalar_volume(mrml.scene, "vessels", labels, case.geometry, node_class="vtkMRMLLabelMapVolumeNode")
    with pytest.raises(InputError, match=r"The labelmap 'vessels' should hold the CURVAS-PDACVI vessel labels .* "
                                         r"but holds the value\(s\) 9\. Name its values"):
        vessels_from_node(node, ct)


def test_a_labelmap_whose_colour_table_names_the_vessels_is_matched_by_name(mrml, case):
    ct = sampledata.add_ct(mrml.scene, case)
    # Another tool's numbering: 10 SMA, 20 portal vein, named in the colour table.
    labels = np.select([case.vessels == 5, case.vessels == 1], [10, 20], 0).astype(np.int16)
    node = add_scalar_volume(mrml.scene, "tool output", labels, case.geometry, node_class="vtkMRMLLabelMapVolumeNode")
    table = mrml.scene.AddNewNodeByClass("vtkMRMLColorTableNode", "tool colours")
    table.SetTypeToUser()
    table.SetNumberOfColors(21)
    table.SetColor(10, "superior_mesenteric_artery", 1, 0, 0, 1)
    table.SetColor(20, "Portal vein", 0, 0, 1, 1)
    node.GetDisplayNode().SetAndObserveColorNodeID(table.GetID())
    found = vessels_from_node(node, ct)
    assert np.array_equal(found.labels, np.select([case.vessels == 5, case.vessels == 1], [5, 1], 0))
    assert found.matched == {"SMA": "label 10", "portal vein": "label 20"}


def test_vessels_on_another_grid_are_resampled_onto_the_cts(mrml):
    # A CT at 1 mm and vessels at 2 mm over the same field: each coarse voxel covers 2 x 2 x 2 fine ones.
    fine = Geometry((16, 12, 8), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tuple(np.eye(3).reshape(-1)))
    coarse = Geometry((8, 6, 4), (2.0, 2.0, 2.0), (0.5, 0.5, 0.5), tuple(np.eye(3).reshape(-1)))
    rng = np.random.default_rng(3)
    coarse_labels = rng.integers(0, 6, size=coarse.shape).astype(np.uint8)
    ct = add_volume(mrml.scene, "CT", Volume(np.zeros(fine.shape, dtype=np.int16), fine))
    node = add_scalar_volume(mrml.scene, "coarse vessels", coarse_labels, coarse,
                             node_class="vtkMRMLLabelMapVolumeNode")
    found = vessels_from_node(node, ct)
    expected = coarse_labels.repeat(2, axis=0).repeat(2, axis=1).repeat(2, axis=2)
    assert found.labels.shape == fine.shape and np.array_equal(found.labels, expected)


def test_vessels_under_another_transform_than_the_ct_are_refused(mrml, case):
    ct = sampledata.add_ct(mrml.scene, case)
    node = add_scalar_volume(mrml.scene, "vessels", case.vessels, case.geometry, node_class="vtkMRMLLabelMapVolumeNode")
    transform = mrml.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "moved")
    node.SetAndObserveTransformNodeID(transform.GetID())
    with pytest.raises(InputError, match="under different transforms. Harden the transforms"):
        vessels_from_node(node, ct)
