"""Segments at agreement levels: the map's iso-contours as editable segments.

Each level gets its own segment holding its own labelmap, so nested levels
(20 % contains 50 % contains 80 %) overlap freely instead of overwriting each
other. Slice views draw them as outlines (contours) over the colour map.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from TwinTrackLogic import Geometry
from TwinTrackLogic.review.colormaps import DEFAULT_COLOR_MAP, map_colors
from TwinTrackLogic.review.levels import DEFAULT_CONTOUR_LEVELS, parse_percents

from .volumes import ijk_to_ras, vtk_matrix

DEFAULT_LEVELS = DEFAULT_CONTOUR_LEVELS


def parse_levels(text: str) -> tuple:
    """'20, 50, 80' (percent, as the panel shows them) -> (0.2, 0.5, 0.8); blank: no contours;
    anything else is refused."""
    return parse_percents(text, "Contour levels") if text.strip(" ,;") else ()


def segment_name(level: float) -> str:
    return f"Agreement >= {level * 100:.0f} %"


def _oriented_labelmap(mask: np.ndarray, geometry: Geometry):
    """A vtkOrientedImageData (uint8, 0/1) of a (z, y, x) mask on ``geometry``."""
    image = slicer.vtkOrientedImageData()
    image.SetDimensions(*geometry.size)
    flat = np.ascontiguousarray(mask, dtype=np.uint8).reshape(-1)
    scalars = numpy_support.numpy_to_vtk(flat, deep=True, array_type=vtk.VTK_UNSIGNED_CHAR)
    image.GetPointData().SetScalars(scalars)
    image.SetImageToWorldMatrix(vtk_matrix(ijk_to_ras(geometry)))
    return image


def add_level_segment(segmentation_node, probability: np.ndarray, geometry: Geometry,
                      level: float, color_map: str = DEFAULT_COLOR_MAP) -> str:
    """Add the segment p >= level; returns its segment ID."""
    mask = probability >= float(level)
    segment = slicer.vtkSegment()
    segment.SetName(segment_name(level))
    color_index = int(round(float(level) * 255))
    segment.SetColor(*map_colors(color_map, 256)[min(max(color_index, 0), 255)])
    segment.AddRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName(),
                              _oriented_labelmap(mask, geometry))
    segmentation = segmentation_node.GetSegmentation()
    segment_id = segmentation.GenerateUniqueSegmentID(f"agreement_{level * 100:.0f}")
    segmentation.AddSegment(segment, segment_id)
    return segment_id


def _outlined_segmentation(scene, name: str, reference_node, thickness: int):
    """A new segmentation node on ``reference_node``'s grid (and transform), drawn as outlines
    only, so the colour map underneath stays readable."""
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    if reference_node is not None:
        node.SetReferenceImageGeometryParameterFromVolumeNode(reference_node)
        if reference_node.GetTransformNodeID():
            node.SetAndObserveTransformNodeID(reference_node.GetTransformNodeID())
    display = node.GetDisplayNode()
    display.SetVisibility2DFill(False)
    display.SetVisibility2DOutline(True)
    display.SetSliceIntersectionThickness(thickness)
    return node


def add_agreement_segmentation(scene, name: str, reference_node, probability: np.ndarray,
                               geometry: Geometry, levels: Iterable[float] = DEFAULT_LEVELS,
                               color_map: str = DEFAULT_COLOR_MAP):
    """A segmentation node with one contour segment per agreement level."""
    node = _outlined_segmentation(scene, name, reference_node, thickness=2)
    for level in levels:
        add_level_segment(node, probability, geometry, level, color_map)
    return node


def segment_voxel_counts_by_id(segmentation_node) -> dict:
    """{segment ID: voxels inside}; a segment without a labelmap counts -1."""
    counts = {}
    segmentation = segmentation_node.GetSegmentation()
    name = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        image = segmentation.GetSegment(segment_id).GetRepresentation(name)
        scalars = image.GetPointData().GetScalars() if image is not None else None
        counts[segment_id] = -1 if scalars is None else int(np.count_nonzero(numpy_support.vtk_to_numpy(scalars)))
    return counts


def segment_voxel_counts(segmentation_node) -> dict:
    """{segment name: voxels inside} (for checks and read-outs)."""
    segmentation = segmentation_node.GetSegmentation()
    return {segmentation.GetSegment(segment_id).GetName(): voxels
            for segment_id, voxels in segment_voxel_counts_by_id(segmentation_node).items()}


def add_rater_segmentation(scene, name: str, reference_node, masks, geometry: Geometry):
    """The annotators' own masks, one outlined segment each ('Annotator 1', ...), for comparison."""
    node = _outlined_segmentation(scene, name, reference_node, thickness=1)
    labelmap = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    colors = map_colors("Purple-orange", max(len(masks), 2))
    for number, mask in enumerate(masks, 1):
        segment = slicer.vtkSegment()
        segment.SetName(f"Annotator {number}")
        segment.SetColor(*colors[number - 1])
        segment.AddRepresentation(labelmap, _oriented_labelmap(np.asarray(mask) > 0, geometry))
        node.GetSegmentation().AddSegment(segment, f"annotator_{number}")
    return node


# Arteries warm, veins cool: the convention of anatomy atlases, so a glance tells them apart.
VESSEL_COLOURS = {"portal vein": (0.15, 0.45, 0.95), "SMV": (0.35, 0.75, 1.0), "aorta": (0.85, 0.1, 0.1),
                  "celiac trunk": (1.0, 0.55, 0.1), "SMA": (1.0, 0.25, 0.6)}


def add_vessel_segmentation(scene, name: str, reference_node, vessels: np.ndarray, geometry: Geometry):
    """The vessels of a CURVAS label map (uint8, (z, y, x) on ``geometry``), one outlined segment each,
    named as the read-out names them ("SMA", ...); vessels the map does not hold get no segment."""
    from TwinTrackLogic.vessels import VESSEL_LABELS

    node = _outlined_segmentation(scene, name, reference_node, thickness=2)
    labelmap = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    for vessel, label in VESSEL_LABELS.items():
        mask = vessels == label
        if not mask.any():
            continue
        segment = slicer.vtkSegment()
        segment.SetName(vessel)
        segment.SetColor(*VESSEL_COLOURS[vessel])
        segment.AddRepresentation(labelmap, _oriented_labelmap(mask, geometry))
        node.GetSegmentation().AddSegment(segment, f"vessel_{label}")
    return node
