"""The scene nodes of one result, and the review controls that act on them.

Every node the module makes is tagged with :data:`OUTPUT_ATTRIBUTE` and refers to the CT it
was computed on (node reference :data:`INPUT_REFERENCE`, which survives the ID changes of a scene
import). A rerun on a CT replaces that CT's previous result only, including display, legend and
storage nodes; another CT's result, a result reloaded from a scene without that reference, and
the user's own nodes stay. The contour segmentation is the one output the user adds to (*Create
segment*, Segment Editor): if its segments are no longer the ones the result made, the rerun
keeps it as the user's node (untagged, renamed) instead of deleting it. Nodes are built only
from a finished :class:`~.pipeline.CaseResult`, on the main thread.
"""

from __future__ import annotations

from typing import Iterable, Optional, Tuple

from TwinTrackLogic import CaseResult, InputError
from TwinTrackLogic.review import readout
from TwinTrackLogic.review.colormaps import DEFAULT_COLOR_MAP

from . import display, plots, segmentation
from .volumes import add_scalar_volume

OUTPUT_ATTRIBUTE = "TwinTrack.Output"
INPUT_REFERENCE = "TwinTrack.InputCT"  # node reference: the CT a result was computed on
MADE_SEGMENTS_ATTRIBUTE = "TwinTrack.MadeSegments"  # "id:voxels ..." of the contours as the result made them


def _with_attached(node) -> list:
    """``node`` and the display and storage nodes that belong to it."""
    attached = [node]
    if node.IsA("vtkMRMLDisplayableNode"):
        attached += [node.GetNthDisplayNode(index) for index in range(node.GetNumberOfDisplayNodes())]
    if node.IsA("vtkMRMLStorableNode") and node.GetStorageNode() is not None:
        attached.append(node.GetStorageNode())
    return [n for n in attached if n is not None]


def _tag(node, ct_node=None) -> None:
    for each in _with_attached(node):
        each.SetAttribute(OUTPUT_ATTRIBUTE, "1")
        if ct_node is not None:
            each.SetNodeReferenceID(INPUT_REFERENCE, ct_node.GetID())


def _untag(node) -> None:
    for each in _with_attached(node):
        each.RemoveAttribute(OUTPUT_ATTRIBUTE)
        each.RemoveNodeReferenceIDs(INPUT_REFERENCE)


def _made_segments(segmentation_node) -> str:
    counts = segmentation.segment_voxel_counts_by_id(segmentation_node)
    return " ".join(f"{segment_id}:{voxels}" for segment_id, voxels in sorted(counts.items()))


def holds_user_segments(segmentation_node) -> bool:
    """The contour segmentation no longer holds exactly the segments the result made: the user
    added one (*Create segment*), removed one or painted on one."""
    made = segmentation_node.GetAttribute(MADE_SEGMENTS_ATTRIBUTE)
    return made is None or _made_segments(segmentation_node) != made


def _all_nodes(scene) -> list:
    nodes = scene.GetNodes()
    return [nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems())]


def _node_ids(scene) -> set:
    return {node.GetID() for node in _all_nodes(scene)}


def output_nodes(scene, ct_node=None) -> list:
    """Every node in ``scene`` that TwinTrack made; with ``ct_node``, those of that CT's result."""
    made = [node for node in _all_nodes(scene) if node.GetAttribute(OUTPUT_ATTRIBUTE) == "1"]
    if ct_node is None:
        return made
    return [node for node in made if node.GetNodeReference(INPUT_REFERENCE) is ct_node]


def remove_outputs(scene, ct_node=None) -> int:
    """Remove everything TwinTrack made (with ``ct_node``: that CT's result only); returns how
    many nodes went. A contour segmentation holding the user's segments is kept, untagged."""
    doomed = output_nodes(scene, ct_node)
    for node in [n for n in doomed if n.IsA("vtkMRMLSegmentationNode") and holds_user_segments(n)]:
        _untag(node)
        node.SetName(scene.GenerateUniqueName(f"{node.GetName()} (your segments)"))
        kept = {each.GetID() for each in _with_attached(node)}
        doomed = [n for n in doomed if n.GetID() not in kept]
    # Views must stop showing a volume before it goes.
    doomed_ids = {node.GetID() for node in doomed}
    for composite in display.slice_composite_nodes(scene):
        if composite.GetForegroundVolumeID() in doomed_ids:
            composite.SetForegroundVolumeID(None)
    for node in doomed:
        if node.GetScene() is scene:
            scene.RemoveNode(node)
    return len(doomed)


class AgreementScene:
    """Nodes of one result: calibrated and raw maps, colour table, legend,
    contour segments, volume chart; plus the review controls.

    Levels are fractions in [0, 1] (0.6 = 60 % of annotators).
    """

    def __init__(self, scene, ct_node, result: CaseResult, name: str = "TwinTrack",
                 contour_levels: Iterable[float] = segmentation.DEFAULT_LEVELS,
                 color_map: str = DEFAULT_COLOR_MAP, level: float = 0.5, opacity: float = 0.7):
        if result.raters < 1:
            raise InputError("The calibrator does not say how many annotators it was fitted to; "
                             "refit it with this version of TwinTrack.")
        self.scene = scene
        self.ct_node = ct_node
        self.result = result
        self.name = name
        self.color_map = color_map
        self.level = float(level)
        self.range: Optional[Tuple[float, float]] = None
        self.opacity = float(opacity)
        self.uncalibrated = False
        self.contour_levels = tuple(float(v) for v in contour_levels)  # also the levels Export DICOM writes
        remove_outputs(scene, ct_node)  # this CT's previous result only
        before = _node_ids(scene)
        try:
            self._build(list(self.contour_levels))
        except BaseException:
            # Whatever got made before the failure goes, tagged or not.
            for node in [n for n in _all_nodes(scene) if n.GetID() not in before]:
                if node.GetScene() is scene:
                    scene.RemoveNode(node)
            raise

    # --- construction -------------------------------------------------------

    def _add_map(self, name, array, table, legend_title):
        node = add_scalar_volume(self.scene, name, array, self.result.geometry, like=self.ct_node)
        display.style_probability_display(node, table)
        legend = display.add_color_legend(node)
        legend.SetTitleText(legend_title)
        _tag(node, self.ct_node)
        return node

    def _build(self, contour_levels) -> None:
        self.table = display.add_agreement_table(self.scene, f"{self.name} agreement colours",
                                                 self.color_map, self.level)
        _tag(self.table, self.ct_node)
        self.calibrated_node = self._add_map(f"{self.name} agreement", self.result.calibrated,
                                             self.table, display.LEGEND_TITLE)
        self.raw_node = self._add_map(f"{self.name} uncalibrated probability", self.result.raw,
                                      self.table, "Uncalibrated ensemble probability")
        self.segmentation_node = segmentation.add_agreement_segmentation(
            self.scene, f"{self.name} agreement contours", self.ct_node, self.result.calibrated,
            self.result.geometry, contour_levels, self.color_map)
        _tag(self.segmentation_node, self.ct_node)
        self.segmentation_node.SetAttribute(MADE_SEGMENTS_ATTRIBUTE, _made_segments(self.segmentation_node))
        self.vessels_node = None  # the vessels the involvement read-out used, outlined; not needed to review
        if self.result.vessels is not None:
            self.vessels_node = segmentation.add_vessel_segmentation(
                self.scene, f"{self.name} vessels", self.ct_node, self.result.vessels, self.result.geometry)
            _tag(self.vessels_node, self.ct_node)
        self.chart, self.chart_series, self.chart_table = plots.add_volume_curve_chart(
            self.scene, f"{self.name} volume by agreement", self.result.calibrated_curve)
        for node in (self.chart, self.chart_series, self.chart_table):
            _tag(node, self.ct_node)
        self._apply_threshold()
        self._show()

    def _show(self) -> None:
        display.show_as_foreground(self.scene, self.ct_node, self.shown_node, self.opacity)
        display.refresh_legends(self.calibrated_node, self.raw_node)

    @property
    def nodes(self) -> list:
        """The data nodes of this result (display nodes hang off them)."""
        return [self.table, self.calibrated_node, self.raw_node, self.segmentation_node, self.chart,
                self.chart_series, self.chart_table]

    @property
    def intact(self) -> bool:
        """False once any node of the result left the scene (the user deleted it): a node outside
        the scene has lost its display nodes, so the review controls must not touch it."""
        # The CT too: the uncalibrated toggle and centring show it as the background (F3's gap).
        return all(node.GetScene() is self.scene for node in [*self.nodes, self.ct_node])

    # --- review controls (display properties and lookups only) -------------
    # The widget calls every setter on each parameter change; a value that did
    # not change touches nothing, so a slider step recolours the table once.

    @property
    def shown_node(self):
        return self.raw_node if self.uncalibrated else self.calibrated_node

    @property
    def shown_curve(self):
        return self.result.raw_curve if self.uncalibrated else self.result.calibrated_curve

    def _apply_threshold(self) -> None:
        low, high = self.range if self.range else (self.level, None)
        for node in (self.calibrated_node, self.raw_node):
            display.set_agreement_threshold(node, low, high)
        display.update_agreement_table(self.table, self.color_map, low, high)

    def set_level(self, level: float) -> None:
        level = min(max(float(level), 0.0), 1.0)
        if level == self.level:
            return
        self.level = level
        if self.range is None:
            self._apply_threshold()

    def set_range(self, low: Optional[float], high: Optional[float] = None) -> None:
        """Range mode on (low <= p < high) or off (``low`` None)."""
        if low is not None and high is None:
            raise ValueError("set_range: a band needs both ends (low and high)")
        band = None if low is None or high is None else (min(low, high), max(low, high))
        if band == self.range:
            return
        self.range = band
        self._apply_threshold()

    def set_opacity(self, opacity: float) -> None:
        if float(opacity) == self.opacity:
            return
        self.opacity = float(opacity)
        display.set_foreground_opacity(self.scene, self.opacity)

    def set_color_map(self, color_map: str) -> None:
        self.color_map = color_map
        self._apply_threshold()

    def show_uncalibrated(self, uncalibrated: bool) -> None:
        self.uncalibrated = bool(uncalibrated)
        self._show()

    def add_segment_at_level(self, level: Optional[float] = None) -> str:
        """A contour segment at ``level`` (default: the current level)."""
        level = self.level if level is None else float(level)
        return segmentation.add_level_segment(self.segmentation_node, self.result.calibrated,
                                              self.result.geometry, level, self.color_map)

    def place_legends(self, placement: str) -> None:
        """Move both maps' legends ("bottom" or "top" of the views; see display.LEGEND_PLACEMENTS)."""
        for node in (self.calibrated_node, self.raw_node):
            for index in range(node.GetNumberOfDisplayNodes()):
                legend = node.GetNthDisplayNode(index)
                if legend.IsA("vtkMRMLColorLegendDisplayNode"):
                    display.place_color_legend(legend, placement)

    def show_contours_in_3d(self) -> bool:
        """Surfaces of the contour segments for 3D views (built once, from the labelmaps).

        False when the scene has no labelmap-to-surface converter (a scene without the
        Segmentations module logic, such as ``headless.make_scene``'s).
        """
        if not self.segmentation_node.CreateClosedSurfaceRepresentation():
            return False
        display_node = self.segmentation_node.GetDisplayNode()
        display_node.SetVisibility3D(True)
        display_node.SetOpacity3D(0.4)  # nested levels: the inner surfaces show through the outer ones
        return True

    def readouts(self) -> dict:
        """Texts for the level, band and expected-volume labels. In range mode the level does not
        act on the display, so it reads nothing. At 0 % every voxel qualifies: the volume would be
        the whole CT's, which no one should read as a tumour volume."""
        curve, raters = self.shown_curve, self.result.raters
        low = self.range[0] if self.range else self.level
        if low <= 0.0:
            what = "the band's lower end" if self.range else "the agreement level"
            return {"level": f"Set {what} to 1 % or more: at 0 % every voxel of the CT counts, "
                             "so there is no volume to read.", "band": "", "expected": readout.expected_text(curve)}
        if self.uncalibrated:
            texts = {"level": readout.uncalibrated_text(curve, self.level), "band": "",
                     "expected": ""}
        else:
            texts = {"level": "" if self.range else readout.level_text(curve, self.level, raters),
                     "band": readout.band_text(curve, *self.range, raters) if self.range else "",
                     "expected": readout.expected_text(curve)}
        return texts

    def remove(self) -> None:
        remove_outputs(self.scene, self.ct_node)
