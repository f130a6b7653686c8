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
}


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


def test_every_widget_the_code_uses_exists_with_the_expected_class(ui_widgets, module_tree):
    used = {node.attr for node in ast.walk(module_tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
            and node.value.attr == "ui" and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"}
    assert used, "the module uses no widgets?"
    unknown = used - set(EXPECTED_CLASSES)
    assert not unknown, f"add the expected class of {sorted(unknown)} to EXPECTED_CLASSES"
    for name in sorted(used):
        assert name in ui_widgets, f"TwinTrack.py uses self.ui.{name}, which the .ui does not have"
        assert ui_widgets[name]["class"] == EXPECTED_CLASSES[name], name


def _parameter_fields(module_tree):
    for node in module_tree.body:
        if isinstance(node, ast.ClassDef) and any(ast.unparse(d) == "parameterNodeWrapper"
                                                  for d in node.decorator_list):
            return {item.target.id: item for item in node.body if isinstance(item, ast.AnnAssign)}
    raise AssertionError("no @parameterNodeWrapper class in TwinTrack.py")


def test_bound_widgets_match_the_parameter_node(ui_widgets, module_tree):
    fields = _parameter_fields(module_tree)
    bound = {w["parameter"]: name for name, w in ui_widgets.items() if w["parameter"]}
    assert set(bound) == set(fields), (set(bound) ^ set(fields))
    # The class that can carry each type.
    for parameter, widget_name in bound.items():
        annotation = ast.unparse(fields[parameter].annotation)
        widget_class = ui_widgets[widget_name]["class"]
        if annotation == "bool":
            assert widget_class == "QCheckBox", parameter
        elif "float" in annotation:
            assert widget_class == "ctkSliderWidget", parameter
        elif "vtkMRML" in annotation:
            assert widget_class == "qMRMLNodeComboBox", parameter
        elif "Choice" in annotation:
            assert widget_class == "QComboBox", parameter


def test_combo_box_items_are_the_parameter_choices(ui_widgets, module_tree):
    fields = _parameter_fields(module_tree)
    assert ui_widgets["deviceComboBox"]["items"] == ["auto", "cpu", "cuda"]
    assert "Choice([\"auto\", \"cpu\", \"cuda\"])" in ast.unparse(fields["device"].annotation).replace("'", '"')
    color_maps = next(node.value for node in module_tree.body if isinstance(node, ast.Assign)
                      and getattr(node.targets[0], "id", "") == "COLOR_MAPS")
    names = [element.value for element in color_maps.elts]
    assert ui_widgets["colorMapComboBox"]["items"] == names
    import sys

    sys.path.insert(0, str(REPOSITORY / "TwinTrack"))
    from TwinTrackLogic.colormaps import COLOR_MAPS

    assert names == list(COLOR_MAPS)


def test_level_slider_covers_0_to_100_percent(ui_widgets):
    element = ui_widgets["levelSlider"]["element"]
    assert float(element.findtext("property[@name='minimum']/double")) == 0.0
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
