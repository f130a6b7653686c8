"""TwinTrack: calibrated tumour probability that reads as expected annotator agreement.

Thin Qt glue (the SlicerNNUnet way): the widget binds the .ui to a typed
parameter node and runs long work through TwinTrackLogic.jobs; everything that
touches the scene lives in TwinTrackLib (headless-tested), everything that
computes lives in the Slicer-free TwinTrackLogic core.
"""

import os
import sys
from typing import Annotated, Optional

import qt
import vtk

import slicer
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

_MODULE_DIR = os.path.dirname(os.path.abspath(__file__))
# Installed, CMake puts the core (and its demo bundle) in TwinTrackCore/ next to
# this file; loaded from a source checkout (Additional module paths ->
# TwinTrack/), the core sits one folder up.
for _folder in (os.path.join(_MODULE_DIR, "TwinTrackCore"), os.path.dirname(_MODULE_DIR)):
    if os.path.isdir(os.path.join(_folder, "TwinTrackLogic")) and _folder not in sys.path:
        sys.path.append(_folder)

COLOR_MAPS = ["Blue-yellow", "Purple-orange", "Grey"]
POLL_INTERVAL_MS = 100


class TwinTrack(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "TwinTrack"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["TwinTrack contributors"]
        self.parent.helpText = (
            "Runs a pancreatic-tumour segmentation ensemble on the selected CT and calibrates its "
            "probability to the mean human response: the fraction of expert annotators expected to "
            "label each voxel tumour. Review it with sliders that read in annotators and millilitres.")
        self.parent.acknowledgementText = (
            "Method: TwinTrack (arXiv 2604.15950), first place in the MICCAI 2025 CURVAS-PDACVI challenge.")
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    """The demo phantom in the Sample Data module: generated locally, no download.

    The button generates the CT straight into the scene; a copy written once
    into Slicer's cache serves SampleData.downloadSample("TwinTrackPhantom").
    """
    import pathlib

    import SampleData
    from TwinTrackLib import sampledata

    cached = pathlib.Path(slicer.app.cachePath) / "TwinTrack" / f"{sampledata.SAMPLE_NAME}.nrrd"
    if not cached.exists():
        sampledata.write_demo_phantom(cached)

    def load(source=None):
        node = sampledata.load_demo_phantom(slicer.mrmlScene)
        slicer.util.setSliceViewerLayers(background=node, fit=True)
        return node

    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category=sampledata.CATEGORY, sampleName=sampledata.SAMPLE_NAME,
        uris=cached.as_uri(), fileNames=cached.name, nodeNames=sampledata.SAMPLE_NAME,
        loadFileType="VolumeFile", customDownloader=load,
        thumbnailFileName=os.path.join(_MODULE_DIR, "Resources", "Icons", "TwinTrack.png"))


@parameterNodeWrapper
class TwinTrackParameterNode:
    inputVolume: slicer.vtkMRMLScalarVolumeNode
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"
    agreementLevel: Annotated[float, WithinRange(0, 100)] = 50.0
    rangeMode: bool = False
    rangeLow: Annotated[float, WithinRange(0, 100)] = 20.0
    rangeHigh: Annotated[float, WithinRange(0, 100)] = 80.0
    opacity: Annotated[float, WithinRange(0, 1)] = 0.7
    colorMap: Annotated[str, Choice(COLOR_MAPS)] = COLOR_MAPS[0]
    showUncalibrated: bool = False
    contourLevels: str = "20, 50, 80"


class TwinTrackWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None
        self._jobKind = None
        self._jobInput = None  # (CT node, contour levels) the running inference was started with
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self._pollJob)

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/TwinTrack.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = TwinTrackModuleLogic()

        self.ui.progressBar.hide()
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.segmentButton.connect("clicked(bool)", self.onSegmentButton)
        self.ui.fitButton.connect("clicked(bool)", self.onFitButton)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def cleanup(self):
        self._cancelJob()
        self._timer.stop()  # the widget is going: nothing left to update
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterModified)

    def onSceneStartClose(self, caller, event):
        self._cancelJob()
        self.logic.agreement = None
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            volume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if volume and volume.GetAttribute("TwinTrack.Output") != "1":
                self._parameterNode.inputVolume = volume

    def setParameterNode(self, inputParameterNode):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterModified)
            self._onParameterModified()

    # --- review: display properties and lookups only --------------------

    def _onParameterModified(self, caller=None, event=None):
        node = self._parameterNode
        # While a job runs only its own button (now Cancel) is live: the other
        # one would otherwise cancel a job it does not name.
        self.ui.applyButton.enabled = (self._jobKind == "inference" if self._job is not None
                                       else bool(node and node.inputVolume))
        self.ui.fitButton.enabled = self._job is None or self._jobKind == "fit"
        agreement = self.logic.agreement
        if agreement is not None and agreement.calibrated_node.GetScene() is None:
            agreement = self.logic.agreement = None  # the user deleted the result's nodes
        self.ui.reviewCollapsibleButton.enabled = agreement is not None
        self.ui.rangeLowSlider.enabled = self.ui.rangeHighSlider.enabled = bool(node and node.rangeMode)
        if agreement is None or node is None:
            return
        agreement.set_level(node.agreementLevel / 100.0)
        agreement.set_range(node.rangeLow / 100.0 if node.rangeMode else None, node.rangeHigh / 100.0)
        agreement.set_opacity(node.opacity)
        if agreement.color_map != node.colorMap:
            agreement.set_color_map(node.colorMap)
        if agreement.uncalibrated != node.showUncalibrated:
            agreement.show_uncalibrated(node.showUncalibrated)
        texts = agreement.readouts()
        self.ui.levelReadoutLabel.text = texts["level"]
        self.ui.bandReadoutLabel.text = texts["band"]
        self.ui.expectedVolumeLabel.text = texts["expected"]

    def onSegmentButton(self):
        if self.logic.agreement is not None:
            self.logic.agreement.add_segment_at_level()

    # --- long work: Apply turns into Cancel --------------------------------

    def onApplyButton(self):
        if self._job is not None:
            self._cancelJob()
            return
        from TwinTrackLib.segmentation import parse_levels

        node = self._parameterNode
        with slicer.util.tryWithErrorDisplay("TwinTrack could not start.", waitCursor=True):
            # Checked now, not after the run: a typo would otherwise discard its result.
            contourLevels = parse_levels(node.contourLevels)
            if not self.logic.ensureOnnxRuntime(node.device):
                return
            calibrator = self.ui.calibratorPathLineEdit.currentPath or None
            work = self.logic.inferenceWork(node.inputVolume, node.device, calibrator)
            # The result lies on this CT's grid, whatever the selector shows when it is done.
            self._jobInput = (node.inputVolume, contourLevels)
            self._startJob(work, "inference")

    def onFitButton(self):
        if self._job is not None:
            self._cancelJob()
            return
        cohort = self.ui.cohortPathLineEdit.currentPath
        output = self.ui.calibratorOutputPathLineEdit.currentPath
        if not cohort or not output:
            slicer.util.errorDisplay("Choose the cohort folder (case folders with image.nii.gz and "
                                     "annotation_1..K.nii.gz) and where to save the calibrator JSON.")
            return
        with slicer.util.tryWithErrorDisplay("TwinTrack could not start fitting.", waitCursor=True):
            if not self.logic.ensureOnnxRuntime(self._parameterNode.device):
                return
            self._startJob(self.logic.calibrationWork(cohort, output, self._parameterNode.device), "fit")

    def _startJob(self, work, kind):
        from TwinTrackLogic.jobs import BackgroundJob

        self._job, self._jobKind = BackgroundJob(work, f"TwinTrack {kind}").start(), kind
        button = self.ui.applyButton if kind == "inference" else self.ui.fitButton
        button.text = "Cancel"
        self.ui.progressBar.value = 0
        self.ui.progressBar.show()
        self._timer.start()
        self._onParameterModified()

    def _cancelJob(self):
        if self._job is not None:
            self._job.cancel()
            self.ui.statusLabel.text = "Cancelling..."

    def _pollJob(self):
        from TwinTrackLogic import jobs

        fraction, message, outcome = self._job.poll()
        self.ui.progressBar.value = int(round(fraction * 100))
        self.ui.statusLabel.text = message
        if outcome is None:
            return
        self._timer.stop()
        kind, self._job, self._jobKind = self._jobKind, None, None
        self.ui.applyButton.text = "Apply"
        self.ui.fitButton.text = "Fit calibrator"
        self.ui.progressBar.hide()
        if outcome.status == jobs.DONE:
            self._onJobDone(kind, outcome.value)
        elif outcome.status == jobs.CANCELLED:
            self.ui.statusLabel.text = "Cancelled; nothing was added to the scene."
        else:
            self.ui.statusLabel.text = "Failed: see the message."
            slicer.util.errorDisplay(outcome.message, detailedText=outcome.details)  # empty: no details box
        self._onParameterModified()

    def _onJobDone(self, kind, value):
        node = self._parameterNode
        if kind == "fit":
            self.ui.calibratorPathLineEdit.currentPath = self.ui.calibratorOutputPathLineEdit.currentPath
            skipped = "".join(f" Skipped {name}: {message}" for name, message in value.failures)
            self.ui.statusLabel.text = (f"Calibrator fitted on {len(value.used)} case(s): ECE against MHR "
                                        f"{value.ece_before:.3f} before, {value.ece_after:.3f} after.{skipped} "
                                        "It will be used for the next run.")
            return
        (ctNode, contourLevels), self._jobInput = self._jobInput, None
        if ctNode.GetScene() is None:
            self.ui.statusLabel.text = ("The input CT was deleted during the run; nothing was added. "
                                        "Select a CT and press Apply again.")
            return
        with slicer.util.tryWithErrorDisplay("TwinTrack could not show the result.", waitCursor=True):
            self.logic.showResult(ctNode, value, node.agreementLevel / 100.0, node.opacity,
                                  node.colorMap, contourLevels)
            self.ui.statusLabel.text = f"Done: agreement with {value.raters} annotators."


class TwinTrackModuleLogic(ScriptedLoadableModuleLogic):
    """Scene-level logic; named so it does not shadow the TwinTrackLogic core package."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self.agreement = None

    def getParameterNode(self):
        return TwinTrackParameterNode(super().getParameterNode())

    @staticmethod
    def ensureOnnxRuntime(device: str) -> bool:
        """ONNX Runtime is installed on first use, with the user's consent."""
        try:
            import onnxruntime  # noqa: F401
            return True
        except ImportError:
            pass
        package = "onnxruntime-gpu" if device == "cuda" else "onnxruntime"
        if not slicer.util.confirmOkCancelDisplay(
                f"TwinTrack runs its networks with ONNX Runtime (no PyTorch needed), which is not "
                f"installed in Slicer's Python yet.\n\nInstall '{package}' now? It is downloaded from "
                "the Python Package Index (tens of MB) and installed once."):
            return False
        slicer.util.pip_install(package)
        import onnxruntime  # noqa: F401
        return True

    @staticmethod
    def inferenceWork(volumeNode, device: str, calibratorPath: Optional[str] = None):
        from pathlib import Path

        from TwinTrackLogic.jobs import ensemble_job
        from TwinTrackLib.volumes import volume_from_node

        volume = volume_from_node(volumeNode)  # copied on the main thread, before the worker starts
        return ensemble_job(volume, calibrator_path=Path(calibratorPath) if calibratorPath else None,
                             device=device)

    @staticmethod
    def calibrationWork(cohortFolder: str, outputPath: str, device: str):
        from pathlib import Path

        from TwinTrackLogic.jobs import calibration_job

        return calibration_job(Path(cohortFolder), Path(outputPath), device=device)

    def showResult(self, ctNode, result, level: float, opacity: float, colorMap: str, contourLevels):
        """Result nodes on ``ctNode``'s grid; levels and ``contourLevels`` are fractions in [0, 1]."""
        from TwinTrackLib.outputs import AgreementScene

        self.agreement = AgreementScene(slicer.mrmlScene, ctNode, result, contour_levels=contourLevels,
                                        color_map=colorMap, level=level, opacity=opacity)
        slicer.modules.plots.logic().ShowChartInLayout(self.agreement.chart)
        return self.agreement


class TwinTrackTest(ScriptedLoadableModuleTest):
    """Runs the full pipeline on the sample phantom: the same scenario pytest
    runs headless (Testing/test_scene_workflow.py)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_TwinTrack_full_pipeline()

    def test_TwinTrack_full_pipeline(self):
        from TwinTrackLib.scenario import run_scenario

        if not TwinTrackModuleLogic.ensureOnnxRuntime("auto"):
            self.skipTest("ONNX Runtime is not installed")
        self.delayDisplay("Running TwinTrack on the demo phantom")
        outcome = run_scenario(slicer.mrmlScene)
        self.assertGreater(outcome.result.calibrated_curve.expected_volume_ml, 0.0)
        self.delayDisplay("Test passed: " + outcome.agreement.readouts()["level"])
