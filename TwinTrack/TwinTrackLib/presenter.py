"""What the module's panel decides, without Qt: the Slicer widget and the web review share it.

The view (Slicer's widget, a trame page, a test) forwards the user's actions here and draws
the :class:`ViewState` it gets back; the presenter never touches a widget. It owns:

- the job lifecycle: Apply, Fit and Export DICOM start a worker (a child process by default),
  turn into Cancel while it runs, ``poll`` follows its progress and, once it is done, builds
  the scene (or says what was fitted or exported);
- the parameters -> :class:`~.outputs.AgreementScene` setters (level, range, opacity, colour
  map, uncalibrated view) and the read-outs, plus the result's warnings as a banner;
- which buttons are live, the status texts, and centring the slice views on the tumour.
- Export DICOM (:mod:`.dicomexport`): the result as a Parametric Map and a SEG in the CT's
  study, through an injected :class:`~.dicomexport.DicomHost` (the DICOM database, pip); the
  packages and the database stay on the main thread, the writing runs in the worker.

``params`` is any object with the parameter node's fields (Slicer's ``@parameterNodeWrapper``
node, or :class:`Parameters` headless); levels there are percent, as the sliders show them.
Messages for a dialog are queued, never shown from here: the view takes them with
:meth:`Presenter.take_error`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Tuple, Union

import numpy as np

from TwinTrackLogic import InputError
from TwinTrackLogic.prediction_outputs import involvement_record
from TwinTrackLogic.review.colormaps import COLOR_MAPS, DEFAULT_COLOR_MAP
from TwinTrackLogic.review.levels import DEFAULT_CONTOUR_LEVELS, percent_text
from TwinTrackLogic.worker import jobs
from TwinTrackLogic.worker import process as worker

from . import dicomexport, display, involvement_panel, outputs, runtime
from .involvement_text import vessel_sentence
from .segmentation import parse_levels
from .vesselnodes import vessels_from_node
from .volumes import ijk_to_ras, volume_from_node

INFERENCE, FIT, EXPORT = "inference", "fit", "export"
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class Parameters:
    """The module's parameters headless; the same names and units as TwinTrack.py's parameter node."""

    inputVolume: Any = None
    device: str = "auto"
    agreementLevel: float = 50.0  # percent of annotators
    rangeMode: bool = False
    rangeLow: float = 20.0
    rangeHigh: float = 80.0
    opacity: float = 0.7
    colorMap: str = DEFAULT_COLOR_MAP
    showUncalibrated: bool = False
    contourLevels: str = percent_text(DEFAULT_CONTOUR_LEVELS, ", ")
    vesselsNode: Any = None  # optional: a segmentation or labelmap node with the vessels (vesselnodes.py)
    involvementVessel: str = involvement_panel.DEFAULT_VESSEL


@dataclass
class ViewState:
    """Everything the panel shows; the view copies it onto its widgets."""

    apply_text: str = "Apply"
    apply_enabled: bool = False
    fit_text: str = "Fit calibrator"
    fit_enabled: bool = True
    progress_visible: bool = False
    progress_percent: int = 0
    status: str = ""
    review_enabled: bool = False
    range_sliders_enabled: bool = False
    level_slider_enabled: bool = True  # off in range mode, where the level does not act on the display
    level_readout: str = ""
    band_readout: str = ""
    expected_readout: str = ""
    warnings: str = ""  # banner next to the read-outs; empty: hide it
    export_dicom_enabled: bool = False  # a result whose CT came from the DICOM database (or: cancel it)
    export_dicom_text: str = "Export DICOM"
    job_running: bool = False  # the view polls (a timer) while this is True
    # The Involvement section (involvement_panel.py): table cells in COLUMNS order, one row per vessel.
    involvement_enabled: bool = False
    involvement_cells: List[Tuple[str, ...]] = field(default_factory=lambda: involvement_panel.InvolvementView().cells)
    involvement_readout: str = ""
    involvement_note: str = ""


# start_inference(volume, calibrator_path=, device=, vessels=, vessels_source=) / start_calibration(cohort, output, device=)
# -> a job with poll()/cancel() (TwinTrackLogic.worker.process.WorkerProcess or jobs.BackgroundJob)
StartInference = Callable[..., Any]
StartCalibration = Callable[..., Any]
# start_dicom_export(files, probability, geometry, deliver, provenance=) -> a job (worker.start_dicom_export)
StartDicomExport = Callable[..., Any]


def is_output(node) -> bool:
    return node is not None and node.GetAttribute(outputs.OUTPUT_ATTRIBUTE) == "1"


def why_not_an_input(node, dicom_host: Optional[dicomexport.DicomHost] = None) -> Optional[str]:
    """Why ``node`` cannot be the input CT (a sentence), or None when it can."""
    if is_output(node):
        return (f"'{node.GetName()}' is a TwinTrack result, not a CT: a rerun would replace it. Select the CT "
                "volume as the input.")
    if node.IsA("vtkMRMLLabelMapVolumeNode"):
        return f"'{node.GetName()}' is a labelmap (a segmentation), not a CT. Select the CT volume as the input."
    what = dicomexport.not_a_ct(node, dicom_host)
    if what:
        return (f"'{node.GetName()}' is {what} (for instance an exported TwinTrack result), not a CT. Select "
                "the CT volume as the input.")
    return None


def default_input(scene, dicom_host: Optional[dicomexport.DicomHost] = None):
    """The CT to preselect: the first scalar volume that can be an input (not a labelmap, not a
    TwinTrack result, not a Parametric Map or Segmentation from the DICOM database)."""
    volumes = scene.GetNodesByClass("vtkMRMLScalarVolumeNode")  # labelmaps are scalar volumes too
    for index in range(volumes.GetNumberOfItems()):
        node = volumes.GetItemAsObject(index)
        if why_not_an_input(node, dicom_host) is None:
            return node
    return None


def tumour_centre_ras(result, level: float) -> Optional[Tuple[float, float, float]]:
    """RAS (mm) of the centroid of ``p >= level``, else of the most probable voxel; None if all 0."""
    probability = result.calibrated
    if not probability.size or float(probability.max()) <= 0.0:
        return None
    zyx = np.argwhere(probability >= max(level, 1e-6))
    if not len(zyx):
        zyx = np.argwhere(probability == probability.max())
    k, j, i = zyx.mean(axis=0)
    ras = ijk_to_ras(result.geometry) @ np.array([i, j, k, 1.0])
    return float(ras[0]), float(ras[1]), float(ras[2])


def warnings_text(result) -> str:
    """The banner: the domain checks' warnings on this result (``provenance["warnings"]``)."""
    warnings = [str(w) for w in (result.provenance or {}).get("warnings", []) if str(w).strip()]
    return "\n".join(f"Warning: {w}" for w in warnings)


class Presenter:
    """The panel's decisions for one scene. ``on_result(agreement)`` runs after a result is shown
    (inside Slicer: put the chart in the layout)."""

    def __init__(self, scene, start_inference: StartInference = worker.start_inference,
                 start_calibration: StartCalibration = worker.start_calibration,
                 on_result: Optional[Callable[[outputs.AgreementScene], None]] = None,
                 dicom_host: Optional[dicomexport.DicomHost] = None,
                 start_dicom_export: StartDicomExport = worker.start_dicom_export):
        self.scene = scene
        self._start_dicom_export = start_dicom_export
        self._dicom_host = dicom_host  # None: no DICOM database (the web review), no Export DICOM
        self._start_inference = start_inference
        self._start_calibration = start_calibration
        self._on_result = on_result
        self.agreement: Optional[outputs.AgreementScene] = None
        self.job: Optional[Union[jobs.BackgroundJob, worker.WorkerProcess]] = None  # poll, cancel, token
        self.job_kind: Optional[str] = None
        self._job_input: Optional[tuple] = None  # (CT node, contour levels, device) the inference started with
        self._job_output: Optional[str] = None  # the calibrator file a fit writes
        self._status = ""
        self._warnings = ""
        self._errors: List[Tuple[str, str]] = []
        self._fitted: Optional[str] = None
        self._vessel_notes: List[str] = []  # what the shown result's vessels node could not give (vesselnodes.py)
        self._job_vessel_notes: List[str] = []  # the same for the run in progress

    # --- messages the view takes ------------------------------------------------------

    def take_error(self) -> Optional[Tuple[str, str]]:
        """(message, details) for an error dialog, oldest first; None when there is none."""
        return self._errors.pop(0) if self._errors else None

    def take_fitted_calibrator(self) -> Optional[str]:
        """The calibrator a fit just saved, once: the view puts it in the calibrator field."""
        fitted, self._fitted = self._fitted, None
        return fitted

    def _error(self, message: str, details: str = "") -> None:
        self._errors.append((message, details))

    # --- the state --------------------------------------------------------------------

    def _live_agreement(self):
        if self.agreement is not None and not self.agreement.intact:
            self.agreement = None
            self._warnings = ""
            self._status = "A node of the result was deleted, so the review controls were detached. Press Apply to compute it again."
        return self.agreement

    def state(self, params) -> ViewState:
        agreement = self._live_agreement()  # first: it may change the status
        job = self.job
        running = job is not None
        state = ViewState(job_running=running, status=self._status, warnings=self._warnings)
        refused = (why_not_an_input(params.inputVolume, self._dicom_host)
                   if params is not None and params.inputVolume is not None else None)
        # Apply is live only when it can run; the status says why not.
        state.apply_enabled = self.job_kind == INFERENCE if running else bool(params and params.inputVolume
                                                                               and not refused)
        if refused and not running and not state.status:
            state.status = refused
        state.fit_enabled = not running or self.job_kind == FIT
        finishing = bool(getattr(job, "finishing", False))  # adding an export to the database: no cancel now
        if job is not None:
            fraction, message, _ = job.poll()
            state.progress_visible = True
            state.progress_percent = int(round(fraction * 100))
            state.status = "Cancelling..." if job.token.cancelled else message
            if finishing and self.job_kind == EXPORT:
                state.status = "Adding the Parametric Map and the Segmentation to the DICOM database"
            if self.job_kind == INFERENCE:
                state.apply_text = "Cancel"
            elif self.job_kind == FIT:
                state.fit_text = "Cancel"
            else:
                state.export_dicom_text = "Cancel"
        state.range_sliders_enabled = bool(params and params.rangeMode)
        state.level_slider_enabled = not state.range_sliders_enabled
        state.review_enabled = agreement is not None
        state.export_dicom_enabled = (self.job_kind == EXPORT and not finishing if running else
                                      self._dicom_host is not None and dicomexport.can_export(agreement))
        if agreement is not None and params is not None:
            texts = agreement.readouts()
            state.level_readout, state.band_readout, state.expected_readout = \
                texts["level"], texts["band"], texts["expected"]
            involvement = involvement_panel.involvement_view(agreement.result, agreement.level,
                                                             params.involvementVessel, self._vessel_notes)
            state.involvement_enabled, state.involvement_cells = involvement.enabled, involvement.cells
            state.involvement_readout, state.involvement_note = involvement.readout, involvement.note
        return state

    # --- review: display properties and lookups only ---------------------------------

    def parameters_changed(self, params) -> ViewState:
        agreement = self._live_agreement()
        if agreement is not None and params is not None:
            agreement.set_level(params.agreementLevel / 100.0)
            agreement.set_range(params.rangeLow / 100.0 if params.rangeMode else None, params.rangeHigh / 100.0)
            agreement.set_opacity(params.opacity)
            if agreement.color_map != params.colorMap and params.colorMap in COLOR_MAPS:
                agreement.set_color_map(params.colorMap)
            if agreement.uncalibrated != bool(params.showUncalibrated):
                agreement.show_uncalibrated(params.showUncalibrated)
        return self.state(params)

    def add_segment(self, params) -> ViewState:
        agreement = self._live_agreement()
        if agreement is not None:
            name = agreement.add_segment_at_level()
            self._status = f"Added the segment '{name}'."
        return self.state(params)

    def centre_on_tumour(self, params=None) -> bool:
        """Move every slice view through the tumour at the current level; False if there is none."""
        agreement = self._live_agreement()
        if agreement is None:
            return False
        ras = tumour_centre_ras(agreement.result, agreement.level)
        if ras is None:
            return False
        display.centre_slice_views(self.scene, ras)
        return True

    def centre_on_vessel(self, params) -> ViewState:
        """Move every slice view to ``params.involvementVessel`` in the axial slice of its widest contact
        at the current level; without contact there, say so and leave the views."""
        agreement = self._live_agreement()
        if agreement is not None:
            vessel = params.involvementVessel
            centre = involvement_panel.vessel_centre(agreement.result, vessel, agreement.level)
            if centre is None:
                sentence = vessel_sentence(agreement.result.involvement, vessel, agreement.level)
                self._status = f"{sentence}; nothing to centre on."
            else:
                display.centre_slice_views(self.scene, centre[0])
                self._status = f"Views centred on the {vessel}, axial slice {centre[1]} (its widest contact)."
        return self.state(params)

    def export_dicom(self, params) -> ViewState:
        """Add the result as a DICOM Parametric Map and Segmentation to the CT's study in the
        DICOM database (installing the DICOM packages first, on the user's consent); the objects
        are written in the worker process. Pressed again while it runs: cancel."""
        if self.job is not None:
            if self.job_kind == EXPORT:
                self.cancel()
            return self.state(params)
        agreement = self._live_agreement()
        if self._dicom_host is None or not dicomexport.can_export(agreement):
            return self.state(params)
        try:
            not_ready, files = dicomexport.prepare_export(agreement, self._dicom_host)
            if not_ready:
                self._status = not_ready
                return self.state(params)
            result = agreement.result
            # The SEG holds the levels the contours show (the panel's contour levels), as the user saw them.
            # With a read-out, the involvement report goes into the study too (as predict --dicom-out writes it).
            extra = {"involvement": involvement_record(result)} if result.involvement is not None else {}
            job = self._start_dicom_export(files, result.calibrated, result.geometry,
                                           dicomexport.into_database(self._dicom_host), provenance=result.provenance,
                                           levels=agreement.contour_levels,
                                           packages_dir=self._dicom_host.packages_dir or None, **extra)
        except Exception as error:  # our errors keep their wording, no traceback
            failure = jobs.failure_outcome(error)
            self._status = "DICOM export failed: see the message."
            self._error(failure.message, failure.details)
            return self.state(params)
        self._begin(job, EXPORT)
        return self.state(params)

    # --- long work: Apply, Fit and Export DICOM turn into Cancel ----------------------

    def apply(self, params, calibrator_path: Optional[str] = None) -> ViewState:
        """Start the inference on ``params.inputVolume``, or cancel the one running."""
        if self.job is not None:
            if self.job_kind == INFERENCE:
                self.cancel()
            return self.state(params)
        ct_node = params.inputVolume
        try:
            if ct_node is None:
                raise InputError("Select the input CT volume first.")
            refused = why_not_an_input(ct_node, self._dicom_host)
            if refused:
                raise InputError(refused)
            if is_output(params.vesselsNode):
                raise InputError(f"'{params.vesselsNode.GetName()}' is a TwinTrack result: a rerun would replace it. "
                                 "Choose the vessels you loaded or drew as the Vessels input.")
            # Checked now, not after the run: a typo would otherwise discard its result.
            contour_levels = parse_levels(params.contourLevels)
            volume = volume_from_node(ct_node)  # a copy, taken before the worker starts
            vessels = None if params.vesselsNode is None else vessels_from_node(params.vesselsNode, ct_node)
            # Only a run with vessels passes them: a starter that knows no vessels still runs without.
            given = {} if vessels is None else {"vessels": vessels.labels, "vessels_source": vessels.source}
            job = self._start_inference(volume, calibrator_path=calibrator_path or None, device=params.device, **given)
        except Exception as error:  # bad input, or no room for the worker's copy of the CT
            self._not_started(error)
            return self.state(params)
        self._job_input = (ct_node, contour_levels, params.device)
        self._job_vessel_notes = [] if vessels is None else vessels.notes
        self._begin(job, INFERENCE)
        return self.state(params)

    def fit(self, params, cohort_folder: str, output_path: str) -> ViewState:
        """Fit a calibrator on a cohort folder and save it to ``output_path``; or cancel the fit."""
        if self.job is not None:
            if self.job_kind == FIT:
                self.cancel()
            return self.state(params)
        if not cohort_folder or not output_path:
            self._error("Choose the cohort folder (case folders with image.nii.gz and annotation_1..K.nii.gz) "
                        "and where to save the calibrator JSON.")
            return self.state(params)
        try:
            job = self._start_calibration(cohort_folder, output_path, device=params.device)
        except Exception as error:
            self._not_started(error)
            return self.state(params)
        self._job_output = str(output_path)
        self._begin(job, FIT)
        return self.state(params)

    def _not_started(self, error: Exception) -> None:
        failure = jobs.failure_outcome(error)  # our errors keep their wording, no traceback
        self._error(failure.message, failure.details)
        self._status = "Not started: see the message."

    def _begin(self, job, kind: str) -> None:
        self.job, self.job_kind = job, kind
        self._status = ""

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def poll(self, params) -> ViewState:
        """Follow the running job; once it ended, show its result. Call from a timer."""
        if self.job is None:
            return self.state(params)
        outcome = self.job.poll()[2]
        if outcome is None:
            return self.state(params)
        kind, self.job, self.job_kind = self.job_kind, None, None
        try:
            if outcome.status == jobs.DONE:
                self._done(kind, outcome.value, params)
            elif outcome.status == jobs.CANCELLED:
                self._status = "Cancelled; nothing was added to the scene."
            else:
                self._status = "Failed: see the message."
                self._error(outcome.message, outcome.details)
        except Exception as error:  # showing the result failed: say so, keep the panel usable
            failure = jobs.failure_outcome(error)
            self._status = "Failed: see the message."
            self._error(failure.message, failure.details)
        finally:
            self._job_input = self._job_output = None
        return self.parameters_changed(params)

    def _done(self, kind: Optional[str], value, params) -> None:
        if kind == EXPORT:
            self._status = dicomexport.exported_status(value.frames, getattr(value, "report", False))
            return
        if kind == FIT:
            self._fitted = self._job_output
            skipped = "".join(f" Skipped {name}: {message.rstrip('.')}." for name, message in value.failures)
            # Domain warnings of cases that were used: the calibrator was fitted on CTs unlike the training data.
            warned = "".join(f" Warning, {name}: {message.rstrip('.')}." for name, message in value.warnings)
            self._status = (f"Calibrator fitted on {len(value.used)} case(s): ECE against MHR "
                            f"{value.ece_before:.3f} before, {value.ece_after:.3f} after.{skipped}{warned} "
                            "It will be used for the next run.")
            return
        if self._job_input is None:  # never: an inference job starts with its input recorded
            raise RuntimeError("The inference result came without the CT it was computed on.")
        ct_node, contour_levels, device = self._job_input
        if ct_node.GetScene() is not self.scene:
            self._status = ("The input CT was deleted during the run; nothing was added. "
                            "Select a CT and press Apply again.")
            return
        self.agreement = None
        self._vessel_notes = self._job_vessel_notes
        self.agreement = outputs.AgreementScene(self.scene, ct_node, value, contour_levels=contour_levels,
                                                color_map=params.colorMap, level=params.agreementLevel / 100.0,
                                                opacity=params.opacity)
        provider = str((value.provenance or {}).get("execution_provider", ""))
        self._warnings = "\n".join(text for text in (warnings_text(value), runtime.provider_warning(device, provider))
                                   if text)
        self._status = f"Done: agreement with {value.raters} annotators.{runtime.provider_note(provider)}"
        if self._on_result is not None:
            self._on_result(self.agreement)
        self.centre_on_tumour(params)

    # --- the scene and the module come and go -----------------------------------------

    def scene_closing(self) -> None:
        """The scene is about to close: stop the job (its result would have nowhere to go)."""
        if self.job is not None:
            self.job.cancel()
            self.job = self.job_kind = None
            self._job_input = self._job_output = None
        self.agreement = None
        self._status = self._warnings = ""
        self._vessel_notes = []

    def enter(self, params) -> ViewState:
        """The module is shown: preselect a CT if none is chosen; every other choice stays."""
        if params is not None and params.inputVolume is None:
            params.inputVolume = default_input(self.scene, self._dicom_host)
        return self.parameters_changed(params)
