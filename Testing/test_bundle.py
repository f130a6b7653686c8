"""Model bundle manifests: validation, path containment, hashes, the default bundle."""

import json
import os
from pathlib import Path

import pytest

from bundle_helpers import identity_bundle, identity_model
from TwinTrackLogic.inference.bundle import default_bundle_dir, load_bundle
from TwinTrackLogic.errors import InputError
from TwinTrackLogic.inference import Ensemble


def edit_manifest(folder: Path, change) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def test_valid_bundle_is_read(tmp_path):
    folder = identity_bundle(tmp_path / "b", spacing=(0.8, 0.8, 2.5), patch=(16, 32, 24), members=3,
                             channels=2, with_localiser=True)
    bundle = load_bundle(folder)
    assert bundle.id == "test-bundle" and bundle.raters == 3 and bundle.default_calibrator_path is None
    assert len(bundle.members) == 3
    assert bundle.members[0].spacing_mm == (0.8, 0.8, 2.5)
    assert bundle.members[0].patch_size == (16, 32, 24)
    assert bundle.members[0].activation == "softmax" and bundle.members[0].channel == 1
    assert bundle.localiser.name == "localiser" and bundle.dilation_mm == 2.0 and bundle.threshold == 0.5


@pytest.mark.parametrize("model", ["../outside.onnx", "/etc/passwd", "sub/../../outside.onnx"])
def test_paths_outside_the_bundle_are_refused(tmp_path, model):
    folder = identity_bundle(tmp_path / "b")
    identity_model(tmp_path / "outside.onnx")
    edit_manifest(folder, lambda m: m["members"][0].update(model=model))
    with pytest.raises(InputError, match="outside the bundle"):
        load_bundle(folder)


def test_symlink_leaving_the_bundle_is_refused(tmp_path):
    folder = identity_bundle(tmp_path / "b")
    identity_model(tmp_path / "outside.onnx")
    os.symlink(tmp_path / "outside.onnx", folder / "link.onnx")
    edit_manifest(folder, lambda m: m["members"][0].update(model="link.onnx"))
    with pytest.raises(InputError, match="resolves outside"):
        load_bundle(folder)


def test_default_calibrator_outside_is_refused(tmp_path):
    folder = identity_bundle(tmp_path / "b")
    (tmp_path / "cal.json").write_text("{}")
    edit_manifest(folder, lambda m: m.update(default_calibrator="../cal.json"))
    with pytest.raises(InputError, match="default_calibrator"):
        load_bundle(folder)


def test_missing_model_file_is_named(tmp_path):
    folder = identity_bundle(tmp_path / "b")
    (folder / "member_1.onnx").unlink()
    with pytest.raises(InputError, match="member_1.onnx is missing"):
        load_bundle(folder)


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update(format="something-else"), "format"),
    (lambda m: m.update(version=4), "version 4"),
    (lambda m: m["members"][0].update(mode="nnunet"), "nnunet needs version 2"),
    (lambda m: m["members"][0].update(mode="monai"), "mode"),
    (lambda m: m.update(members=[]), "at least 1"),
    (lambda m: m["members"][0].pop("sha256"), r"members\[0\].sha256 is missing"),
    (lambda m: m["members"][0].update(sha256="abc"), "64 hexadecimal"),
    (lambda m: m["members"][0].update(spacing_mm=[1, 1]), "3 numbers"),
    (lambda m: m["members"][0].update(patch_size=[8, 0, 8]), r"patch_size\[1\] is 0, outside \[1, 4096\]"),
    (lambda m: m["members"][0].update(patch_size=[8, 8.5, 8]), "int"),
    (lambda m: m["members"][0]["output"].update(channel=1), "channel"),
    (lambda m: m["members"][0]["output"].update(activation="relu"), "activation"),
    (lambda m: m["members"][0].update(normalisation={"scheme": "ct", "clip": [100, -100], "mean": 0, "std": 1}),
     "low < high"),
    (lambda m: m["members"][0].update(normalisation={"scheme": "mri"}), "scheme"),
    (lambda m: m["sliding_window"].update(overlap=1.0), "overlap"),
    (lambda m: m["sliding_window"].update(mirror_axes=[3]), "mirror_axes"),
    (lambda m: m.update(raters=0), "raters"),
])
def test_invalid_manifests_are_refused_with_the_key(tmp_path, change, message):
    folder = identity_bundle(tmp_path / "b")
    edit_manifest(folder, change)
    with pytest.raises(InputError, match=message) as error:
        load_bundle(folder)
    assert "manifest.json" in str(error.value)


def test_not_json_and_not_a_bundle(tmp_path):
    with pytest.raises(InputError, match="no manifest.json"):
        load_bundle(tmp_path)
    (tmp_path / "manifest.json").write_text("{ not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_bundle(tmp_path)


def test_hash_is_verified_before_loading(tmp_path):
    folder = identity_bundle(tmp_path / "b")
    bundle = load_bundle(folder)
    with open(folder / "member_1.onnx", "ab") as stream:
        stream.write(b"\0")
    with pytest.raises(InputError, match="sha256"):
        Ensemble(bundle, device="cpu")


def test_default_bundle_dir_honours_environment(tmp_path, monkeypatch):
    folder = identity_bundle(tmp_path / "b")
    monkeypatch.setenv("TWINTRACK_BUNDLE", str(folder))
    assert default_bundle_dir() == folder
    monkeypatch.setenv("TWINTRACK_BUNDLE", str(tmp_path / "nowhere"))
    with pytest.raises(InputError, match="TWINTRACK_BUNDLE"):
        default_bundle_dir()


def test_demo_bundle_is_valid_and_its_hashes_match(monkeypatch):
    monkeypatch.delenv("TWINTRACK_BUNDLE", raising=False)
    folder = default_bundle_dir()
    assert folder == Path(__file__).resolve().parent.parent / "Resources" / "DemoBundle"
    bundle = load_bundle(folder)
    assert bundle.localiser is not None and len(bundle.members) == 3
    assert bundle.raters == 5
    for stage in (bundle.localiser,) + bundle.members:
        stage.read_model()  # raises on a hash mismatch
    size_mb = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
    assert size_mb < 10
