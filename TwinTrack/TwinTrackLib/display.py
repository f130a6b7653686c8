"""How an agreement map looks in the slice views.

The probability volume (values in [0, 1]) is the foreground layer over the
CT. Its colour table is transparent below the agreement level and a
perceptually uniform map above it; the display threshold follows the level
too, voxel-exactly (the table only has 256 entries). In range mode only the
ambiguous band ``low <= p < high`` is shown. Moving a slider changes display
properties only: nothing is recomputed.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from TwinTrackLogic.review.colormaps import DEFAULT_COLOR_MAP, map_colors

TABLE_SIZE = 256
LEGEND_TITLE = "Expected annotator agreement"
# The upper threshold when no range is set: above any probability.
ABOVE_ALL = 1.0 + 1e-3


def agreement_rgba(color_map: str = DEFAULT_COLOR_MAP, level: float = 0.0,
                   high: Optional[float] = None) -> np.ndarray:
    """The table's (256, 4) RGBA in [0, 1]: entry i colours p in [i / 256, (i + 1) / 256).

    An entry is opaque when part of its interval is at or above ``level`` (and,
    in range mode, below ``high``), as VTK's lookup maps p to entries; the
    display threshold then cuts exactly at the level. Entry 0 (p < 0.4 %, the
    background outside the tumour region) is always transparent.
    """
    start = np.arange(TABLE_SIZE) / TABLE_SIZE
    stop = start + 1.0 / TABLE_SIZE
    visible = (np.arange(TABLE_SIZE) > 0) & (stop > level)
    if high is not None:
        visible &= start < high
    return np.column_stack([map_colors(color_map, TABLE_SIZE), visible.astype(float)])


def update_agreement_table(table, color_map: str = DEFAULT_COLOR_MAP, level: float = 0.0,
                           high: Optional[float] = None) -> None:
    """Recolour ``table`` (vtkMRMLColorTableNode) for a level or a band.

    The whole lookup table is replaced in one call and announced with one
    Modified event: setting 256 entries one by one makes every view and
    legend that uses the table react 256 times per slider step.
    """
    rgba = np.round(agreement_rgba(color_map, level, high) * 255).astype(np.uint8)
    with slicer.util.NodeModify(table):
        lookup = table.GetLookupTable()
        lookup.SetTable(numpy_support.numpy_to_vtk(rgba, deep=True, array_type=vtk.VTK_UNSIGNED_CHAR))
        lookup.Modified()
        table.SetAttribute("TwinTrack.ColorMap", color_map)
        table.Modified()


def add_agreement_table(scene, name: str = "TwinTrack agreement",
                        color_map: str = DEFAULT_COLOR_MAP, level: float = 0.0):
    """A new user-defined colour table for agreement maps."""
    table = scene.AddNewNodeByClass("vtkMRMLColorTableNode", name)
    table.SetTypeToUser()
    table.HideFromEditorsOff()
    table.SetNumberOfColors(TABLE_SIZE)
    for index in range(TABLE_SIZE):  # names once; colours are replaced wholesale afterwards
        table.SetColor(index, f"{index / TABLE_SIZE * 100:.1f} %", 0.0, 0.0, 0.0, 0.0)
    update_agreement_table(table, color_map, level)
    return table


def style_probability_display(volume_node, table) -> None:
    """Map [0, 1] onto the table, linearly, no interpolation across the level."""
    display = volume_node.GetDisplayNode()
    display.SetAndObserveColorNodeID(table.GetID())
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, 1.0)
    display.SetInterpolate(False)
    display.AutoThresholdOff()
    display.ApplyThresholdOn()
    display.SetThreshold(0.0, ABOVE_ALL)


def set_agreement_threshold(volume_node, level: float, high: Optional[float] = None) -> None:
    """Show voxels with p >= level (or level <= p < high in range mode), voxel-exactly."""
    display = volume_node.GetDisplayNode()
    upper = ABOVE_ALL if high is None else max(float(high) - 1e-6, float(level))
    display.SetThreshold(float(level), upper)


# Where a front end wants the legend: (x, y) of its anchor in the view, normalised.
# Horizontal either way, so the long title fits in any view width. "bottom" suits
# Slicer's views; "top" keeps it clear of controls drawn along a view's bottom edge
# (trame-slicer's slice-offset slider).
LEGEND_PLACEMENTS = {"bottom": (0.5, 0.02), "top": (0.5, 0.98)}


def register_legend_class(scene) -> None:
    """Make ``scene`` able to create colour-legend nodes.

    Slicer's colour logic (vtkSlicerColorLogic) registers the class; scenes
    wired with the plain vtkMRMLColorLogic (trame-slicer's SlicerApp) lack it,
    and every legend would silently be None.
    """
    if not scene.IsNodeClassRegistered("vtkMRMLColorLegendDisplayNode"):
        scene.RegisterNodeClass(slicer.vtkMRMLColorLegendDisplayNode())


def place_color_legend(legend, placement: str = "bottom") -> None:
    if placement not in LEGEND_PLACEMENTS:
        raise ValueError(f"legend placement {placement!r}: choose one of {', '.join(LEGEND_PLACEMENTS)}")
    legend.SetOrientation(legend.Horizontal)
    legend.SetPosition(*LEGEND_PLACEMENTS[placement])
    legend.SetSize(0.08, 0.6)


def add_color_legend(volume_node):
    """The colour legend of the agreement map, titled for radiologists."""
    register_legend_class(volume_node.GetScene())
    legend = slicer.vtkSlicerColorLogic.AddDefaultColorLegendDisplayNode(volume_node)
    legend.SetTitleText(LEGEND_TITLE)
    legend.SetLabelFormat("%.1f")
    legend.SetNumberOfLabels(6)
    place_color_legend(legend)
    legend.SetVisibility(True)
    return legend


def slice_composite_nodes(scene) -> list:
    """The layer settings of every slice view in ``scene``."""
    composites = scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
    return [composites.GetItemAsObject(index) for index in range(composites.GetNumberOfItems())]


def show_as_foreground(scene, background_node, foreground_node, opacity: float) -> None:
    """CT behind, agreement map in front, in every slice view of the scene."""
    for composite in slice_composite_nodes(scene):
        with slicer.util.NodeModify(composite):
            if background_node is not None:
                composite.SetBackgroundVolumeID(background_node.GetID())
            composite.SetForegroundVolumeID(foreground_node.GetID() if foreground_node else None)
            composite.SetForegroundOpacity(float(opacity))


def refresh_legends(*volume_nodes) -> None:
    """Make legend managers re-check which volumes the views show.

    They react to layer changes made through the view controllers; a layer
    set from code is only picked up when the legend node itself changes.
    """
    for node in volume_nodes:
        for index in range(node.GetNumberOfDisplayNodes()):
            display_node = node.GetNthDisplayNode(index)
            if display_node.IsA("vtkMRMLColorLegendDisplayNode"):
                display_node.Modified()


def set_foreground_opacity(scene, opacity: float) -> None:
    for composite in slice_composite_nodes(scene):
        composite.SetForegroundOpacity(float(opacity))


def centre_slice_views(scene, ras) -> None:
    """Move every slice view of ``scene`` so that it passes through ``ras`` (mm), centred on it."""
    slice_nodes = scene.GetNodesByClass("vtkMRMLSliceNode")
    for index in range(slice_nodes.GetNumberOfItems()):
        slice_nodes.GetItemAsObject(index).JumpSliceByCentering(*[float(v) for v in ras])
