"""The one pipeline: `predict`, `apply`, `evaluate` and the Slicer job all go through run_case."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from TwinTrackCLI import main
from TwinTrackLogic.io import Volume, read_image
from TwinTrackLogic.phantom import write_cohort
from TwinTrackLogic.pipeline import calibrate_in_region, run_case

REPOSITORY = Path(__file__).resolve().parents[1]
DEMO_CALIBRATOR = REPOSITORY / "Resources" / "DemoBundle" / "calibrator.json"


@pytest.fixture(scope="module")
def demo_prediction(tmp_path_factory):
    """One demo review case through `predict`, with its raw map and region."""
    folder = tmp_path_factory.mktemp("predict")
    write_cohort(folder / "cohort", 1, raters=5, seed=13, first_index=41)
    image = folder / "cohort" / "case_041" / "image.nii.gz"
    code = main(["predict", "--image", str(image), "--out", str(folder / "p.nii.gz"),
                 "--raw-out", str(folder / "raw.nii.gz"), "--region-out", str(folder / "region.nii.gz"),
                 "--mask-out", str(folder / "mask.nii.gz"), "--threads", "2"])
    assert code == 0
    return folder, image


def _expected_ml(path):
    volume = read_image(path)
    return float(volume.array.sum(dtype=np.float64)) * volume.geometry.voxel_volume_ml


def test_apply_gives_predicts_calibrated_map_from_predicts_raw_map(demo_prediction):
    folder, _ = demo_prediction
    for extra, out in (([], "applied.nii.gz"), (["--region", str(folder / "region.nii.gz")], "applied_region.nii.gz")):
        assert main(["apply", "--calibrator", str(DEMO_CALIBRATOR), "--probability", str(folder / "raw.nii.gz"),
                     "--out", str(folder / out), *extra]) == 0
    predicted = read_image(folder / "p.nii.gz").array
    with_region = read_image(folder / "applied_region.nii.gz").array
    assert np.array_equal(with_region, predicted)
    # Without a region, the raw map's exact zeros (outside the ensemble's region) stay zero.
    without_region = read_image(folder / "applied.nii.gz").array
    raw = read_image(folder / "raw.nii.gz").array
    assert not without_region[raw == 0].any()
    assert _expected_ml(folder / "applied.nii.gz") == pytest.approx(_expected_ml(folder / "p.nii.gz"), rel=1e-3)
    assert _expected_ml(folder / "applied_region.nii.gz") == pytest.approx(_expected_ml(folder / "p.nii.gz"),
                                                                          rel=1e-9)


def test_predict_writes_a_provenance_sidecar_that_describes_the_run(demo_prediction):
    folder, image = demo_prediction
    record = json.loads((folder / "p.provenance.json").read_text())
    assert record["format"] == "twintrack-provenance"
    assert record["bundle"]["id"] and len(record["bundle"]["models"]) == 4
    assert all(len(digest) == 64 for digest in record["bundle"]["models"].values())
    assert record["calibrator"]["file"].endswith("calibrator.json") and len(record["calibrator"]["sha256"]) == 64
    import hashlib
    assert record["inputs"]["image"]["sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
    region = read_image(folder / "region.nii.gz")
    region_ml = float(region.array.sum()) * region.geometry.voxel_volume_ml
    assert record["region_volume_ml"] == pytest.approx(region_ml, abs=1e-3)
    assert record["expected_tumour_volume_ml"] == pytest.approx(_expected_ml(folder / "p.nii.gz"), abs=1e-3)
    assert record["timings_s"]["total_s"] > 0 and "ensemble_s" in record["timings_s"]
    assert record["region_source"] == "localiser"
    mask = read_image(folder / "mask.nii.gz").array.astype(bool)
    assert np.array_equal(mask, read_image(folder / "p.nii.gz").array >= 0.5)


def test_run_case_calibrates_inside_the_region_only():
    raw = np.array([[[0.0, 0.2, 0.6, 0.0]]], dtype=np.float32)
    region = np.array([[[True, True, True, False]]])
    calibrator = type("Shift", (), {"transform": staticmethod(lambda p: (0.1 + 0.8 * p).astype(np.float32)),
                                    "raters": 5, "method": "test"})()
    expected = calibrate_in_region(calibrator, raw, region)
    assert np.allclose(expected[0, 0], [0.1, 0.26, 0.58, 0.0])
    from TwinTrackLogic.io import Geometry
    volume = Volume(raw, Geometry((4, 1, 1), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)))
    result = run_case(volume, raw=raw.copy(), region=region, calibrator=calibrator, level=0.5)
    assert np.array_equal(result.calibrated, expected)
    assert np.array_equal(result.mask(), expected >= 0.5) and result.mask()[0, 0, 2]
    assert result.provenance["region_source"] == "given mask"
    # Default region for a given raw map: its non-zero voxels.
    result = run_case(volume, raw=raw.copy(), calibrator=calibrator)
    assert np.allclose(result.calibrated[0, 0], [0.0, 0.26, 0.58, 0.0])
    assert result.provenance["region_source"] == "raw map > 0"


def test_run_case_refuses_a_non_finite_ensemble_output():
    from types import SimpleNamespace

    from TwinTrackLogic.errors import InputError
    from TwinTrackLogic.io import Geometry

    geometry = Geometry((4, 3, 2), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    bad = np.zeros(geometry.shape, dtype=np.float32)
    bad[1, 2, 3] = np.nan

    def predict(volume, progress=None, token=None):
        return SimpleNamespace(probability=bad, region=np.ones(geometry.shape, bool))

    with pytest.raises(InputError, match=r"NaN.*\(1, 2, 3\)"):
        run_case(Volume(np.zeros(geometry.shape, np.float32), geometry), predict=predict)


def _imported_modules(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


# What the core must never import: Slicer, Qt, VTK, and every front end built on top of it.
ABOVE_THE_CORE = {"slicer", "vtk", "qt", "ctk", "TwinTrackLib", "PythonQt", "mrml", "vtkmodules",
                  "TwinTrackCLI", "TwinTrackWeb", "TwinTrackNNUNet", "trame", "trame_slicer"}


def test_the_core_never_imports_slicer_vtk_qt_the_scene_layer_or_a_front_end():
    forbidden = ABOVE_THE_CORE
    offenders = []
    for path in sorted((REPOSITORY / "TwinTrackLogic").rglob("*.py")):
        for name in _imported_modules(path):
            if name.split(".")[0] in forbidden:
                offenders.append(f"{path.relative_to(REPOSITORY)} imports {name}")
    assert not offenders, offenders


def test_importing_every_core_module_loads_no_front_end_even_indirectly():
    """The static check above sees only the core's own import lines; this one imports every module
    of the core in a fresh interpreter and looks at what ended up loaded, so an import through a
    third module (or a lazy one at module level) is caught too."""
    probe = ("import importlib, pkgutil, sys, TwinTrackLogic\n"
             "for module in pkgutil.walk_packages(TwinTrackLogic.__path__, 'TwinTrackLogic.'):\n"
             "    importlib.import_module(module.name)\n"
             "print(' '.join(sorted({name.split('.')[0] for name in sys.modules})))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                            cwd=REPOSITORY).stdout.split()
    assert "TwinTrackLogic" in loaded
    assert not set(loaded) & ABOVE_THE_CORE


def _transform_calls(path: Path):
    """Line numbers of every ``something.transform(...)`` call, found in the syntax tree (not the text),
    except a call on a one-element array literal (``np.zeros(1, ...)``): a single value, not a map."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "transform":
            argument = node.args[0] if node.args else None
            one_value = (isinstance(argument, ast.Call) and isinstance(argument.func, ast.Attribute)
                         and argument.func.attr in ("zeros", "ones", "full") and argument.args
                         and isinstance(argument.args[0], ast.Constant) and argument.args[0].value == 1)
            if not one_value:
                yield node.lineno


def test_no_front_end_calibrates_by_itself():
    """Only the pipeline calls a calibrator's transform on a map; the front ends call run_case."""
    callers = []
    front_ends = ("TwinTrackCLI", "TwinTrack", "TwinTrackWeb")
    for path in sorted((REPOSITORY / "TwinTrackLogic").rglob("*.py")) + sorted(
            path for folder in front_ends for path in (REPOSITORY / folder).rglob("*.py")):
        if path.name == "pipeline.py" or "calibration" in path.parts:
            continue
        # evaluation/report.py records what the calibrator makes of p = 0: one value, not a map.
        callers += [f"{path.relative_to(REPOSITORY)}:{line}" for line in _transform_calls(path)]
    assert not callers, callers


def test_the_transform_guard_sees_a_call_however_it_is_written(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("values = calibrator.transform(\n    raw_map)\none = calibrator.transform(np.zeros(1, np.float32))\n"
                      "f = calibrator.transform\n")
    assert list(_transform_calls(sample)) == [1]


def test_a_default_calibrator_that_contradicts_the_manifest_rater_count_is_refused(tmp_path):
    import shutil

    from TwinTrackLogic.inference.bundle import load_bundle
    from TwinTrackLogic.errors import InputError
    from TwinTrackLogic.pipeline import resolve_calibrator

    bundle_dir = tmp_path / "bundle"
    shutil.copytree(REPOSITORY / "Resources" / "DemoBundle", bundle_dir)
    calibrator, path = resolve_calibrator(load_bundle(bundle_dir))
    assert calibrator.raters == 5 and path.name == "calibrator.json"
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    manifest["raters"] = 3
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="declares a default calibrator fitted with 3 raters"):
        resolve_calibrator(load_bundle(bundle_dir))
    # An explicitly chosen calibrator is the user's call, not the manifest's.
    explicit, _ = resolve_calibrator(load_bundle(bundle_dir), DEMO_CALIBRATOR)
    assert explicit.raters == 5


def test_the_public_surface_resolves_every_name_and_importing_it_stays_cheap():
    """`from TwinTrackLogic import run_case` works for every listed name; a bare import (or reading a bundle,
    as Slicer does before ONNX Runtime is installed) loads no runtime."""
    probe = ("import sys, TwinTrackLogic\n"
             "heavy = sorted({'onnxruntime', 'SimpleITK', 'scipy'} & set(sys.modules))\n"
             "import TwinTrackLogic.inference.bundle\n"
             "runtime = 'onnxruntime' in sys.modules\n"
             "missing = [name for name in TwinTrackLogic.__all__ if getattr(TwinTrackLogic, name, None) is None]\n"
             "print(heavy, missing, runtime)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPOSITORY)
    assert result.stdout.split("\n")[0] == "[] [] False"
    import TwinTrackLogic

    assert TwinTrackLogic.run_case is run_case
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        TwinTrackLogic.nonexistent  # noqa: B018
