"""TwinTrack.py itself, run on a stand-in of the Slicer application (Testing/slicer_app_stand_in.py):
the module class, the sample-data registration, the widget forwarding to the presenter, and the
self-test TwinTrackTest driving the widget with the real worker process on real MRML."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from scene_fixtures import mrml  # noqa: F401  (fixture)

import slicer_app_stand_in as stand_in
from headless import HeadlessSliceView


@pytest.fixture
def module(monkeypatch, mrml, tmp_path):
    slicer, twintrack = stand_in.install(monkeypatch, mrml.scene, tmp_path / "cache")
    sources = stand_in.install_sample_data(monkeypatch, mrml.scene)
    # Slicer's layout has slice views; their composite nodes are what the overlay check reads.
    views = [HeadlessSliceView(mrml.scene, mrml.app, name) for name in ("Red", "Yellow", "Green")]
    twintrack.TwinTrack(SimpleNamespace())
    twintrack.registerSampleData()
    widget = twintrack.TwinTrackWidget(SimpleNamespace(isEntered=False))
    widget.setup()
    slicer.modules.TwinTrackWidget = widget
    yield SimpleNamespace(slicer=slicer, twintrack=twintrack, widget=widget, sources=sources,
                                         views=views, cache=tmp_path / "cache")
    widget.cleanup()
    stand_in.QTimer.active.clear()


def test_an_older_slicer_is_refused_at_load_with_a_message(monkeypatch, mrml, tmp_path):
    _, twintrack = stand_in.install(monkeypatch, mrml.scene, tmp_path, version=(5, 8))
    with pytest.raises(RuntimeError, match=r"needs 3D Slicer 5\.10 or later.*this is Slicer 5\.8"):
        twintrack.TwinTrack(SimpleNamespace())


def test_startup_registers_the_sample_without_writing_it(module):
    source = module.sources["TwinTrackPhantom"]
    assert source["loadFileTypes"] == "VolumeFile" and "loadFileType" not in source
    assert callable(source["customDownloader"])
    assert not (module.cache / "TwinTrack").exists(), "nothing heavy at startup: the phantom is written on first use"
    module.slicer.util.selectModule("TwinTrack")
    module.slicer.util.selectModule("Data")
    module.slicer.util.selectModule("TwinTrack")
    phantom = module.cache / "TwinTrack" / "TwinTrackPhantom.nrrd"
    assert module.widget.parent.isEntered is True and phantom.is_file()
    phantom.unlink()  # Settings -> Cache -> Clear cache
    module.slicer.util.selectModule("Data")
    module.slicer.util.selectModule("TwinTrack")
    node = module.twintrack.SlicerWidgetDriver(module.widget).load_phantom()
    assert phantom.is_file() and node.GetImageData().GetDimensions() == (96, 96, 48)


def test_the_parameter_node_is_named_after_the_module(module):
    node = module.widget.logic.getParameterNode().parameterNode
    assert node.GetName() == "TwinTrack" and node.GetAttribute("ModuleName") == "TwinTrack"


def test_reentering_binds_once_and_keeps_the_choices(module):
    widget, util = module.widget, module.slicer.util
    util.selectModule("TwinTrack")
    widget._parameterNode.device = "cpu"
    widget._parameterNode.colorMap = "Grey"
    bound = widget._parameterNode
    for _ in range(3):
        util.selectModule("Data")
        util.selectModule("TwinTrack")
    assert widget._parameterNode is bound and len(bound._guis) == 1, "re-entering stacked GUI bindings"
    assert (bound.device, bound.colorMap) == ("cpu", "Grey")
    assert widget.ui.deviceComboBox.currentText == "cpu"


def test_a_typo_in_the_contour_levels_is_one_message_without_a_traceback(module):
    widget, util = module.widget, module.slicer.util
    util.selectModule("TwinTrack")
    widget._parameterNode.inputVolume = module.twintrack.SlicerWidgetDriver(widget).load_phantom()
    widget._parameterNode.contourLevels = "20, fifty"
    widget.ui.applyButton.click()
    assert len(module.slicer.app.errors) == 1
    text, options = module.slicer.app.errors[0]
    assert "fifty" in text and options == {}, "an empty detailedText widens the dialog"
    assert widget.presenter.job is None and widget.ui.applyButton.text == "Apply"


@pytest.mark.skipif(os.name == "nt", reason="the stand-in PythonSlicer is a script with a #! line")
@pytest.mark.slow  # over ~4 s: left out of the fast loop
def test_the_self_test_drives_the_widget_with_the_worker_process(module, monkeypatch):
    pytest.importorskip("onnxruntime")
    from TwinTrackLogic.worker import process as worker

    assert worker.python_executable() == str(Path(module.slicer.app.slicerHome) / "bin" / "PythonSlicer")
    statuses = []
    original = module.widget._show
    monkeypatch.setattr(module.widget, "_show", lambda state: statuses.append(state.status) or original(state))
    test = module.twintrack.TwinTrackTest("test_TwinTrack_widget_walkthrough")
    test.runTest()
    assert module.slicer.app.errors == []
    assert module.slicer.modules.charts, "the chart was not put in the layout"
    assert any("Ran on the self-test's stand-in" in t for t in statuses) and any("Ran on the CPU" in t for t in statuses)
    passed = [message for kind, message in module.slicer.app.log
              if kind == "delayDisplay" and message.startswith("Test passed")]
    assert len(passed) == 2 and "stand-in" in passed[0] and "real ensemble" in passed[1], passed
    widget = module.widget
    assert widget.ui.warningsLabel.visible is False, "no warnings on the demo phantom, no banner"
    assert not widget._timer.isActive(), "the poll timer still runs after the job"


def test_the_self_test_passes_without_onnx_runtime_with_the_stand_in_ensemble(module, monkeypatch):
    """N8/F4: Slicer's extension factory has no ONNX Runtime and may not install it."""
    import sys

    from TwinTrackLogic import runtime_check

    monkeypatch.setattr(runtime_check, "_installed", lambda name: False)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # an import here fails too
    # ...and in the worker: PythonSlicer puts <bin>/Python first on its PYTHONPATH.
    blocker = Path(module.slicer.app.slicerHome) / "bin" / "Python" / "onnxruntime"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text('raise ImportError("no onnxruntime on the extension factory")\n')
    statuses = []
    original = module.widget._show

    def show(state):
        statuses.append(state.status)
        original(state)

    monkeypatch.setattr(module.widget, "_show", show)
    test = module.twintrack.TwinTrackTest("test_TwinTrack_widget_walkthrough")
    test.runTest()
    assert module.slicer.app.errors == []
    passed = [message for kind, message in module.slicer.app.log
              if kind == "delayDisplay" and message.startswith("Test passed")]
    assert len(passed) == 1 and "stand-in" in passed[0]
    assert any(message.startswith("ONNX Runtime is not installed") for kind, message in module.slicer.app.log
               if kind == "delayDisplay")
    assert any("Ran on the self-test's stand-in ensemble" in status for status in statuses), statuses
    assert module.widget.logic.standInEnsemble is None, "the stand-in must not outlive the self-test"


def test_the_self_test_sets_values_through_the_widgets(module):
    """F7: a value set on a widget must reach the parameter node (the widget -> node half of the bindings)."""
    module.slicer.util.selectModule("TwinTrack")
    driver = module.twintrack.SlicerWidgetDriver(module.widget)
    for name, value in (("colorMap", "Grey"), ("agreementLevel", 65.0), ("contourLevels", "30, 70"),
                        ("rangeMode", True), ("device", "cpu")):
        driver.set(name, value)
        assert getattr(module.widget._parameterNode, name) == value
    assert module.widget.ui.levelSlider.enabled is False, "range mode freezes the level slider"
    with pytest.raises(ValueError):
        driver.set("colorMap", "Rainbow")  # not a choice: the binding refuses it


def test_export_dicom_is_wired_and_its_slicer_calls_never_ask_in_testing_mode(module, monkeypatch):
    import sys
    import types

    widget, logic = module.widget, module.widget.logic
    module.slicer.util.selectModule("TwinTrack")
    assert widget.ui.exportDicomButton.enabled is False, "no result: nothing to export"
    widget.ui.exportDicomButton.click()  # disabled: nothing happens
    assert module.slicer.app.errors == []
    asked = []
    monkeypatch.setattr(module.slicer.util, "confirmOkCancelDisplay", lambda *a, **k: asked.append(a) or True)
    monkeypatch.setattr(module.slicer.util, "pip_install", lambda *a: asked.append(a), raising=False)
    assert logic.installDicomPackages(["highdicom==0.28.2"]) is False and asked == []
    monkeypatch.setattr(module.slicer, "dicomDatabase", None, raising=False)
    assert logic.fileForInstance("1.2.3") == ""
    tags = {("/db/1.2.3.dcm", "0008,0016"): "1.2.840.10008.5.1.4.1.1.30"}
    database = types.SimpleNamespace(isOpen=True, fileForInstance=lambda uid: f"/db/{uid}.dcm" if uid else "",
                                     fileValue=lambda path, tag: tags.get((path, tag), ""))
    monkeypatch.setattr(module.slicer, "dicomDatabase", database, raising=False)
    assert logic.fileForInstance("1.2.3") == "/db/1.2.3.dcm"
    assert logic.sopClassForInstance("1.2.3") == "1.2.840.10008.5.1.4.1.1.30"
    assert logic.sopClassForInstance("") == ""
    calls = []
    utils = types.SimpleNamespace(importDicom=lambda folder, **kw: calls.append((folder, kw)) or True)
    monkeypatch.setitem(sys.modules, "DICOMLib", types.SimpleNamespace(DICOMUtils=utils))
    assert logic.importDicomFolder("/tmp/x") is True
    assert calls == [("/tmp/x", {"copyFiles": True})], "the folder is removed next: the database must copy"
    host = logic.dicomHost()
    assert host.import_folder == logic.importDicomFolder and host.install == logic.installDicomPackages
    assert host.sop_class_for_instance == logic.sopClassForInstance


def test_cuda_on_macos_is_refused_before_anything_is_uninstalled(module, monkeypatch):
    import sys

    calls = []
    monkeypatch.setattr(module.slicer.util, "pip_uninstall", lambda *a: calls.append(a), raising=False)
    monkeypatch.setattr(module.slicer.util, "pip_install", lambda *a: calls.append(a), raising=False)
    monkeypatch.setattr(sys, "platform", "darwin")
    assert module.widget.logic.ensureOnnxRuntime("cuda") is False
    assert calls == [] and "no GPU (CUDA) build for macOS" in module.slicer.app.errors[-1][0]


def test_first_use_load_sample_ct_advanced_collapsed_and_a_log(module):
    """Item 4 of issue 23: a first use that needs no README."""
    import xml.etree.ElementTree as ElementTree

    widget, util = module.widget, module.slicer.util
    util.selectModule("TwinTrack")
    assert widget._parameterNode.inputVolume is None and widget.ui.applyButton.enabled is False
    widget.ui.loadSampleButton.click()
    ct = widget._parameterNode.inputVolume
    assert ct is not None and ct.GetName() == "TwinTrackPhantom" and ct.GetScene() is module.slicer.mrmlScene
    assert widget.ui.applyButton.enabled is True, "a CT is selected: Apply is live"
    labelmap = module.slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "Pancreas label")
    widget._parameterNode.inputVolume = labelmap
    assert widget.ui.applyButton.enabled is False and "is a labelmap" in widget.ui.statusLabel.text
    widget._parameterNode.inputVolume = ct
    widget._parameterNode.contourLevels = "20, fifty"
    widget.ui.applyButton.click()
    log = widget.ui.logTextEdit.plainText
    assert "Error:" in log and "fifty" in log and "Not started" in log
    ui = ElementTree.parse(module.twintrack.os.path.join(module.twintrack._MODULE_DIR, "Resources", "UI",
                                                         "TwinTrack.ui")).getroot()
    advanced = ui.find(".//widget[@name='advancedCollapsibleButton']")
    assert advanced.find("property[@name='collapsed']/bool").text == "true"
    inside = {w.get("name") for w in advanced.iter("widget")}
    assert {"deviceComboBox", "calibratorPathLineEdit", "contourLevelsLineEdit"} <= inside
    assert ui.find(".//widget[@name='logCollapsibleButton']/property[@name='collapsed']/bool").text == "true"
