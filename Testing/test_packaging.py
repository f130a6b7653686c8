"""A wheel of TwinTrack holds what an installed copy runs: the packages (the web review's scene
layer TwinTrackLib included, which lives in the Slicer module's folder), the schemas and the demo bundle."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import setuptools

REPOSITORY = Path(__file__).resolve().parent.parent


def test_the_wheel_carries_the_scene_layer_schemas_and_demo_bundle_and_imports_from_itself(tmp_path):
    # This environment's setuptools when it is new enough for pyproject.toml (no download), else pip's own.
    isolation = ["--no-build-isolation"] if int(setuptools.__version__.split(".")[0]) >= 68 else []
    # From a copy of the sources: a build/ folder left in the checkout could add files that are gone.
    source = tmp_path / "source"
    shutil.copytree(REPOSITORY, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".cache", "build", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "Testing",
        "benchmarks", "training", "docs"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, str(source),
                    "-w", str(tmp_path / "wheel")], check=True, cwd=tmp_path)
    (wheel,) = (tmp_path / "wheel").glob("twintrack-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].startswith("twintrack-")}
    assert top == {"TwinTrackLogic", "TwinTrackCLI", "TwinTrackLib", "TwinTrackWeb", "TwinTrackNNUNet"}
    assert {"TwinTrackLib/presenter.py", "TwinTrackLogic/schemas/bundle.schema.json",
            "TwinTrackLogic/schemas/calibrator.schema.json"} <= set(names)
    data = [name for name in names if "/data/share/twintrack/DemoBundle/" in name]
    assert any(name.endswith("manifest.json") for name in data) and any(name.endswith(".onnx") for name in data)
    assert not any("Testing/" in name or name.endswith(".pth") for name in names)
    root = tmp_path / "installed"
    zipfile.ZipFile(wheel).extractall(root)
    where = subprocess.run([sys.executable, "-c", "import TwinTrackLib.presenter, TwinTrackLogic, TwinTrackCLI, TwinTrackNNUNet;"
                            "print(TwinTrackLib.__file__); print(TwinTrackLogic.__file__)"],
                           cwd=tmp_path, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
                           check=True, capture_output=True, text=True).stdout.split()
    assert all(Path(path).is_relative_to(root) for path in where), where
