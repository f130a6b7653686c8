"""The Qt glue checked without Qt: TwinTrack.py against TwinTrack.ui.

Every widget the module code uses exists in the .ui with the expected class;
every parameter the .ui binds exists in the typed parameter node; combo-box
items match the parameter choices; the module file compiles.
"""

import ast
import py_compile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
MODULE = REPOSITORY / "TwinTrack" / "TwinTrack.py"
UI = REPOSITORY / "TwinTrack" / "Resources" / "UI" / "TwinTrack.ui"

# What each widget must be for the way TwinTrack.py uses it.
EXPECTED_CLASSES = {
    "loadSampleButton": "QPushButton", "logTextEdit": "QPlainTextEdit",
    "inputSelector": "qMRMLNodeComboBox",
    "deviceComboBox": "QComboBox",
    "calibratorPathLineEdit": "ctkPathLineEdit",
    "contourLevelsLineEdit": "QLineEdit",
    "applyButton": "QPushButton",
    "progressBar": "QProgressBar",
    "statusLabel": "QLabel",
    "reviewCollapsibleButton": "ctkCollapsibleButton",
    "levelSlider": "ctkSliderWidget",
    "levelReadoutLabel": "QLabel",
    "rangeCheckBox": "QCheckBox",
    "rangeLowSlider": "ctkSliderWidget",
    "rangeHighSlider": "ctkSliderWidget",
    "bandReadoutLabel": "QLabel",
    "expectedVolumeLabel": "QLabel",
    "colorMapComboBox": "QComboBox",
    "opacitySlider": "ctkSliderWidget",
    "uncalibratedCheckBox": "QCheckBox",
    "segmentButton": "QPushButton",
    "cohortPathLineEdit": "ctkPathLineEdit",
    "calibratorOutputPathLineEdit": "ctkPathLineEdit",
    "fitButton": "QPushButton",
    "warningsLabel": "QLabel",
    "centreButton": "QPushButton",
    "exportDicomButton": "QPushButton",
    "involvementTable": "QTableWidget",
    "involvementReadoutLabel": "QLabel",
    "involvementNoteLabel": "QLabel",
    "involvementCentreButton": "QPushButton",
}

# What TwinTrack.py may touch on each widget class (Qt properties through PythonQt, methods,
# signals), as checked against Qt, CTK and Slicer for the supported versions.
ALLOWED_MEMBERS = {
    "QPushButton": {"text", "enabled", "click", "connect"},
    "QLabel": {"text", "visible", "enabled", "hide", "show"},
    "QProgressBar": {"value", "visible", "hide", "show"},
    "ctkPathLineEdit": {"currentPath"},
    "ctkCollapsibleButton": {"enabled", "collapsed"},
    "ctkSliderWidget": {"enabled", "value"},
    "QCheckBox": {"checked", "enabled"},
    "QComboBox": {"currentText", "enabled", "findText", "removeItem"},
    "QLineEdit": {"text"},
    "QPlainTextEdit": {"appendPlainText", "plainText"},
    "qMRMLNodeComboBox": {"currentNode", "setCurrentNode"},
    "QTableWidget": {"enabled", "setItem", "item"},
}
SIGNALS = {"QPushButton": {"clicked(bool)"}}
# Names parameterNodeWrapper reserves for itself (wrapper.py, 5.10 to main).
RESERVED_FIELDS = {"parameterNode", "connectGui", "connectParametersToGui", "disconnectGui", "allParameters",
                   "default", "dataType", "setValue", "getValue", "isCached", "StartModify", "EndModify",
                   "AddObserver", "RemoveObserver", "Modified", "_is_parameter_node_wrapper"}


@pytest.fixture(scope="module")
def ui_widgets():
    root = ElementTree.parse(UI).getroot()
    widgets = {}
    for element in root.iter("widget"):
        name = element.get("name")
        assert name not in widgets, f"widget name {name} appears twice in the .ui"
        parameter = element.find("property[@name='SlicerParameterName']/string")
        items = [item.findtext("property[@name='text']/string") for item in element.findall("item")]
        widgets[name] = {"class": element.get("class"), "parameter": None if parameter is None else parameter.text,
                         "items": items, "element": element}
    return widgets


@pytest.fixture(scope="module")
def module_tree():
    return ast.parse(MODULE.read_text(encoding="utf-8"))


def test_module_file_compiles(tmp_path):
    py_compile.compile(str(MODULE), cfile=str(tmp_path / "TwinTrack.pyc"), doraise=True)


def test_module_has_the_four_scripted_module_classes(module_tree):
    bases = {node.name: [ast.unparse(base) for base in node.bases]
             for node in module_tree.body if isinstance(node, ast.ClassDef)}
    assert bases["TwinTrack"] == ["ScriptedLoadableModule"]
    assert "ScriptedLoadableModuleWidget" in bases["TwinTrackWidget"]
    assert bases["TwinTrackModuleLogic"] == ["ScriptedLoadableModuleLogic"]
    assert bases["TwinTrackTest"] == ["ScriptedLoadableModuleTest"]


def _ui_uses(module_tree):
    """(widget name, member or None, call arguments) for every ``self.ui.X[.m]``, ``ui.X[.m]`` and
    ``self.widget.ui.X[.m]`` in the module."""
    def is_ui(node):
        return (isinstance(node, ast.Name) and node.id == "ui") or \
            (isinstance(node, ast.Attribute) and node.attr == "ui")

    uses = []
    parents = {child: parent for parent in ast.walk(module_tree) for child in ast.iter_child_nodes(parent)}
    for node in ast.walk(module_tree):
        if isinstance(node, ast.Attribute) and is_ui(node.value):
            parent = parents.get(node)
            member = parent.attr if isinstance(parent, ast.Attribute) and parent.value is node else None
            call = parents.get(parent) if member else None
            arguments = call.args if isinstance(call, ast.Call) and call.func is parent else []
            uses.append((node.attr, member, arguments))
    return uses


def test_every_widget_the_code_uses_exists_with_the_expected_class(ui_widgets, module_tree):
    used = {name for name, _, _ in _ui_uses(module_tree)}
    assert used, "the module uses no widgets?"
    unknown = used - set(EXPECTED_CLASSES)
    assert not unknown, f"add the expected class of {sorted(unknown)} to EXPECTED_CLASSES"
    for name in sorted(used):
        assert name in ui_widgets, f"TwinTrack.py uses self.ui.{name}, which the .ui does not have"
        assert ui_widgets[name]["class"] == EXPECTED_CLASSES[name], name


def test_every_widget_member_and_signal_the_code_uses_exists_on_its_class(ui_widgets, module_tree):
    for name, member, arguments in _ui_uses(module_tree):
        widget_class = ui_widgets[name]["class"]
        if member is None:
            continue
        assert member in ALLOWED_MEMBERS[widget_class], f"ui.{name}.{member} on a {widget_class}"
        if member == "connect":
            signal = arguments[0].value
            assert signal in SIGNALS.get(widget_class, set()), f"{widget_class} {name} has no signal {signal}"


def test_connected_slots_exist_on_the_widget(module_tree):
    widget = next(n for n in module_tree.body if isinstance(n, ast.ClassDef) and n.name == "TwinTrackWidget")
    methods = {n.name for n in widget.body if isinstance(n, ast.FunctionDef)}
    for node in ast.walk(widget):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in ("connect", "addObserver"):
            slot = node.args[-1]
            if isinstance(slot, ast.Attribute) and isinstance(slot.value, ast.Name) and slot.value.id == "self":
                assert slot.attr in methods, f"{slot.attr} is connected but not defined"


def test_every_custom_widget_class_is_declared_in_the_ui():
    root = ElementTree.parse(UI).getroot()
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    used = {element.get("class") for element in root.iter("widget")}
    custom = {name for name in used if name.startswith(("ctk", "qMRML", "qSlicer"))}
    assert custom <= declared, f"not declared in <customwidgets>: {custom - declared}"


def _parameter_fields(module_tree):
    for node in module_tree.body:
        if isinstance(node, ast.ClassDef) and any(ast.unparse(d) == "parameterNodeWrapper"
                                                  for d in node.decorator_list):
            return {item.target.id: item for item in node.body if isinstance(item, ast.AnnAssign)}
    raise AssertionError("no @parameterNodeWrapper class in TwinTrack.py")


def test_bound_widgets_match_the_parameter_node(ui_widgets, module_tree):
    """Every field has exactly one bound widget of a class whose connector carries its type."""
    fields = _parameter_fields(module_tree)
    bound = {}
    for name, widget in ui_widgets.items():
        if widget["parameter"]:
            assert widget["parameter"] not in bound, f"{widget['parameter']} is bound twice"
            bound[widget["parameter"]] = name
    assert set(bound) == set(fields), (set(bound) ^ set(fields))
    assert not set(fields) & RESERVED_FIELDS
    for parameter, widget_name in bound.items():
        annotation = ast.unparse(fields[parameter].annotation)
        widget_class = ui_widgets[widget_name]["class"]
        if annotation == "bool":
            expected = "QCheckBox"
        elif "float" in annotation:
            expected = "ctkSliderWidget"
        elif "vtkMRML" in annotation:
            expected = "qMRMLNodeComboBox"
        elif "Choice" in annotation:
            expected = "QComboBox"
        elif annotation == "str":
            expected = "QLineEdit"
        else:
            raise AssertionError(f"no supported widget for {parameter}: {annotation}")
        assert widget_class == expected, f"{parameter} ({annotation}) is bound to a {widget_class}"


def test_slider_ranges_match_the_fields_ranges(ui_widgets, module_tree):
    for parameter, item in _parameter_fields(module_tree).items():
        annotation = item.annotation
        text = ast.unparse(annotation)
        if "WithinRange" not in text:
            continue
        call = next(n for n in ast.walk(annotation) if isinstance(n, ast.Call) and ast.unparse(n.func) == "WithinRange")
        low, high = (ast.literal_eval(a) for a in call.args)
        widget = next(w for w in ui_widgets.values() if w["parameter"] == parameter)["element"]
        assert float(widget.findtext("property[@name='minimum']/double")) == low, parameter
        assert float(widget.findtext("property[@name='maximum']/double")) == high, parameter
        default = ast.literal_eval(item.value)
        assert low <= default <= high, parameter


def test_combo_box_items_are_the_parameter_choices(ui_widgets, module_tree):
    fields = _parameter_fields(module_tree)
    assert ui_widgets["deviceComboBox"]["items"] == ["auto", "cpu", "cuda"]
    assert "Choice([\"auto\", \"cpu\", \"cuda\"])" in ast.unparse(fields["device"].annotation).replace("'", '"')
    color_maps = next(node.value for node in module_tree.body if isinstance(node, ast.Assign)
                      and getattr(node.targets[0], "id", "") == "COLOR_MAPS")
    names = [element.value for element in color_maps.elts]
    assert ui_widgets["colorMapComboBox"]["items"] == names

    from TwinTrackLogic.review.colormaps import COLOR_MAPS

    assert names == list(COLOR_MAPS)


def test_level_slider_covers_1_to_100_percent(ui_widgets):
    # Not 0: at 0 % every voxel of the CT qualifies (finding N10 of the second audit).
    element = ui_widgets["levelSlider"]["element"]
    assert float(element.findtext("property[@name='minimum']/double")) == 1.0
    assert float(element.findtext("property[@name='maximum']/double")) == 100.0


def test_resources_the_module_loads_exist():
    assert UI.is_file()
    assert (REPOSITORY / "TwinTrack" / "Resources" / "Icons" / "TwinTrack.png").is_file()
    assert (REPOSITORY / "Resources" / "TwinTrack.png").is_file()
    header = (REPOSITORY / "TwinTrack" / "Resources" / "Icons" / "TwinTrack.png").read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(header[16:20], "big") == 128 and int.from_bytes(header[20:24], "big") == 128


def test_scene_layer_imports_no_qt_and_no_application():
    """TwinTrackLib must run headless and under a browser front end."""
    for path in (REPOSITORY / "TwinTrack" / "TwinTrackLib").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [alias.name for alias in node.names] + [getattr(node, "module", "") or ""]
                assert not any(n.split(".")[0] in {"qt", "ctk", "PythonQt", "slicer.app"} for n in names), path
            if isinstance(node, ast.Attribute) and node.attr in {"app", "modules"} \
                    and isinstance(node.value, ast.Name) and node.value.id == "slicer":
                raise AssertionError(f"{path.name} uses slicer.{node.attr}")
            if isinstance(node, ast.Attribute) and node.attr == "mrmlScene" \
                    and isinstance(node.value, ast.Name) and node.value.id == "slicer":
                raise AssertionError(f"{path.name} uses the global slicer.mrmlScene; take the scene as a parameter")


def test_extension_catalog_entry_has_the_schema_fields():
    import json

    entry = json.loads((REPOSITORY / "TwinTrack.json").read_text(encoding="utf-8"))
    assert entry["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.1.json#")
    allowed = {"$schema", "build_dependencies", "build_subdirectory", "category", "scm_revision",
               "scm_type", "scm_url", "tier", "enabled"}
    assert set(entry) <= allowed, "the catalog schema allows no other properties"
    assert {"$schema", "category", "scm_url"} <= set(entry)
    s4ext = dict(line.split(" ", 1) for line in (REPOSITORY / "extension.s4ext").read_text().splitlines()
                 if line and not line.startswith("#"))
    assert s4ext["scmurl"] == entry["scm_url"] and s4ext["category"] == entry["category"]


def test_cmake_installs_every_scene_layer_file():
    cmake = (REPOSITORY / "TwinTrack" / "CMakeLists.txt").read_text()
    for path in sorted((REPOSITORY / "TwinTrack" / "TwinTrackLib").glob("*.py")):
        assert f"TwinTrackLib/{path.name}" in cmake, f"{path.name} is not installed with the module"
    assert "TwinTrackLogic/*.py" in cmake and "Resources/DemoBundle/*" in cmake


def _function(module_tree, class_name, name):
    cls = next(n for n in module_tree.body if isinstance(n, ast.ClassDef) and n.name == class_name)
    return next((n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == name), None)


def test_the_module_refuses_slicer_older_than_5_10_with_a_message(module_tree):
    function = next(n for n in module_tree.body if isinstance(n, ast.FunctionDef)
                    and n.name == "unsupportedSlicerMessage")
    constants = [n for n in module_tree.body if isinstance(n, ast.Assign)
                 and getattr(n.targets[0], "id", "").startswith("MINIMUM_")]
    from typing import Optional

    namespace = {"Optional": Optional}
    exec(compile(ast.Module(body=constants + [function], type_ignores=[]), "TwinTrack.py", "exec"), namespace)
    check = namespace["unsupportedSlicerMessage"]
    assert check((5, 10), (3, 12)) is None and check((6, 0), (3, 13)) is None
    message = check((5, 8), (3, 9))
    assert "5.10 or later" in message and "Slicer 5.8" in message and "Python 3.9" in message
    assert check((5, 10), (3, 9)) is not None
    # The module's minimum Python is the core's.
    import re

    requires = re.search(r'requires-python = ">=(\d+)\.(\d+)"', (REPOSITORY / "pyproject.toml").read_text()).groups()
    assert tuple(int(v) for v in requires) == namespace["MINIMUM_PYTHON"]
    init = _function(module_tree, "TwinTrack", "__init__")
    assert "unsupportedSlicerMessage((slicer.app.majorVersion, slicer.app.minorVersion)" in ast.unparse(init)


def test_the_module_file_parses_on_the_oldest_supported_python():
    for path in [MODULE, *(REPOSITORY / "TwinTrack" / "TwinTrackLib").glob("*.py"),
                 *(REPOSITORY / "TwinTrackLogic").rglob("*.py")]:
        ast.parse(path.read_text(encoding="utf-8"), feature_version=(3, 10))


def test_audit_fixes_stay_in_place(module_tree):
    source = MODULE.read_text(encoding="utf-8")
    # F2: exit() keeps the GUI bound; setParameterNode binds once per MRML node.
    assert "disconnectGui" not in ast.unparse(_function(module_tree, "TwinTrackWidget", "exit"))
    assert ".parameterNode is self._parameterNode.parameterNode" in source
    # F4: the self-test never skips.
    assert "skipTest" not in source
    # F16: the parameter node is "TwinTrack", not "TwinTrackModule".
    assert "self.moduleName = 'TwinTrack'" in ast.unparse(_function(module_tree, "TwinTrackModuleLogic", "__init__"))
    # F19: no removeObserver without hasObserver.
    set_node = ast.unparse(_function(module_tree, "TwinTrackWidget", "setParameterNode"))
    assert "hasObserver" in set_node
    # F20: Reload drops the scene layer and the core.
    assert _function(module_tree, "TwinTrackWidget", "onReload") is not None
    # F1: no in-process thread for the long work; F12: no install prompt under a busy cursor.
    assert "BackgroundJob" not in source and "waitCursor=True):\n            if not self.logic.ensureOnnxRuntime" not in source
    for node in ast.walk(module_tree):
        if isinstance(node, ast.With) and "tryWithErrorDisplay" in ast.unparse(node.items[0]):
            assert "ensureOnnxRuntime" not in ast.unparse(node), "install prompt under tryWithErrorDisplay"
        # F14: never an empty detailedText.
        if isinstance(node, ast.keyword) and node.arg == "detailedText":
            assert not (isinstance(node.value, ast.Constant) and node.value.value == "")
    # F17: the deprecated loadFileType is not used.
    assert "loadFileType=" not in source


def test_cmake_declares_the_status_and_rescans_the_core():
    top = (REPOSITORY / "CMakeLists.txt").read_text()
    assert 'set(EXTENSION_STATUS "Beta")' in top
    s4ext = (REPOSITORY / "extension.s4ext").read_text()
    assert "status Beta" in s4ext
    module = (REPOSITORY / "TwinTrack" / "CMakeLists.txt").read_text()
    assert module.count("RELATIVE ${TWINTRACK_ROOT} CONFIGURE_DEPENDS") == 2


def test_registering_the_sample_at_startup_imports_nothing_heavy():
    """Slicer imports TwinTrackLib.sampledata at every startup (F17): no SimpleITK, no scipy."""
    import subprocess
    import sys

    probe = ("import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; import TwinTrackLib.sampledata; "
             "print(sorted(m for m in ('SimpleITK', 'scipy', 'numpy', 'TwinTrackLogic.phantom') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe, str(REPOSITORY / "TwinTrack"), str(REPOSITORY)],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", out


def test_the_involvement_section_matches_the_vessels_and_the_presenters_columns(ui_widgets, module_tree):
    """The vessel choice lists the read-out's vessels in label order; the table has a column per cell the
    presenter gives (involvement_panel.COLUMNS) and a row per vessel; the vessels input takes both kinds."""

    from TwinTrackLib.involvement_panel import COLUMNS
    from TwinTrackLogic.vessels import VESSEL_LABELS

    vessels = next(node.value for node in module_tree.body if isinstance(node, ast.Assign)
                   and getattr(node.targets[0], "id", "") == "VESSELS")
    names = [element.value for element in vessels.elts]
    assert names == list(VESSEL_LABELS)
    assert ui_widgets["involvementVesselComboBox"]["items"] == names
    assert ui_widgets["involvementVesselComboBox"]["parameter"] == "involvementVessel"
    table = ui_widgets["involvementTable"]["element"]
    headers = [column.findtext("property[@name='text']/string") for column in table.findall("column")]
    assert tuple(headers) == COLUMNS
    assert int(table.findtext("property[@name='columnCount']/number")) == len(COLUMNS)
    assert int(table.findtext("property[@name='rowCount']/number")) == len(VESSEL_LABELS)
    selector = ui_widgets["vesselsSelector"]["element"]
    assert [s.text for s in selector.findall("property[@name='nodeTypes']/stringlist/string")] == \
        ["vtkMRMLSegmentationNode", "vtkMRMLLabelMapVolumeNode"]
    assert ui_widgets["vesselsSelector"]["parameter"] == "vesselsNode"
    field = _parameter_fields(module_tree)["vesselsNode"]
    assert ast.unparse(field.annotation) == \
        "Optional[Union[slicer.vtkMRMLSegmentationNode, slicer.vtkMRMLLabelMapVolumeNode]]"
    # Every node combo box gets the scene: a selector without it lists nothing.
    root = ElementTree.parse(UI).getroot()
    receivers = {c.findtext("receiver") for c in root.iter("connection") if c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    assert receivers == {name for name, widget in ui_widgets.items() if widget["class"] == "qMRMLNodeComboBox"}


def test_the_self_tests_hands_use_the_ui_bindings(ui_widgets):
    """TwinTrackTest sets values through WIDGET_OF_PARAMETER: it must name each bound widget and the
    property its binding carries (F7: the widget -> node half of the bindings)."""
    tree = ast.parse(MODULE.read_text(encoding="utf-8"))
    assignment = next(n for n in tree.body if isinstance(n, ast.Assign)
                      and getattr(n.targets[0], "id", "") == "WIDGET_OF_PARAMETER")
    hands = ast.literal_eval(assignment.value)
    properties = {"qMRMLNodeComboBox": "currentNode", "QComboBox": "currentText", "QLineEdit": "text",
                  "ctkSliderWidget": "value", "QCheckBox": "checked"}
    bound = {w["parameter"]: (name, properties[w["class"]]) for name, w in ui_widgets.items() if w["parameter"]}
    assert hands == bound


def test_the_slicer_parameter_node_and_the_presenter_agree_on_every_default(module_tree):
    """Slicer's parameter node (TwinTrack.py, read without Slicer) and the headless presenter's
    Parameters declare the same fields with the same defaults, so the panel, the browser review and
    the self-test start from one set of values (the contour levels come from review.levels)."""
    from dataclasses import fields

    from TwinTrackLib.presenter import Parameters

    slicer_fields = _parameter_fields(module_tree)
    presenter_defaults = {field.name: field.default for field in fields(Parameters)}
    assert set(slicer_fields) == set(presenter_defaults)
    module_constants = {}
    for node in module_tree.body:  # COLOR_MAPS, VESSELS: literals at the top of TwinTrack.py
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                module_constants[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    for name, item in slicer_fields.items():
        if item.value is None:
            continue  # no default: a node reference
        default = (module_constants["COLOR_MAPS"][0] if ast.unparse(item.value) == "COLOR_MAPS[0]"
                   else ast.literal_eval(item.value))
        assert default == presenter_defaults[name], name
