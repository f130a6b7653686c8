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
        if member in ("connect", "click", "hide", "show", "setCurrentNode", "appendPlainText", "setItem", "item"):
            return getattr(self, "_" + member)
        return self._state["values"].get(member)

    def __setattr__(self, member, value):
        self._check(member)
        wrapper = self._state.get("wrapper")
        if wrapper is not None and member == BINDINGS.get(self._state["class"]):
            # The user's edit: the parameterNodeWrapper's connector writes it to the node, which
            # validates it and pushes it back to every bound widget.
            setattr(wrapper, self._state["parameter"], value)
            return
        self._state["values"][member] = value

    def _setCurrentNode(self, node):
        self.currentNode = node

    def _appendPlainText(self, text):
        self._state["values"]["plainText"] = "\n".join(filter(None, [self._state["values"].get("plainText"), text]))

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
            for widget in vars(ui).values():
                if widget._state["parameter"] in fields:
                    widget._state["wrapper"] = self
            self._push()
            return tag

        def disconnectGui(self, tag):
            ui = self._guis.pop(tag, None)
            for widget in vars(ui).values() if ui is not None else ():
                widget._state.pop("wrapper", None)

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
        self.slicerRevisionUserSettingsFilePath = str(Path(cache_path).parent / "settings" / "Slicer-34045.ini")
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


# --- PythonSlicer: CTKAppLauncher starting python-real as its child ----------------------
#
# Slicer's PythonSlicer is not Python: it is CTKAppLauncher renamed (Slicer main @583e9b3
# CMake/SlicerBlockInstallPython.cmake:129-141), configured to launch python-real (:99-105,
# SuperBuild/python_configure_python_launcher.cmake:266-278) with the splash screen disabled
# (:248). CTKAppLauncher (commontk/AppLauncher @dcb7a7e, Base/ctkAppLauncher.cpp) then
# - builds the environment: the settings' variables set, its path variables *prepended* to what
#   the caller had, APPLAUNCHER_LEVEL counted up (:500-561; ctkAppLauncherEnvironment.cpp:126-150);
# - with no splash, forwards stdout and stderr (ForwardedChannels, :672-680) and stdin
#   (ForwardedInputChannel, :682-685; ctkInteractiveProcess dup2s its stdin clone, :35-61):
#   the child holds the same pipes the caller gave the launcher;
# - starts python-real with QProcess::start, i.e. as its CHILD, in the launcher's own process
#   group (:711-714; the detached start, :723, is not used), and waits in its event loop;
# - exits with the child's exit code (:743-745); a child that crashed or was killed is reported
#   as "error: [python-real] exit abnormally - Report the problem." and exit code 1 (:747-751, :91-94).
# A SIGTERM or SIGKILL ends the launcher alone: Qt installs no handler that forwards it.
# The stand-in below does the same in Python (it cannot exec: exec is what hid the N1 bug).

LAUNCHER_TEMPLATE = """#!{python}
# Stand-in of Slicer's PythonSlicer (CTKAppLauncher): see Testing/slicer_app_stand_in.py.
import os
import signal
import subprocess
import sys

APPLICATION = {python!r}  # python-real
LAUNCHER_DIR = os.path.dirname(os.path.abspath(__file__))

signal.signal(signal.SIGINT, signal.SIG_DFL)  # a C++ launcher has no KeyboardInterrupt


def prepend(env, name, paths):
    if env.get(name):
        paths = paths + [env[name]]
    env[name] = os.pathsep.join(paths)


env = dict(os.environ)
level = int(env.get("APPLAUNCHER_LEVEL", "0")) + 1
env["APPLAUNCHER_LEVEL"] = str(level)
for name in ("PATH", "PYTHONPATH"):
    if name in os.environ:
        env["APPLAUNCHER_%d_%s" % (level - 1, name)] = os.environ[name]
env["PYTHONNOUSERSITE"] = "1"  # ENVVARS_INSTALLED (PYTHONHOME left out: the venv finds its own)
env["PIP_REQUIRE_VIRTUALENV"] = "0"
prepend(env, "PATH", [LAUNCHER_DIR])
prepend(env, "PYTHONPATH", [os.path.join(LAUNCHER_DIR, "Python")])
child = subprocess.Popen([APPLICATION] + sys.argv[1:], env=env)  # stdin/stdout/stderr inherited
code = child.wait()
if code < 0:
    sys.stderr.write("error: [%s] exit abnormally - Report the problem.\\n" % APPLICATION)
    sys.exit(1)
sys.exit(code)
"""


def write_python_launcher(bin_dir) -> Path:
    """``bin_dir/PythonSlicer``: a launcher that starts this Python as its child, as Slicer's does."""
    bin_dir = Path(bin_dir)
    bin_dir.mkdir(parents=True, exist_ok=True)
    launcher = bin_dir / "PythonSlicer"
    launcher.write_text(LAUNCHER_TEMPLATE.format(python=sys.executable))
    launcher.chmod(0o755)
    return launcher


def install(monkeypatch, scene, cache_path, version=(5, 10)):
    """Put the stand-ins where TwinTrack.py looks; returns (slicer, imported TwinTrack module)."""
    import slicer

    app = Application(cache_path, version)
    home = Path(cache_path).parent / "slicer-home"
    write_python_launcher(home / "bin")
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
    from TwinTrackLib.volumes import add_volume
    from TwinTrackLogic.io import read_image

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
