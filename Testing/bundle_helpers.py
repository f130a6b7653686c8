"""Tiny ONNX models and model bundles built at test time with onnx.helper."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional, Sequence

import onnx
from onnx import TensorProto, helper

OPSET = 17
IR_VERSION = 8  # old enough for every onnxruntime TwinTrack supports


def identity_model(path: Path, channels: int = 1, patch: Optional[Sequence[int]] = None,
                   input_rank: int = 5, input_channels: int = 1) -> Path:
    """A model whose channel ``channels - 1`` is its input and whose other channels are 0.

    With ``channels=1`` and a sigmoid, or ``channels=2`` and a softmax, the stage's
    probability is sigmoid(input). ``patch=None`` leaves the spatial axes dynamic.
    """
    spatial = list(patch) if patch is not None else ["z", "y", "x"]
    in_shape = (["batch", input_channels] + spatial)[:input_rank]
    out_shape = ["batch", channels] + spatial
    nodes = []
    if channels == 1:
        nodes.append(helper.make_node("Identity", ["image"], ["logits"]))
    else:
        nodes.append(helper.make_node("Sub", ["image", "image"], ["zero"]))
        nodes.append(helper.make_node("Concat", ["zero"] * (channels - 1) + ["image"], ["logits"], axis=1))
    graph = helper.make_graph(
        nodes, "identity",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, out_shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.save(model, str(path))
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def stage(model: str, folder: Path, spacing=(1.0, 1.0, 1.0), patch=(8, 8, 8), channels: int = 1,
          activation: str = "sigmoid", **extra) -> dict:
    entry = {"name": model.split(".")[0], "model": model, "sha256": sha256(folder / model),
             "spacing_mm": list(spacing), "patch_size": list(patch), "normalisation": {"scheme": "none"},
             "output": {"channels": channels, "channel": channels - 1, "activation": activation}}
    entry.update(extra)
    return entry


def write_manifest(folder: Path, members: Sequence[dict], localiser: Optional[dict] = None, **extra) -> Path:
    manifest = {"format": "twintrack-bundle", "version": 1, "id": "test-bundle", "raters": 3,
                "sliding_window": {"overlap": 0.5, "importance": "gaussian", "batch_size": 2, "mirror_axes": []},
                "members": list(members), "localiser": localiser}
    manifest.update(extra)
    path = Path(folder) / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2))
    return path


def identity_bundle(folder: Path, spacing=(1.0, 1.0, 1.0), patch=(8, 8, 8), members: int = 1,
                    channels: int = 1, with_localiser: bool = False, **extra) -> Path:
    """A bundle of identity members (probability = sigmoid(CT)) and optionally an identity localiser."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    activation = "sigmoid" if channels == 1 else "softmax"
    for k in range(members):
        identity_model(folder / f"member_{k + 1}.onnx", channels)
        entries.append(stage(f"member_{k + 1}.onnx", folder, spacing, patch, channels, activation))
    localiser = None
    if with_localiser:
        identity_model(folder / "localiser.onnx", 1)
        localiser = stage("localiser.onnx", folder, spacing, patch, 1, "sigmoid", threshold=0.5, dilation_mm=2.0)
    write_manifest(folder, entries, localiser, **extra)
    return folder


# A declared domain that a 1 mm CT meets and a 2 mm CT does not (domain_cohort).
DOMAIN = {"modality": "CT", "synthetic": False, "spacing_mm": {"min": [0.5, 0.5, 0.5], "max": [1.5, 1.5, 1.5]}}


def domain_cohort(folder: Path, annotated: bool = False) -> Path:
    """Two CTs in HU: case_a at 1 mm (inside DOMAIN), case_b at 2 mm (outside it); with
    ``annotated``, three raters' masks each."""
    import numpy as np

    from TwinTrackLogic.io import Geometry, write_image

    ct = np.full((20, 20, 20), -1000.0, dtype=np.float32)
    ct[5:15, 5:15, 5:15] = 40.0  # the identity localiser's organ: sigmoid(CT) > 0.5 where CT > 0
    for name, spacing in (("case_a", 1.0), ("case_b", 2.0)):
        geometry = Geometry((20, 20, 20), (spacing,) * 3, (0.0, 0.0, 0.0))
        write_image(Path(folder) / name / "image.nii.gz", ct, geometry)
        for rater in (1, 2, 3) if annotated else ():
            mask = np.zeros(ct.shape, np.uint8)
            mask[8:11 + rater, 8:12, 8:12] = 1
            write_image(Path(folder) / name / f"annotation_{rater}.nii.gz", mask, geometry)
    return Path(folder)


def demo_bundle_without_vessel_stage(folder: Path) -> Path:
    """A copy of the demo bundle whose manifest has no vessel stage: a run that finds no vessels."""
    import shutil

    demo = Path(__file__).resolve().parents[1] / "Resources" / "DemoBundle"
    target = Path(folder) / "DemoBundle"
    shutil.copytree(demo, target)
    manifest = json.loads((target / "manifest.json").read_text())
    del manifest["vessels"]
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target
