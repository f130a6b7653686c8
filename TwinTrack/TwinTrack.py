"""TwinTrack: calibrated tumour probability that reads as expected annotator agreement.

Thin Qt glue (the SlicerNNUnet way): the widget binds the .ui to a typed parameter node and
forwards every signal to TwinTrackLib.presenter, which decides what the panel shows and runs
the long work in a worker process (TwinTrackLogic.worker.process, on PythonSlicer); everything that
touches the scene lives in TwinTrackLib (headless-tested), everything that computes lives in
the Slicer-free TwinTrackLogic core.

Supported: 3D Slicer 5.10 or later (Python 3.12). Slicer 5.8 (Python 3.9) is refused at load.
"""

import os
import sys
from typing import Annotated, Optional, Union

import qt
import slicer
import vtk
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

_MODULE_DIR = os.path.dirname(os.path.abspath(__file__))
# Installed, CMake puts the core (and its demo bundle) in TwinTrackCore/ next to
# this file; loaded from a source checkout (Additional module paths ->
# TwinTrack/), the core sits one folder up.
for _folder in (os.path.join(_MODULE_DIR, "TwinTrackCore"), os.path.dirname(_MODULE_DIR)):
    if os.path.isdir(os.path.join(_folder, "TwinTrackLogic")) and _folder not in sys.path:
        sys.path.append(_folder)

COLOR_MAPS = ["Blue-yellow", "Purple-orange", "Grey"]
VESSELS = ["portal vein", "SMV", "aorta", "celiac trunk", "SMA"]  # TwinTrackLogic.vessels.VESSEL_LABELS' names
POLL_INTERVAL_MS = 100
MINIMUM_SLICER = (5, 10)
MINIMUM_PYTHON = (3, 10)


def unsupportedSlicerMessage(slicerVersion, pythonVersion) -> Optional[str]:
    """Why this Slicer cannot run TwinTrack, or None when it can."""
    if tuple(slicerVersion) >= MINIMUM_SLICER and tuple(pythonVersion) >= MINIMUM_PYTHON:
        return None
    return (f"TwinTrack needs 3D Slicer {MINIMUM_SLICER[0]}.{MINIMUM_SLICER[1]} or later (Python "
            f"{MINIMUM_PYTHON[0]}.{MINIMUM_PYTHON[1]}+); this is Slicer {'.'.join(map(str, slicerVersion))} with "
            f"Python {'.'.join(map(str, pythonVersion))}. Install a current Slicer from https://download.slicer.org "
            "and the TwinTrack extension for it.")


class TwinTrack(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        unsupported = unsupportedSlicerMessage((slicer.app.majorVersion, slicer.app.minorVersion),
                                               sys.version_info[:2])
        if unsupported:
            raise RuntimeError(unsupported)  # Slicer logs it as the reason the module did not load
        self.parent.title = "TwinTrack"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["TwinTrack contributors (TwinTrack project, https://github.com/twintrack/SlicerTwinTrack)"]
        self.parent.helpText = (
            "Runs a pancreatic-tumour segmentation ensemble on the selected CT and calibrates its "
            "probability to the mean human response: the fraction of expert annotators expected to "
            "label each voxel tumour. Review it with sliders that read in annotators and millilitres.")
        self.parent.acknowledgementText = (
            "Method: TwinTrack (arXiv 2604.15950), first place in the MICCAI 2025 CURVAS-PDACVI challenge.")
        slicer.app.connect("startupCompleted()", registerSampleData)


def _phantomPath():
    import pathlib

    from TwinTrackLib import sampledata  # constants only; its heavy imports are lazy

    return pathlib.Path(slicer.app.cachePath) / "TwinTrack" / f"{sampledata.SAMPLE_NAME}.nrrd"


def phantomFile():
    """The demo phantom as a file, for Sample Data's file-based API (``downloadSample``).

    Written on first use, not at startup, and written again whenever it is missing: Slicer's
    *Clear cache* removes it.
    """
    from TwinTrackLib import sampledata

    path = _phantomPath()
    if not path.is_file():
        sampledata.write_demo_phantom(path)
    return path


def loadSampleCT():
    """The demo phantom generated straight into the scene and shown (Sample Data's button, the panel's
    *Load sample CT*)."""
    from TwinTrackLib import sampledata

    node = sampledata.load_demo_phantom(slicer.mrmlScene)
    slicer.util.setSliceViewerLayers(background=node, fit=True)
    return node


def registerSampleData():
    """The demo phantom in the Sample Data module: generated locally, no download.

    The button generates the CT straight into the scene; ``SampleData.downloadSample`` reads the
    file :func:`phantomFile` writes when the module is first shown or the self-test runs.
    Nothing heavy is imported here: this runs at every startup.
    """
    import SampleData

    from TwinTrackLib import sampledata

    cached = _phantomPath()
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category=sampledata.CATEGORY, sampleName=sampledata.SAMPLE_NAME,
        uris=cached.as_uri(), fileNames=cached.name, nodeNames=sampledata.SAMPLE_NAME,
        loadFileTypes="VolumeFile", customDownloader=lambda source=None: loadSampleCT(),
        thumbnailFileName=os.path.join(_MODULE_DIR, "Resources", "Icons", "TwinTrack.png"))


@parameterNodeWrapper
class TwinTrackParameterNode:
    inputVolume: slicer.vtkMRMLScalarVolumeNode
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"
    agreementLevel: Annotated[float, WithinRange(1, 100)] = 50.0  # 0 % would be every voxel of the CT
    rangeMode: bool = False
    rangeLow: Annotated[float, WithinRange(1, 100)] = 20.0
    rangeHigh: Annotated[float, WithinRange(0, 100)] = 80.0
    opacity: Annotated[float, WithinRange(0, 1)] = 0.7
    colorMap: Annotated[str, Choice(COLOR_MAPS)] = COLOR_MAPS[0]
    showUncalibrated: bool = False
    contourLevels: str = "20, 50, 80"
    vesselsNode: Optional[Union[slicer.vtkMRMLSegmentationNode, slicer.vtkMRMLLabelMapVolumeNode]]
    involvementVessel: Annotated[str, Choice(VESSELS)] = "SMA"


class TwinTrackWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Forwards Qt signals to the presenter and draws the ViewState it returns; decides nothing."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.presenter = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self.shownErrors = []  # what error dialogs said, for the self-test
        self._lastLogged = ""
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self._pollJob)

    def setup(self):
        from TwinTrackLib.presenter import Presenter

        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/TwinTrack.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = TwinTrackModuleLogic()
        self.presenter = Presenter(slicer.mrmlScene, start_inference=self.logic.startInference,
                                   start_calibration=self.logic.startCalibration, on_result=self.logic.showChart,
                                   dicom_host=self.logic.dicomHost())

        from TwinTrackLib import runtime

        if "cuda" not in runtime.devices_for():  # macOS: no onnxruntime-gpu wheel exists
            self.ui.deviceComboBox.removeItem(self.ui.deviceComboBox.findText("cuda"))
        self.ui.progressBar.hide()
        self.ui.warningsLabel.hide()
        self.ui.loadSampleButton.connect("clicked(bool)", self.onLoadSampleButton)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.segmentButton.connect("clicked(bool)", self.onSegmentButton)
        self.ui.centreButton.connect("clicked(bool)", self.onCentreButton)
        self.ui.fitButton.connect("clicked(bool)", self.onFitButton)
        self.ui.exportDicomButton.connect("clicked(bool)", self.onExportDicomButton)
        self.ui.involvementCentreButton.connect("clicked(bool)", self.onInvolvementCentreButton)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def cleanup(self):
        self.presenter.scene_closing()  # stops the worker: the widget is going
        self._timer.stop()
        self.removeObservers()

    def onReload(self):
        # Reload re-imports only this file; the scene layer and the core must follow.
        self.cleanup()
        for name in [n for n in sys.modules if n.split(".")[0] in ("TwinTrackLib", "TwinTrackLogic")]:
            del sys.modules[name]
        ScriptedLoadableModuleWidget.onReload(self)

    def enter(self):
        try:  # Sample Data's file for downloadSample: off the startup path, rewritten if cleared
            phantomFile()
        except OSError as error:  # an unwritable cache must not keep the panel from binding (N9)
            self._log(f"The sample CT could not be written to Slicer's cache ({error}); Load sample CT still works.")
        self.initializeParameterNode()

    def exit(self):
        pass  # the GUI stays bound to the parameter node: rebinding would stack connections on some Slicers

    def onSceneStartClose(self, caller, event):
        self.presenter.scene_closing()
        self.setParameterNode(None)
        self._show(self.presenter.state(None))

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        self._show(self.presenter.enter(self._parameterNode))

    def setParameterNode(self, inputParameterNode):
        # Bind once per MRML node: a new wrapper around the node already bound changes nothing.
        if (inputParameterNode is not None and self._parameterNode is not None
                and inputParameterNode.parameterNode is self._parameterNode.parameterNode):
            return
        if self._parameterNode is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            if self.hasObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterModified):
                self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterModified)
        self._parameterNode, self._parameterNodeGuiTag = inputParameterNode, None
        if self._parameterNode is not None:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterModified)

    # --- forwarding ----------------------------------------------------------------

    def _onParameterModified(self, caller=None, event=None):
        self._show(self.presenter.parameters_changed(self._parameterNode))

    def onLoadSampleButton(self):
        with slicer.util.tryWithErrorDisplay("TwinTrack could not generate the sample CT.", waitCursor=True):
            self._parameterNode.inputVolume = loadSampleCT()

    def onApplyButton(self):
        # The install prompt (if any) comes before the run, never under a busy cursor.
        if self.presenter.job is None and not self.logic.ensureOnnxRuntime(self._parameterNode.device):
            return
        self._show(self.presenter.apply(self._parameterNode, self.ui.calibratorPathLineEdit.currentPath or None))

    def onFitButton(self):
        if self.presenter.job is None and not self.logic.ensureOnnxRuntime(self._parameterNode.device):
            return
        self._show(self.presenter.fit(self._parameterNode, self.ui.cohortPathLineEdit.currentPath,
                                      self.ui.calibratorOutputPathLineEdit.currentPath))

    def onSegmentButton(self):
        self._show(self.presenter.add_segment(self._parameterNode))

    def onExportDicomButton(self):
        self._show(self.presenter.export_dicom(self._parameterNode))

    def onCentreButton(self):
        self.presenter.centre_on_tumour(self._parameterNode)

    def onInvolvementCentreButton(self):
        self._show(self.presenter.centre_on_vessel(self._parameterNode))

    def _pollJob(self):
        self._show(self.presenter.poll(self._parameterNode))

    def _show(self, state):
        ui = self.ui
        ui.applyButton.text, ui.applyButton.enabled = state.apply_text, state.apply_enabled
        ui.fitButton.text, ui.fitButton.enabled = state.fit_text, state.fit_enabled
        ui.progressBar.visible, ui.progressBar.value = state.progress_visible, state.progress_percent
        ui.statusLabel.text = state.status
        if state.status and state.status != self._lastLogged:
            self._log(state.status)
        ui.reviewCollapsibleButton.enabled = state.review_enabled
        ui.exportDicomButton.text, ui.exportDicomButton.enabled = state.export_dicom_text, state.export_dicom_enabled
        ui.rangeLowSlider.enabled = ui.rangeHighSlider.enabled = state.range_sliders_enabled
        ui.levelSlider.enabled = state.level_slider_enabled
        ui.levelReadoutLabel.text = state.level_readout
        ui.bandReadoutLabel.text = state.band_readout
        ui.expectedVolumeLabel.text = state.expected_readout
        ui.warningsLabel.text, ui.warningsLabel.visible = state.warnings, bool(state.warnings)
        ui.involvementTable.enabled = ui.involvementCentreButton.enabled = state.involvement_enabled
        for row, cells in enumerate(state.involvement_cells):
            for column, text in enumerate(cells):
                ui.involvementTable.setItem(row, column, qt.QTableWidgetItem(text))
        ui.involvementReadoutLabel.text = state.involvement_readout
        ui.involvementNoteLabel.text = state.involvement_note
        if state.job_running and not self._timer.isActive():
            self._timer.start()
        elif not state.job_running:
            self._timer.stop()
        fitted = self.presenter.take_fitted_calibrator()
        if fitted:
            ui.calibratorPathLineEdit.currentPath = fitted
        error = self.presenter.take_error()
        while error is not None:
            message, details = error
            self.shownErrors.append(message)
            self._log(f"Error: {message}" + (f"\n{details}" if details else ""))
            # detailedText only when there are details: an empty one still widens the dialog.
            slicer.util.errorDisplay(message, **({"detailedText": details} if details else {}))
            error = self.presenter.take_error()

    def _log(self, text):
        """The Log section: every status the panel showed and every error, with details, newest last."""
        self._lastLogged = text
        self.ui.logTextEdit.appendPlainText(text)


class TwinTrackModuleLogic(ScriptedLoadableModuleLogic):
    """Scene-level logic; named so it does not shadow the TwinTrackLogic core package."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        # The base class strips "Logic" from the class name, which would give "TwinTrackModule".
        self.moduleName = "TwinTrack"
        # The self-test's stand-in ensemble ({"case", "raters", "seed"} of the demo phantom) where ONNX
        # Runtime is absent (the extension factory); None: the real ensemble.
        self.standInEnsemble = None

    def getParameterNode(self):
        return TwinTrackParameterNode(super().getParameterNode())

    def ensureOnnxRuntime(self, device: str) -> bool:
        """ONNX Runtime for ``device`` in Slicer's Python, installed on first use with the user's consent.

        Never installs (nor asks) in testing mode. The stand-in ensemble needs none.
        """
        if self.standInEnsemble:
            return True
        from TwinTrackLib import runtime
        from TwinTrackLogic import TwinTrackError
        from TwinTrackLogic.runtime_check import onnxruntime_need

        refused = runtime.refused_device(device)
        if refused:  # before anything is uninstalled
            slicer.util.errorDisplay(refused)
            return False
        need = onnxruntime_need(device)
        if need is None:
            return True
        if slicer.app.testingEnabled():
            return False
        change = (f"uninstall {', '.join(need.uninstall)} and install '{need.install}'" if need.uninstall
                  else f"install '{need.install}'")
        if not slicer.util.confirmOkCancelDisplay(
                f"TwinTrack runs its networks with ONNX Runtime (no PyTorch needed). {need.reason}\n\n"
                f"{change[0].upper() + change[1:]} in Slicer's Python now? It is downloaded from the Python "
                "Package Index (tens to hundreds of MB) once."):
            return False
        try:  # no busy cursor: Slicer 5.12+ shows pip's own progress dialog
            runtime.install(need, slicer.util.pip_install, slicer.util.pip_uninstall)
        except TwinTrackError as error:
            slicer.util.errorDisplay(str(error))
            return False
        # The worker is a new process: it sees the new package without restarting Slicer.
        return onnxruntime_need(device) is None

    @staticmethod
    def workerPackagesDir() -> str:
        """Where Export DICOM's writers go: a folder per Slicer revision (so per Python version) that
        only the worker puts on its path; Slicer's own pydicom and highdicom stay as they are."""
        folder = os.path.dirname(slicer.app.slicerRevisionUserSettingsFilePath)
        return os.path.join(folder, "TwinTrack", f"python{sys.version_info[0]}.{sys.version_info[1]}-packages")

    def installDicomPackages(self, requirements) -> bool:
        """The DICOM writers' packages, on the user's consent, into :meth:`workerPackagesDir` (pip
        --target, without dependencies: numpy and Pillow stay Slicer's). No restart: Slicer itself
        never imports them.

        Never installs (nor asks) in testing mode, as :meth:`ensureOnnxRuntime`.
        """
        if slicer.app.testingEnabled():
            return False
        if not slicer.util.confirmOkCancelDisplay(
                f"Export DICOM writes the result with highdicom and pydicom, and needs {', '.join(requirements)}. "
                "They go into a folder of TwinTrack's own that only its worker process uses, so Slicer's "
                "DICOM module keeps its versions and no restart is needed.\n\nDownload them from the Python "
                "Package Index (a few MB) now?"):
            return False
        import subprocess

        from TwinTrackLogic import TwinTrackError
        from TwinTrackLogic.worker import process as worker

        command = [worker.python_executable(), "-m", "pip", "install", "--no-deps", "--upgrade", "--target",
                   self.workerPackagesDir(), *requirements]
        with slicer.util.WaitCursor():
            done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:  # the presenter shows the message: one dialog, not two
            print(done.stdout + done.stderr, file=sys.stderr)
            raise TwinTrackError(f"TwinTrack could not install {', '.join(requirements)} (pip exit code "
                                 f"{done.returncode}); pip's output is in the Python console.")
        return True

    @staticmethod
    def importDicomFolder(folder) -> bool:
        """Add the files in ``folder`` to Slicer's DICOM database, copied (the folder is removed next)."""
        from DICOMLib import DICOMUtils

        return bool(DICOMUtils.importDicom(folder, copyFiles=True))

    @staticmethod
    def fileForInstance(uid) -> str:
        database = getattr(slicer, "dicomDatabase", None)
        return database.fileForInstance(uid) if database is not None and database.isOpen else ""

    @classmethod
    def sopClassForInstance(cls, uid) -> str:
        # As Slicer's DICOMParametricMapPlugin tells a Parametric Map (main DICOMParametricMapPlugin.py:37).
        path = cls.fileForInstance(uid)
        return slicer.dicomDatabase.fileValue(path, "0008,0016") if path else ""

    def dicomHost(self):
        from TwinTrackLib.dicomexport import DicomHost

        return DicomHost(file_for_instance=self.fileForInstance, install=self.installDicomPackages,
                         import_folder=self.importDicomFolder, sop_class_for_instance=self.sopClassForInstance,
                         packages_dir=self.workerPackagesDir())

    def startInference(self, volume, calibrator_path=None, device: str = "auto", vessels=None, vessels_source=None):
        from TwinTrackLogic.worker import process as worker

        return worker.start_inference(volume, calibrator_path=calibrator_path, device=device,
                                      stand_in=self.standInEnsemble, vessels=vessels, vessels_source=vessels_source)

    @staticmethod
    def startCalibration(cohort_folder, output_path, device: str = "auto"):
        from TwinTrackLogic.worker import process as worker

        return worker.start_calibration(cohort_folder, output_path, device=device)

    @staticmethod
    def showChart(agreement):
        slicer.modules.plots.logic().ShowChartInLayout(agreement.chart)


class SlicerWidgetDriver:
    """The self-test's hands on the real widget (see TwinTrackLib.walkthrough.Driver)."""

    def __init__(self, widget):
        self.widget = widget
        self.scene = slicer.mrmlScene
        self.presenter = widget.presenter

    @property
    def params(self):
        return self.widget._parameterNode

    def load_phantom(self):
        import SampleData

        from TwinTrackLib import sampledata

        phantomFile()
        return SampleData.downloadSample(sampledata.SAMPLE_NAME)

    def set(self, name, value):
        """Through the widget, as the user would: its binding carries the value to the parameter node."""
        widget_name, member = WIDGET_OF_PARAMETER[name]
        widget = getattr(self.widget.ui, widget_name)
        if member == "currentNode":
            widget.setCurrentNode(value)
        else:
            setattr(widget, member, value)
        slicer.app.processEvents()
        stored = getattr(self.widget._parameterNode, name)
        if stored != value and not (isinstance(value, float) and abs(stored - value) < 1e-6):
            raise AssertionError(f"ui.{widget_name}.{member} = {value!r} reached the parameter node as {stored!r}")

    def press_apply(self):
        self.widget.ui.applyButton.click()
        slicer.app.processEvents()

    def press_centre_vessel(self):
        self.widget.ui.involvementCentreButton.click()
        slicer.app.processEvents()

    def pump(self):
        import time

        slicer.app.processEvents()
        time.sleep(0.02)

    def shown(self):
        ui = self.widget.ui
        return {"apply_text": ui.applyButton.text, "apply_enabled": ui.applyButton.enabled,
                "fit_enabled": ui.fitButton.enabled, "status": ui.statusLabel.text,
                "review_enabled": ui.reviewCollapsibleButton.enabled, "level_readout": ui.levelReadoutLabel.text,
                "expected_readout": ui.expectedVolumeLabel.text, "progress_visible": ui.progressBar.visible,
                "errors": list(self.widget.shownErrors), "involvement_enabled": ui.involvementTable.enabled,
                "involvement_cells": [tuple(ui.involvementTable.item(row, column).text() for column in range(5))
                                      for row in range(len(VESSELS))],
                "involvement_readout": ui.involvementReadoutLabel.text}

    def reenter(self):
        slicer.util.selectModule("Data")
        slicer.app.processEvents()
        slicer.util.selectModule("TwinTrack")
        slicer.app.processEvents()


# The .ui's parameter bindings (SlicerParameterName), for the self-test's hands: widget and property.
WIDGET_OF_PARAMETER = {
    "inputVolume": ("inputSelector", "currentNode"), "device": ("deviceComboBox", "currentText"),
    "contourLevels": ("contourLevelsLineEdit", "text"), "agreementLevel": ("levelSlider", "value"),
    "rangeMode": ("rangeCheckBox", "checked"), "rangeLow": ("rangeLowSlider", "value"),
    "rangeHigh": ("rangeHighSlider", "value"), "colorMap": ("colorMapComboBox", "currentText"),
    "opacity": ("opacitySlider", "value"), "showUncalibrated": ("uncalibratedCheckBox", "checked"),
    "vesselsNode": ("vesselsSelector", "currentNode"), "involvementVessel": ("involvementVesselComboBox", "currentText"),
}


class TwinTrackTest(ScriptedLoadableModuleTest):
    """Drives the widget through the demo phantom: the same walkthrough pytest runs headless
    against the presenter (Testing/test_presenter.py).

    It always runs once with the stand-in ensemble in the real worker process (no ONNX Runtime
    needed: Slicer's extension factory has none and may not install it), and once more with the
    real ensemble when ONNX Runtime is installed. It never skips and needs no network.
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_TwinTrack_widget_walkthrough()

    def test_TwinTrack_widget_walkthrough(self):
        from TwinTrackLib import sampledata
        from TwinTrackLogic.runtime_check import onnxruntime_need

        stand_in = {"case": sampledata.PHANTOM_CASE_INDEX, "raters": sampledata.PHANTOM_RATERS,
                    "seed": sampledata.PHANTOM_SEED}
        self._walkthrough(stand_in, "the stand-in ensemble (no ONNX Runtime needed)")
        if onnxruntime_need("cpu") is None:
            self.setUp()
            self._walkthrough(None, "the real ensemble (ONNX Runtime)")
        else:
            self.delayDisplay("ONNX Runtime is not installed: the real ensemble was not run")

    def _walkthrough(self, stand_in, label):
        from TwinTrackLib.walkthrough import run_walkthrough

        slicer.util.selectModule("TwinTrack")
        widget = slicer.modules.TwinTrackWidget
        widget.logic.standInEnsemble = stand_in
        try:
            self.delayDisplay(f"Running TwinTrack on the demo phantom through the panel, with {label}")
            outcome = run_walkthrough(SlicerWidgetDriver(widget))
        finally:
            widget.logic.standInEnsemble = None
        self.delayDisplay(f"Test passed with {label}: first overlay {outcome.apply_to_overlay_s:.1f} s after Apply")
