"""The review page: trame-slicer views and Vuetify controls over the module's presenter.

Everything the page decides goes through :class:`TwinTrackLib.presenter.Presenter`, the
same object the Slicer widget drives: the controls fill a :class:`Parameters` (percent
levels, as the module's sliders), the presenter calls the scene layer's setters and the
worker, and the page copies the :class:`ViewState` it returns into trame's state. The page
adds only what a browser needs: which case (by name, from the list fixed at start), the
volume curve as SVG, rater masks, the mask download, and the access token. A case's vessels
(``vessels.nii.gz``; the demo phantom's own) go in as a labelmap node, so the *Involvement* table
and read-out line are the panel's (:mod:`TwinTrackLib.involvement_panel`).

All scene changes run on the event loop's thread; the worker is polled from an asyncio task
(the widget uses a QTimer), so the page never blocks.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from trame.app import get_server
from trame.app.asynchronous import create_task
from trame.widgets import html
from trame_slicer.core import LayoutManager, SlicerApp
from trame_slicer.rca_view import register_rca_factories
from trame_vuetify.ui.vuetify3 import SinglePageLayout
from trame_vuetify.widgets import vuetify3 as v3

import TwinTrackWeb  # noqa: F401  (EGL before VTK)
from TwinTrackLib import display, involvement_panel, outputs, presenter, sampledata, segmentation
from TwinTrackLib.vesselnodes import SOURCE_ATTRIBUTE
from TwinTrackLib.volumes import add_scalar_volume
from TwinTrackLogic import InputError, TwinTrackError, read_image, write_image
from TwinTrackLogic.review.colormaps import COLOR_MAPS
from TwinTrackLogic.vessels import VESSEL_LABELS, read_vessels
from TwinTrackLogic.worker import process as worker

from . import access
from .curve import curve_svg

LAYOUT = "Quad View"  # axial, coronal, sagittal and 3D
POLL_S = 0.1
# Anti-aliasing samples per view; trame-slicer's own default (8) is for comparison
# (the reference run of benchmarks/bench_web_review.py), not for use.
MULTISAMPLES = int(os.environ.get("TWINTRACK_REVIEW_MULTISAMPLES", "0"))
DEMO_CASE = "Demo phantom"


class ReviewApp:
    """One review: one scene, one presenter, shared by every browser that holds the token."""

    def __init__(self, options, server=None):
        self.options = options
        self.server = get_server(server, client_type="vue3")
        self.state, self.ctrl = self.server.state, self.server.controller
        self.slicer = SlicerApp()
        self.scene = self.slicer.scene
        display.register_legend_class(self.scene)
        register_rca_factories(self.slicer.view_manager, self.server, target_fps=30, blur_fps=30)
        self.layout = LayoutManager(self.scene, self.slicer.view_manager, self.server)
        self.layout.register_layout_dict({LAYOUT: LayoutManager.default_grid_configuration()[LAYOUT]})
        self.layout.set_layout(LAYOUT)
        for view in self.slicer.view_manager.get_views():
            # trame-slicer asks for 8x MSAA: 2-3x the frame time on a software renderer.
            view.render_window().SetMultiSamples(MULTISAMPLES)

        self.cases = {case.name: case for case in options.cases}
        self.case_names = list(self.cases) or [DEMO_CASE]
        self.params = presenter.Parameters(agreementLevel=options.level * 100.0)
        start = functools.partial(worker.start_inference, bundle_dir=options.bundle)
        self.presenter = presenter.Presenter(self.scene, start_inference=start, on_result=self._on_result)
        self.ct_node = None
        self.current_case = None
        self.raters = None  # (masks, geometry) of the open case, when it has annotations
        self.rater_node = None
        self.vessels_node = None  # the open case's vessels (labelmap), for the involvement read-out
        self._polling = False
        self._initial_state()
        self._build_ui()
        if options.token:
            self.ctrl.on_server_bind.add(lambda wslink_server: access.protect(wslink_server, options.token))
        self.ctrl.on_server_ready.add(self._announce)
        self.ctrl.trigger("export_mask")(self.export_mask)
        self.open_case(self.state.case_name)

    # --- state ----------------------------------------------------------------------------

    def _initial_state(self) -> None:
        s, p = self.state, self.params
        s.trame__title = "TwinTrack review"
        s.case_names = list(self.case_names)
        s.case_name = s.case_names[0]
        s.level, s.band_mode, s.band = p.agreementLevel, p.rangeMode, [p.rangeLow, p.rangeHigh]
        s.opacity, s.color_map, s.color_maps = p.opacity, p.colorMap, list(COLOR_MAPS)
        s.uncalibrated, s.contour_levels, s.show_raters, s.has_raters = False, p.contourLevels, False, False
        s.status, s.error, s.warnings = "", "", ""
        s.apply_text, s.apply_enabled, s.busy, s.progress = "Run ensemble", False, False, 0
        s.review_enabled, s.readout_level, s.readout_band, s.readout_expected = False, "", "", ""
        s.curve_svg, s.server_step_ms = "", 0.0
        s.involvement_columns, s.vessel_names = list(involvement_panel.COLUMNS), list(VESSEL_LABELS)
        s.involvement_vessel = p.involvementVessel
        s.involvement_enabled, s.involvement_rows, s.involvement_readout, s.involvement_note = False, [], "", ""
        for name in ("level", "band_mode", "band", "opacity", "color_map", "uncalibrated", "contour_levels",
                     "involvement_vessel"):
            s.change(name)(self._controls_changed)
        s.change("case_name")(lambda case_name, **_: self.open_case(case_name))
        s.change("show_raters")(lambda show_raters, **_: self.show_raters(show_raters))

    def _read_controls(self) -> None:
        """Copy the page's controls into the presenter's parameters; a value that is not
        of the control's kind (a client can set any state) leaves the parameter as it was."""
        s, p = self.state, self.params
        try:
            p.agreementLevel = min(max(float(s.level), 0.0), 100.0)
            low, high = sorted(float(v) for v in s.band)
            p.rangeLow, p.rangeHigh = min(max(low, 0.0), 100.0), min(max(high, 0.0), 100.0)
            p.opacity = min(max(float(s.opacity), 0.0), 1.0)
        except (TypeError, ValueError):
            pass
        p.rangeMode, p.showUncalibrated = bool(s.band_mode), bool(s.uncalibrated)
        p.colorMap = s.color_map if s.color_map in COLOR_MAPS else p.colorMap
        p.contourLevels = str(s.contour_levels)
        p.involvementVessel = s.involvement_vessel if s.involvement_vessel in VESSEL_LABELS else p.involvementVessel

    def _show(self, view) -> None:
        """Copy the presenter's ViewState into the page."""
        s = self.state
        s.status, s.warnings = view.status, view.warnings
        s.apply_text = "Cancel" if view.apply_text == "Cancel" else "Run ensemble"
        s.apply_enabled, s.busy, s.progress = view.apply_enabled, view.job_running, view.progress_percent
        s.review_enabled = view.review_enabled
        s.readout_level, s.readout_band, s.readout_expected = \
            view.level_readout, view.band_readout, view.expected_readout
        s.involvement_enabled, s.involvement_rows = view.involvement_enabled, [list(c) for c in view.involvement_cells]
        s.involvement_readout, s.involvement_note = view.involvement_readout, view.involvement_note
        error = self.presenter.take_error()
        if error is not None:
            s.error = error[0]
        s.curve_svg = self._curve()

    def _curve(self) -> str:
        agreement = self.presenter.agreement
        if agreement is None:
            return ""
        # From 1 %: at 0 % every voxel of the image counts, which would flatten the curve.
        levels, volumes = agreement.shown_curve.curve(np.linspace(0.01, 1.0, 100))
        band = agreement.range or (None, None)
        return curve_svg(levels, volumes, agreement.level, *band)

    def _controls_changed(self, **_) -> None:
        started = time.perf_counter()
        with self.state:
            self._read_controls()
            self._show(self.presenter.parameters_changed(self.params))
            self.state.server_step_ms = (time.perf_counter() - started) * 1000.0

    # --- cases ----------------------------------------------------------------------------

    def open_case(self, name) -> None:
        """Show a case from the list fixed at start; any other name is refused."""
        if name not in self.case_names:  # the server's list: a client can rewrite the state's copy
            with self.state:
                self.state.error = f"No case named {str(name)[:80]!r} in the folder this review was started on."
                self.state.case_name = self.current_case
            return
        if name == self.current_case:
            return  # the refusal above put the name back
        self.presenter.scene_closing()
        outputs.remove_outputs(self.scene)
        for node in (self.ct_node, self.rater_node, self.vessels_node):
            if node is not None and node.GetScene() is self.scene:
                self.scene.RemoveNode(node)
        self.rater_node, self.raters, self.vessels_node = None, None, None
        try:
            if name == DEMO_CASE:
                phantom = sampledata.phantom_case()
                self.ct_node = sampledata.add_ct(self.scene, phantom)
                self.raters = (phantom.annotations, phantom.geometry)
                self.vessels_node = self._add_vessels(phantom.vessels, phantom.geometry, "demo phantom vessels")
            else:
                case = self.cases[name]
                image = read_image(case.image, dtype=np.float32)
                self.ct_node = sampledata.add_ct_volume(self.scene, image, case.name)
                if case.annotations:
                    self.raters = (case.read_annotations(image.geometry), image.geometry)
                if case.vessels is not None:
                    self.vessels_node = self._add_vessels(read_vessels(case.vessels, image.geometry, case.image),
                                                          image.geometry, f"case {case.vessels.name}")
        except TwinTrackError as error:
            self.ct_node = self.current_case = self.params.inputVolume = self.params.vesselsNode = None
            with self.state:
                self.state.error = str(error)
            return
        self.current_case = name
        self.params.inputVolume, self.params.vesselsNode = self.ct_node, self.vessels_node
        display.show_as_foreground(self.scene, self.ct_node, None, self.params.opacity)
        self.slicer.display_manager.reset_views()
        with self.state:
            self.state.show_raters = False
            self.state.has_raters = self.raters is not None
            self.state.error = ""
            self._show(self.presenter.enter(self.params))

    def _add_vessels(self, labels, geometry, source: str):
        """The case's vessels as a labelmap node the presenter reads (never shown itself: the result outlines
        the vessels it used), with the provenance's words for where they came from."""
        node = add_scalar_volume(self.scene, "vessels", labels, geometry, like=self.ct_node,
                                 node_class="vtkMRMLLabelMapVolumeNode")
        node.SetAttribute(SOURCE_ATTRIBUTE, source)
        return node

    def show_raters(self, show: bool) -> None:
        if self.raters is None:
            return
        if self.rater_node is None and show:
            masks, geometry = self.raters
            self.rater_node = segmentation.add_rater_segmentation(self.scene, "Annotators", self.ct_node,
                                                                  masks, geometry)
        if self.rater_node is not None:
            self.rater_node.GetDisplayNode().SetVisibility(bool(show))

    # --- the run: the presenter starts the worker, an asyncio task polls it -----------------

    def run_or_cancel(self) -> None:
        with self.state:
            self._read_controls()
            self._show(self.presenter.apply(self.params, self.options.calibrator and str(self.options.calibrator)))
        if self.presenter.job is not None and not self._polling:
            self._polling = True
            create_task(self._poll())

    async def _poll(self) -> None:
        try:
            while True:
                await asyncio.sleep(POLL_S)
                with self.state:
                    view = self.presenter.poll(self.params)
                    self._show(view)
                if not view.job_running:
                    break
        finally:
            self._polling = False
        self._render()

    def _on_result(self, agreement) -> None:
        agreement.place_legends("top")  # the slice-offset slider runs along the bottom of each view
        agreement.show_contours_in_3d()
        for view in self.slicer.view_manager.get_threed_views():
            view.reset_camera()

    def centre(self) -> None:
        self.presenter.centre_on_tumour(self.params)

    def centre_on_vessel(self) -> None:
        with self.state:
            self._read_controls()
            self._show(self.presenter.centre_on_vessel(self.params))

    def _render(self) -> None:
        for view in self.slicer.view_manager.get_views():
            view.schedule_render()

    # --- export: the mask at the current level, as a download -----------------------------

    def export_mask(self):
        agreement = self.presenter.agreement
        if agreement is None:
            return None
        level = agreement.level
        with tempfile.TemporaryDirectory(prefix="twintrack-review-") as folder:
            path = Path(folder) / "mask.nii.gz"
            write_image(path, agreement.result.mask(level), agreement.result.geometry)
            data = path.read_bytes()
        return self.server.protocol.addAttachment(data)

    # --- the page ---------------------------------------------------------------------------

    def _announce(self, **_) -> None:
        self.options.port = self.server.port
        anywhere = self.options.host in ("0.0.0.0", "::")
        print(f"TwinTrack review is ready. Open {self.options.url('127.0.0.1' if anywhere else None)}", flush=True)
        if anywhere:
            print("Listening on every address of this machine: from elsewhere use its name instead of 127.0.0.1. "
                  "Anyone with the URL can review; the connection is not encrypted (put an HTTPS proxy in front "
                  "on a shared network).", flush=True)
        print("One review per process: everyone with the token sees and drives the same scene. "
              "Stop with Ctrl+C.", flush=True)

    def _build_ui(self) -> None:
        with SinglePageLayout(self.server, full_height=True) as layout:
            layout.title.set_text("TwinTrack review")
            layout.footer.hide()
            with layout.content:
                with html.Div(style="display: flex; height: calc(100vh - 64px);"):
                    with html.Div(id="controls", style="width: 380px; padding: 12px; overflow-y: auto;"):
                        self._controls()
                    with html.Div(id="views", style="flex: 1; position: relative;"):
                        self.layout.initialize_layout_grid(layout)

    def _controls(self) -> None:
        with html.Div(id="case-control"):
            v3.VSelect(label="Case", v_model=("case_name",), items=("case_names",), density="compact",
                       disabled=("busy",), hide_details=True, classes="mb-2")
        with html.Div(classes="d-flex align-center mb-1"):
            v3.VBtn("{{ apply_text }}", id="run-button", click=self.run_or_cancel, disabled=("!apply_enabled",),
                    color=("busy ? 'error' : 'primary'",), size="small", classes="mr-2")
            v3.VBtn("Centre on tumour", id="centre-button", click=self.centre, disabled=("!review_enabled",),
                    size="small", variant="tonal")
        v3.VProgressLinear(v_show=("busy",), model_value=("progress",), height=6, classes="mb-1", id="progress")
        html.Div("{{ status || (review_enabled ? '' : 'Press Run ensemble to compute the agreement map.') }}",
                 id="status", classes="text-body-2 mb-1")
        v3.VAlert(v_show=("error",), text=("error",), type="error", density="compact", classes="mb-2",
                  id="error", closable=True, click_close="error = ''")
        html.Div("{{ warnings }}", v_show=("warnings",), id="warnings", classes="text-caption text-warning mb-1",
                 style="white-space: pre-line;")
        html.Div("Agreement level (% of annotators)", classes="text-caption mt-2")
        with html.Div(id="level-control"):
            v3.VSlider(v_model=("level",), min=0, max=100, step=1, thumb_label=True, hide_details=True,
                       disabled=("!review_enabled || band_mode",), color="primary")
        html.Div("{{ readout_level }}", id="readout-level", classes="text-body-2 font-weight-medium")
        v3.VSwitch(v_model=("band_mode",), label="Band mode: show only the ambiguous band", id="band-mode",
                   disabled=("!review_enabled",), density="compact", hide_details=True, color="primary")
        with html.Div(id="band-control", v_show=("band_mode",)):
            v3.VRangeSlider(v_model=("band",), min=0, max=100, step=1, thumb_label=True, hide_details=True,
                            disabled=("!review_enabled",), color="primary")
        html.Div("{{ readout_band }}", id="readout-band", v_show=("band_mode",), classes="text-body-2")
        html.Div("{{ readout_expected }}", id="readout-expected", classes="text-body-2 mt-1")
        html.Div(v_html=("curve_svg",), id="curve", classes="mt-2")
        self._involvement()
        html.Div("Overlay opacity", classes="text-caption mt-2")
        v3.VSlider(v_model=("opacity",), min=0, max=1, step=0.05, hide_details=True, id="opacity",
                   disabled=("!review_enabled",))
        v3.VSelect(v_model=("color_map",), items=("color_maps",), label="Colour map", density="compact",
                   hide_details=True, disabled=("!review_enabled",), id="color-map", classes="mt-2")
        v3.VSwitch(v_model=("uncalibrated",), label="Show the uncalibrated ensemble probability",
                   id="uncalibrated", disabled=("!review_enabled",), density="compact", hide_details=True)
        v3.VSwitch(v_model=("show_raters",), label="Show the annotators' masks", id="show-raters",
                   v_show=("has_raters",), density="compact", hide_details=True)
        v3.VTextField(v_model=("contour_levels",), label="Contour levels (%, used by the next run)",
                      density="compact", hide_details=True, disabled=("busy",), id="contour-levels",
                      classes="mt-2")
        v3.VBtn("Export mask at this level", id="export-button", size="small", variant="tonal", classes="mt-3",
                disabled=("!review_enabled",),
                click="utils.download(`twintrack_mask_${Math.round(level)}pct.nii.gz`, "
                      "trigger('export_mask'), 'application/gzip')")
        html.Div("server: review step {{ server_step_ms.toFixed(1) }} ms", id="server-step",
                 classes="text-caption text-disabled mt-2")


    def _involvement(self) -> None:
        """The panel's Involvement section: the per-vessel table at the slider's level and the read-out line."""
        with html.Div(id="involvement", classes="mt-3"):
            html.Div("Vascular involvement", classes="text-subtitle-2")
            with html.Table(id="involvement-table", classes="text-caption", v_show=("involvement_enabled",),
                            style="border-collapse: collapse; width: 100%;"):
                with html.Thead():
                    with html.Tr():
                        html.Th("{{ column }}", v_for="column in involvement_columns", key="column",
                                style="text-align: left; padding-right: 4px;")
                with html.Tbody():
                    with html.Tr(v_for="row in involvement_rows", key="row[0]"):
                        html.Td("{{ cell }}", v_for="(cell, index) in row", key="index",
                                style="padding-right: 4px; white-space: nowrap;")
            html.Div("{{ involvement_readout }}", id="involvement-readout", classes="text-body-2 font-weight-medium")
            with html.Div(classes="d-flex align-center mt-1", v_show=("involvement_enabled",)):
                with html.Div(id="involvement-vessel", classes="mr-2", style="flex: 1; min-width: 150px;"):
                    v3.VSelect(v_model=("involvement_vessel",), items=("vessel_names",), label="Vessel",
                               density="compact", hide_details=True)
                v3.VBtn("Centre on contact", id="involvement-centre", click=self.centre_on_vessel,
                        size="small", variant="tonal")
            html.Div("{{ involvement_note }}", id="involvement-note", classes="text-caption")


def trame_argv(options) -> list:
    """The command line trame parses: ours only. The token goes as ``--authKey=TOKEN``, since a
    random token may start with "-" and argparse would read ``--authKey -x...`` as two options."""
    argv = [sys.argv[0], "--server", "--timeout", "0", "--host", options.host, "--port", str(options.port)]
    if options.token:
        argv.append(f"--authKey={options.token}")
    return argv


def serve(options) -> int:
    """Build the review and serve it until interrupted (Ctrl+C or SIGTERM)."""
    app = ReviewApp(options)
    # trame reads its settings from sys.argv; give it only ours, never the twintrack command line.
    saved, sys.argv = sys.argv, trame_argv(options)
    try:
        app.server.start(host=options.host, port=options.port, show_connection_info=False, open_browser=False)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise InputError(f"Port {options.port} on {options.host} is already in use (another review?). "
                             "Pick another with --port N, or --port 0 for any free one.") from None
        raise
    finally:
        sys.argv = saved
    return 0
