"""Build an nnU-Net fold's network from its plans, export it to ONNX and check onnxruntime against torch.

The network is built as nnU-Net's default trainer does (``get_network_from_plans``):
the plans' ``network_class_name`` from dynamic_network_architectures, its
``arch_kwargs`` with the ``_kw_requires_import`` names resolved, one input channel,
the dataset's output heads, no deep supervision; then the fold's weights with
``strict=True``. nnU-Net's trainer-class search is not used (it imports every
trainer module, some of which need torchvision). Export: the legacy exporter
(``dynamo=False``), opset 17, dynamic batch, fixed spatial size = patch.
"""

from __future__ import annotations

import pydoc
import warnings
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from TwinTrackLogic.errors import InputError

from .results import ARCHITECTURES, Fold, NnunetModel

OPSET = 17
# onnxruntime may differ from torch by rounding only: this much of the largest |logit|.
RELATIVE_TOLERANCE = 1e-4


def _locate(name: Optional[str], folder: Path):
    if name is not None and not (name.startswith("torch.") or name.startswith(ARCHITECTURES)):
        raise InputError(f"{folder / 'plans.json'} names {name!r} to import; only torch and "
                         "dynamic_network_architectures classes are built.")
    found = pydoc.locate(name) if name is not None else None
    if name is not None and found is None:
        raise InputError(f"{folder / 'plans.json'} names {name!r}, which this environment cannot import. "
                         "Install the versions in TwinTrack's [nnunet] extra.")
    return found


def build_network(model: NnunetModel, fold: Fold):
    """The fold's torch network in eval mode, weights loaded strictly."""
    architecture = model.configuration["architecture"]
    kwargs = dict(architecture["arch_kwargs"])
    for key in architecture.get("_kw_requires_import", []):
        kwargs[key] = _locate(kwargs.get(key), model.folder)
    network_class = _locate(architecture["network_class_name"], model.folder)
    network = network_class(input_channels=1, num_classes=model.channels, deep_supervision=False, **kwargs)
    try:
        network.load_state_dict(fold.weights, strict=True)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise InputError(f"{fold.checkpoint} does not fit the network its plans describe ({first}).") from None
    return network.eval()


def export_onnx(network, patch_size, path: Path) -> None:
    import torch

    example = torch.zeros(2, 1, *patch_size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and instance-norm notices, harmless for this graph
        torch.onnx.export(network, (example,), str(path), input_names=["image"], output_names=["logits"],
                          opset_version=OPSET, dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                          dynamo=False)


def compare_with_torch(network, path: Path, patch_size, seed: int = 0) -> Tuple[float, float]:
    """(max |ORT - torch| logit, max |logit|) on a random batch of 2 patches."""
    import onnxruntime
    import torch

    batch = np.random.default_rng(seed).standard_normal((2, 1, *patch_size)).astype(np.float32)
    with torch.no_grad():
        expected = network(torch.from_numpy(batch)).numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    found = session.run(None, {"image": batch})[0]
    return float(np.abs(found - expected).max()), float(np.abs(expected).max())


def export_fold(model: NnunetModel, fold: Fold, path: Path) -> dict:
    """Export one fold to ``path`` and check it; returns the check's figures for the manifest."""
    network = build_network(model, fold)
    export_onnx(network, model.patch_size, path)
    difference, largest = compare_with_torch(network, path, model.patch_size)
    tolerance = RELATIVE_TOLERANCE * max(largest, 1.0)
    if not difference <= tolerance:
        raise InputError(f"{path}: onnxruntime differs from torch by {difference:.3g} in the logits (tolerance "
                         f"{tolerance:.3g}); the export is not faithful. Report this with the model's plans.")
    return {"max_abs_logit_difference": difference, "max_abs_logit": largest, "tolerance": tolerance}
