"""A stand-in for the parts of the Slicer application that TwinTrack.py touches, so its widget,
logic and self-test run headless on real MRML (slicer-core) with the real presenter and worker.

Stand-ins, not Slicer: widgets are strict records built from the .ui (an attribute the code
uses must be one :data:`test_module_static.ALLOWED_MEMBERS` allows for the widget's class, so
a typo fails here), the parameter node wrapper stores fields in a real
``vtkMRMLScriptedModuleNode`` and pushes them to the bound widgets, the event loop runs due
QTimers. What only real Slicer can show (PythonQt, Qt layouts, the parameterNodeWrapper's own
connectors) stays for the self-test inside Slicer.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import time
import types
import typing
import unittest
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from test_module_static import ALLOWED_MEMBERS, MODULE, UI

BINDINGS = {"QComboBox": "currentText", "QCheckBox": "checked", "QLineEdit": "text",
            "ctkSliderWidget": "value", "qMRMLNodeComboBox": "currentNode"}


class StandInWidget:
    def __init__(self, name: str, widget_class: str, parameter):
        object.__setattr__(self, "_state", {"name": name, "class": widget_class, "parameter": parameter,
                                            "slots": {}, "values": {"enabled": True, "visible": True,
                                                                   "text": "", "value": 0, "currentPath": ""}})

    def _check(self, member):
        widget_class = self._state["class"]
        if member not in ALLOWED_MEMBERS.get(widget_class, set()):
            raise AttributeError(f"{widget_class} {self._state['name']} has no member {member!r} (stand-in)")

    def __getattr__(self, member):
        self._check(member)
        if member in ("connect", "click", "hide", "show", "setItem", "item"):
            return getattr(self, "_" + member)
        return self._state["values"].get(member)

    def __setattr__(self, member, value):
        self._check(member)
        self._state["values"][member] = value

    def _connect(self, signal, slot):
        self._state["slots"].setdefault(signal, []).append(slot)

    def _click(self):
        if self._state["values"]["enabled"]:
            for slot in self._state["slots"].get("clicked(bool)", []):
                slot()  # PythonQt drops the arguments a slot does not take

    def _setItem(self, row, column, item):  # QTableWidget
        self._state["values"].setdefault("items", {})[(row, column)] = item

    def _item(self, row, column):
        return self._state["values"].get("items", {}).get((row, column))

    def _hide(self):
        self._state["values"]["visible"] = False

    def _show(self):
        self._state["values"]["visible"] = True


def load_ui_widgets():
    widgets = {}
    for element in ElementTree.parse(UI).getroot().iter("widget"):
        parameter = element.find("property[@name='SlicerParameterName']/string")
        widgets[element.get("name")] = StandInWidget(element.get("name"), element.get("class"),
                                                     None if parameter is None else parameter.text)
    return widgets


# --- slicer.parameterNodeWrapper --------------------------------------------------------


class Choice:
    def __init__(self, choices):
        self.choices = list(choices)


class WithinRange:
    def __init__(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum


def parameterNodeWrapper(cls):
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {}
    for name, hint in hints.items():
        base, rules = (typing.get_args(hint)[0], typing.get_args(hint)[1:]) \
            if typing.get_origin(hint) is typing.Annotated else (hint, ())
        fields[name] = (base, rules, getattr(cls, name, None))

    class Wrapper:
        def __init__(self, parameterNode):
            object.__setattr__(self, "parameterNode", parameterNode)
            object.__setattr__(self, "_guis", {})
            for name, (base, _, default) in fields.items():
                if isinstance(base, type) and base in (float, bool, str) and not parameterNode.GetParameter(name):
                    parameterNode.SetParameter(name, str(default))

        def __getattr__(self, name):
            base, _, _ = fields[name]
            if base is float:
                return float(self.parameterNode.GetParameter(name))
            if base is bool:
                return self.parameterNode.GetParameter(name) == "True"
            if base is str:
                return self.parameterNode.GetParameter(name)
            return self.parameterNode.GetNodeReference(name)

        def __setattr__(self, name, value):
            base, rules, _ = fields[name]
            for rule in rules:
                if isinstance(rule, Choice) and value not in rule.choices:
                    raise ValueError(f"{name}: {value!r} not in {rule.choices}")
                if isinstance(rule, WithinRange) and not rule.minimum <= value <= rule.maximum:
                    raise ValueError(f"{name}: {value!r} out of range")
            if base in (float, bool, str):
                self.parameterNode.SetParameter(name, str(base(value)))
            else:
                before = self.parameterNode.GetNodeReference(name)
                self.parameterNode.SetNodeReferenceID(name, value.GetID() if value is not None else None)
                if before is not value:
                    self.parameterNode.Modified()
            self._push()

        def _push(self):
            for ui in self._guis.values():
                for widget in vars(ui).values():
                    parameter = widget._state["parameter"]
                    if parameter in fields:
                        widget._state["values"][BINDINGS[widget._state["class"]]] = getattr(self, parameter)

        def connectGui(self, ui):
            tag = len(self._guis) + 1
            self._guis[tag] = ui
            self._push()
            return tag

        def disconnectGui(self, tag):
            self._guis.pop(tag, None)

        def AddObserver(self, *args):
            return self.parameterNode.AddObserver(*args)

        def RemoveObserver(self, tag):
            self.parameterNode.RemoveObserver(tag)

    Wrapper.__name__ = cls.__name__
    return Wrapper


# --- slicer.ScriptedLoadableModule --------------------------------------------------------


class ScriptedLoadableModule:
    def __init__(self, parent):
        self.parent = parent


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None):
        self.parent = parent or types.SimpleNamespace(isEntered=False)
        self.layout = types.SimpleNamespace(addWidget=lambda widget: None)
        self.reloaded = False

    def resourcePath(self, relative):
        return str(MODULE.parent / "Resources" / relative)

    def setup(self):
        pass

    def onReload(self):
        self.reloaded = True


class ScriptedLoadableModuleLogic:
    def __init__(self):
        # As Slicer's: the class name without "Logic" (which is what F16 is about).
        self.moduleName = type(self).__name__.replace("Logic", "")

    def getParameterNode(self):
        scene = sys.modules["slicer"].mrmlScene
        node = scene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
        if node is None:
            node = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
            node.SetName(self.moduleName)
            node.SetSingletonTag(self.moduleName)
            node.SetAttribute("ModuleName", self.moduleName)
        return node


class ScriptedLoadableModuleTest(unittest.TestCase):
    def delayDisplay(self, message, msec=None):
        sys.modules["slicer"].app.log.append(("delayDisplay", message))


# --- the application -------------------------------------------------------------------


class QTableWidgetItem:
    def __init__(self, text=""):
        self._text = str(text)

    def text(self):
        return self._text


class QTimer:
    active: "typing.List[QTimer]" = []

    def __init__(self):
        self.interval_s, self._slot, self._due = 0.0, None, None

    def setInterval(self, milliseconds):
        self.interval_s = milliseconds / 1000.0

    def connect(self, signal, slot):
        assert signal == "timeout()"
        self._slot = slot

    def start(self):
        self._due = time.monotonic() + self.interval_s
        if self not in QTimer.active:
            QTimer.active.append(self)

    def stop(self):
        self._due = None
        if self in QTimer.active:
            QTimer.active.remove(self)

    def isActive(self):
        return self._due is not None


class Application:
    def __init__(self, cache_path, version=(5, 10)):
        self.majorVersion, self.minorVersion = version
        self.cachePath = str(cache_path)
        self.slicerHome = None
        self.log = []

    def testingEnabled(self):
        return True

    def connect(self, signal, slot):
        self.log.append(("connect", signal))

    def processEvents(self):
        now = time.monotonic()
        for timer in list(QTimer.active):
            if timer._due is not None and timer._due <= now:
                timer._due = now + timer.interval_s
                timer._slot()


class Modules:
    """slicer.modules: the module widgets and the Plots logic."""

    def __init__(self, app):
        self.charts = []
        self._app = app
        self.plots = types.SimpleNamespace(logic=lambda: types.SimpleNamespace(ShowChartInLayout=self.charts.append))


def install(monkeypatch, scene, cache_path, version=(5, 10)):
    """Put the stand-ins where TwinTrack.py looks; returns (slicer, imported TwinTrack module)."""
    import slicer

    app = Application(cache_path, version)
    # <Slicer home>/bin/PythonSlicer: a launcher of this Python, as Slicer's launches its own.
    home = Path(cache_path).parent / "slicer-home"
    (home / "bin").mkdir(parents=True, exist_ok=True)
    launcher = home / "bin" / "PythonSlicer"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    launcher.chmod(0o755)
    app.slicerHome = str(home)
    modules = Modules(app)
    monkeypatch.setattr(slicer, "app", app, raising=False)
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    monkeypatch.setattr(slicer, "modules", modules, raising=False)
    monkeypatch.setitem(sys.modules, "qt", types.SimpleNamespace(QTimer=QTimer, QTableWidgetItem=QTableWidgetItem))
    pnw = types.ModuleType("slicer.parameterNodeWrapper")
    pnw.Choice, pnw.WithinRange, pnw.parameterNodeWrapper = Choice, WithinRange, parameterNodeWrapper
    monkeypatch.setitem(sys.modules, "slicer.parameterNodeWrapper", pnw)
    slm = types.ModuleType("slicer.ScriptedLoadableModule")
    for cls in (ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleLogic,
                ScriptedLoadableModuleTest):
        setattr(slm, cls.__name__, cls)
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", slm)

    errors = []
    app.errors = errors
    util = slicer.util

    def load_ui(path):
        assert Path(path) == UI
        return types.SimpleNamespace(setMRMLScene=lambda s: app.log.append(("setMRMLScene", s)))

    @contextlib.contextmanager
    def try_with_error_display(message=None, show=True, waitCursor=False):
        try:
            yield
        except Exception as error:
            errors.append((f"{message} {error}", {}))
            raise

    def select_module(name):
        current = getattr(modules, "_selected", None)
        if current == name:
            return
        if current == "TwinTrack":
            modules.TwinTrackWidget.parent.isEntered = False
            modules.TwinTrackWidget.exit()
        modules._selected = name
        if name == "TwinTrack":
            modules.TwinTrackWidget.parent.isEntered = True
            modules.TwinTrackWidget.enter()

    monkeypatch.setattr(util, "loadUI", load_ui)
    monkeypatch.setattr(util, "childWidgetVariables", lambda widget: types.SimpleNamespace(**load_ui_widgets()))
    monkeypatch.setattr(util, "errorDisplay", lambda text, **kwargs: errors.append((text, kwargs)))
    monkeypatch.setattr(util, "confirmOkCancelDisplay", lambda *a, **k: True)  # never asked in testing mode
    monkeypatch.setattr(util, "tryWithErrorDisplay", try_with_error_display)
    monkeypatch.setattr(util, "setSliceViewerLayers", lambda **kwargs: None)
    monkeypatch.setattr(util, "selectModule", select_module)

    spec = importlib.util.spec_from_file_location("TwinTrack", MODULE)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "TwinTrack", module)
    spec.loader.exec_module(module)
    return slicer, module


def install_sample_data(monkeypatch, scene):
    """SampleData: registration recorded; downloadSample reads the registered file, as Slicer's does."""
    from TwinTrackLogic.io import read_image
    from TwinTrackLib.volumes import add_volume

    sources = {}

    class SampleDataLogic:
        @staticmethod
        def registerCustomSampleDataSource(**kwargs):
            sources[kwargs["sampleName"]] = kwargs

    def download_sample(name):
        source = sources[name]
        path = Path(source["uris"].replace("file://", ""))
        return add_volume(scene, source["nodeNames"], read_image(path))

    module = types.SimpleNamespace(SampleDataLogic=SampleDataLogic, downloadSample=download_sample)
    monkeypatch.setitem(sys.modules, "SampleData", module)
    return sources
