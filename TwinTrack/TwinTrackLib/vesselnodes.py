"""The five vessels of the involvement read-out, taken from a node of the Slicer scene.

A user gives the vessels as a **segmentation node** (segments matched by name: "SMA", "Superior
mesenteric artery", "portal_vein", ... case-insensitive, with the common synonyms) or as a
**labelmap volume** (values matched by the names its colour table gives them, else read as the
CURVAS-PDACVI labels: 1 portal vein, 2 SMV, 3 aorta, 4 celiac trunk, 5 SMA). Either is resampled
(nearest neighbour) onto the CT's voxel grid and returned as one uint8 CURVAS label map, the
form ``run_case(vessels=...)`` takes. What cannot be matched is said in words, for the panel;
a node that names no vessel at all is refused. Qt-free: tested headless on slicer-core MRML.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
import slicer
from vtk.util import numpy_support

from TwinTrackLogic import InputError
from TwinTrackLogic.vessels import LABEL_CONVENTION, VESSEL_LABELS, VESSEL_NAMES, check_vessel_labels

from .volumes import geometry_from_node, ijk_to_ras, node_ijk_to_ras, vtk_matrix

SOURCE_ATTRIBUTE = "TwinTrack.VesselsSource"  # a node's own provenance words (e.g. "case vessels.nii.gz")
VESSEL_NAMES_HELP = ", ".join(VESSEL_LABELS)

# Spellings radiologists and tools use, after _normalised(); the canonical names match too.
SYNONYMS: Dict[str, str] = {
    "portal vein": "portal vein", "pv": "portal vein", "vena portae": "portal vein",
    "hepatic portal vein": "portal vein", "main portal vein": "portal vein",
    "smv": "SMV", "superior mesenteric vein": "SMV", "vena mesenterica superior": "SMV",
    "aorta": "aorta", "abdominal aorta": "aorta", "ao": "aorta",
    "celiac trunk": "celiac trunk", "coeliac trunk": "celiac trunk", "celiac artery": "celiac trunk",
    "coeliac artery": "celiac trunk", "celiac axis": "celiac trunk", "coeliac axis": "celiac trunk",
    "truncus coeliacus": "celiac trunk", "truncus celiacus": "celiac trunk",
    "sma": "SMA", "superior mesenteric artery": "SMA", "arteria mesenterica superior": "SMA",
}


def _normalised(name: str) -> str:
    return re.sub(r"[\s_\-.]+", " ", name).strip().lower()


def vessel_for_name(name: str) -> Optional[str]:
    """The CURVAS vessel a segment or colour name means ("Superior_Mesenteric_Artery" -> "SMA"); None if none."""
    return SYNONYMS.get(_normalised(name))


@dataclass
class SceneVessels:
    """A vessel label map taken from a node: uint8 CURVAS labels on the CT's grid (z, y, x)."""

    labels: np.ndarray
    source: str  # the provenance's words: "Slicer node <name>"
    matched: Dict[str, str] = field(default_factory=dict)  # vessel -> the segment or label it came from
    notes: List[str] = field(default_factory=list)  # what could not be matched, for the panel


def vessels_from_node(node, ct_node) -> SceneVessels:
    """The vessels ``node`` (a segmentation or labelmap node) holds, on ``ct_node``'s voxel grid.

    InputError, with what to do, for a node that names no vessel, names one twice, holds values that
    are neither vessel labels nor vessel names, or sits under another transform than the CT.
    """
    name = node.GetName()
    if node.GetParentTransformNode() is not ct_node.GetParentTransformNode():
        raise InputError(f"The vessels '{name}' and the CT '{ct_node.GetName()}' are under different transforms. "
                         "Harden the transforms (Data module, right-click, Harden transform) and try again.")
    source = node.GetAttribute(SOURCE_ATTRIBUTE) or f"Slicer node {name}"
    if node.IsA("vtkMRMLSegmentationNode"):
        found = _from_segmentation(node, ct_node)
    elif node.IsA("vtkMRMLScalarVolumeNode"):
        found = _from_labelmap(node, ct_node)
    else:
        raise InputError(f"'{name}' is neither a segmentation nor a labelmap volume; give the vessels as one of those.")
    found.source = source
    absent = [vessel for vessel in VESSEL_LABELS if vessel not in found.matched]
    if absent:
        found.notes.append(f"Not in '{name}': {', '.join(absent)} (no read-out for them).")
    empty = [vessel for vessel in found.matched if not np.any(found.labels == VESSEL_LABELS[vessel])]
    if empty:
        found.notes.append(f"Outside the CT's field of view or empty in '{name}': {', '.join(empty)}.")
    return found


def _from_segmentation(node, ct_node) -> SceneVessels:
    segmentation = node.GetSegmentation()
    matched: Dict[str, str] = {}
    unmatched: List[str] = []
    segment_of: Dict[str, str] = {}
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        segment_name = segmentation.GetSegment(segment_id).GetName()
        vessel = vessel_for_name(segment_name)
        if vessel is None:
            unmatched.append(segment_name)
        elif vessel in matched:
            raise InputError(f"The segmentation '{node.GetName()}' has two segments for the {vessel}: "
                             f"'{matched[vessel]}' and '{segment_name}'. Rename or remove one and try again.")
        else:
            matched[vessel], segment_of[vessel] = segment_name, segment_id
    if not matched:
        raise InputError(f"No segment of '{node.GetName()}' is named after a vessel "
                         f"({', '.join(repr(n) for n in unmatched[:8]) or 'it has no segments'}). Name the segments "
                         f"{VESSEL_NAMES_HELP} (or e.g. 'superior mesenteric artery'), or give a labelmap with the "
                         f"CURVAS labels ({LABEL_CONVENTION}).")
    if not node.GetSegmentation().ContainsRepresentation(
            slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()):
        if not node.CreateBinaryLabelmapRepresentation():
            raise InputError(f"The segmentation '{node.GetName()}' could not be turned into voxels on the CT's "
                             "grid. Convert it to a binary labelmap (Segmentations module) and try again.")
    labels = np.zeros(geometry_from_node(ct_node).shape, dtype=np.uint8)
    reference = _reference_image(ct_node)
    for vessel, segment_id in segment_of.items():
        image = slicer.vtkOrientedImageData()
        slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(node, segment_id, image, False)
        # A vessel voxel claimed by two segments keeps the first (label order is the CURVAS order).
        labels[(_on_reference(image, reference) > 0) & (labels == 0)] = VESSEL_LABELS[vessel]
    listed = ", ".join(f"'{segment_name}'" for segment_name in unmatched)
    notes = [f"Segments of '{node.GetName()}' that name no vessel, left out: {listed}. Rename a "
             f"segment to one of {VESSEL_NAMES_HELP} to include it."] if unmatched else []
    return SceneVessels(labels, "", matched, notes)


def _from_labelmap(node, ct_node) -> SceneVessels:
    name = node.GetName()
    values = _on_reference(_oriented_image(node), _reference_image(ct_node))
    present = [int(value) for value in np.unique(values) if value != 0]
    by_name = _colour_names(node, present)
    if by_name is not None:
        relabelled = np.zeros(values.shape, dtype=np.uint8)
        for value, vessel in by_name.items():
            relabelled[values == value] = VESSEL_LABELS[vessel]
        matched = {vessel: f"label {value}" for value, vessel in by_name.items()}
        return SceneVessels(relabelled, "", matched)
    labels = check_vessel_labels(values, f"The labelmap '{name}'",
                                 "Name its values after the vessels in its colour table, or relabel it, and try again.")
    return SceneVessels(labels, "", {VESSEL_NAMES[value]: f"label {value}" for value in present})


def _colour_names(node, present: List[int]) -> Optional[Dict[int, str]]:
    """{value: vessel} when the labelmap's colour table names every present value after a distinct vessel."""
    display = node.GetDisplayNode()
    colours = display.GetColorNode() if display is not None else None
    if colours is None or not present:
        return None
    found = {value: vessel_for_name(colours.GetColorName(value) or "") for value in present}
    vessels = [vessel for vessel in found.values() if vessel is not None]
    if len(vessels) != len(present) or len(set(vessels)) != len(vessels):
        return None
    return {value: vessel for value, vessel in found.items() if vessel is not None}


def _reference_image(ct_node):
    """An empty oriented image with the CT's voxel grid (in the CT node's own frame)."""
    reference = slicer.vtkOrientedImageData()
    reference.SetDimensions(*ct_node.GetImageData().GetDimensions())
    reference.SetImageToWorldMatrix(vtk_matrix(ijk_to_ras(geometry_from_node(ct_node))))
    return reference


def _oriented_image(volume_node):
    image = slicer.vtkOrientedImageData()
    image.ShallowCopy(volume_node.GetImageData())
    image.SetOrigin(0.0, 0.0, 0.0)
    image.SetSpacing(1.0, 1.0, 1.0)
    image.SetImageToWorldMatrix(vtk_matrix(node_ijk_to_ras(volume_node)))
    return image


def _on_reference(image, reference) -> np.ndarray:
    """``image`` resampled (nearest neighbour) onto ``reference``'s grid, as a (z, y, x) array."""
    resampled = slicer.vtkOrientedImageData()
    if not slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
            image, reference, resampled, False):
        raise InputError("The vessels could not be resampled onto the CT's grid.")
    shape = tuple(reversed(reference.GetDimensions()))
    scalars = resampled.GetPointData().GetScalars()
    if scalars is None or resampled.GetDimensions() != reference.GetDimensions():
        return np.zeros(shape, dtype=np.uint8)
    return numpy_support.vtk_to_numpy(scalars).reshape(shape)
