"""Read an nnU-Net v2 trained-model folder safely and decide whether a bundle can express it.

A model folder is ``nnUNet_results/DatasetXXX/Trainer__Plans__configuration`` with
``plans.json``, ``dataset.json`` and ``fold_k/checkpoint_final.pth``. Checkpoints are
pickles: they are loaded with ``torch.load(weights_only=True)`` and an explicit
allow-list of the numpy types nnU-Net's training log holds, so nothing in them runs.
Everything a bundle cannot express yet is refused here, with the reason.

Needs torch (the ``.[nnunet]`` extra); nothing at run time imports this.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from TwinTrackLogic.errors import InputError
from TwinTrackLogic.io.strictjson import read_json

CHECKPOINT = "checkpoint_final.pth"
# Trainers that build exactly the network the plans describe (they change epochs, deep
# supervision or mirroring only). Others (nnUNetTrainerBN, Primus, ...) override the network.
TRAINERS = re.compile(r"nnUNetTrainer(NoDeepSupervision|NoMirroring|_onlyMirror01|_\d+epochs(_NoMirroring)?)?")
NORMALISATIONS = {"CTNormalization": "ct", "ZScoreNormalization": "zscore"}
READER = "SimpleITKIO"
RESAMPLING = "resample_data_or_seg_to_shape"
ARCHITECTURES = "dynamic_network_architectures.architectures."


class UnsupportedModel(InputError):
    """An nnU-Net model a TwinTrack bundle cannot express (yet)."""


@dataclass
class Fold:
    name: str  # "fold_0", "fold_all"
    checkpoint: Path
    sha256: str
    weights: Dict[str, Any]  # torch state dict
    trainer: str
    mirror_axes: Tuple[int, ...]


@dataclass
class NnunetModel:
    """One configuration's folds, with what the bundle needs from the plans and dataset.json."""

    folder: Path
    plans: dict
    dataset: dict
    configuration_name: str
    configuration: dict  # inheritance resolved
    folds: List[Fold]
    channels: int  # network outputs
    channel: int  # the chosen label's output channel
    activation: str  # softmax or sigmoid (region-based)
    label: str

    @property
    def spacing_zyx(self) -> List[float]:
        return [float(v) for v in self.configuration["spacing"]]

    @property
    def patch_size(self) -> List[int]:
        return [int(v) for v in self.configuration["patch_size"]]

    def normalisation(self) -> dict:
        scheme = NORMALISATIONS[self.configuration["normalization_schemes"][0]]
        if scheme != "ct":
            return {"scheme": scheme}
        stats = self.plans["foreground_intensity_properties_per_channel"]["0"]
        return {"scheme": "ct", "clip": [float(stats["percentile_00_5"]), float(stats["percentile_99_5"])],
                "mean": float(stats["mean"]), "std": float(stats["std"])}

    def resampling(self, key: str) -> dict:
        kwargs = self.configuration[f"{key}_kwargs"]
        return {"order": int(kwargs.get("order", 3 if key == "resampling_fn_data" else 1)),
                "order_z": int(kwargs.get("order_z", 0)), "force_separate_z": kwargs.get("force_separate_z")}


def parse_spec(spec: str) -> Tuple[Path, Optional[List[str]]]:
    """``FOLDER[:FOLDS]`` -> (folder, fold names or None for all); FOLDS like ``0,1`` or ``all``."""
    folder, _, folds = str(spec).rpartition(":") if re.search(r":[0-9a-z,]+$", str(spec)) else (spec, "", "")
    names = [f"fold_{f.strip()}" for f in folds.split(",") if f.strip()] if folds else None
    return Path(folder), names


def _json(path: Path) -> dict:
    hint = ("Pass an nnU-Net trained-model folder (nnUNet_results/DatasetXXX/Trainer__Plans__configuration) "
            "as nnU-Net wrote it.")
    try:
        value = read_json(path, "nnU-Net JSON file", hint=hint)
    except OSError as error:
        raise InputError(f"{path} cannot be read ({error.strerror}). {hint}") from None
    if not isinstance(value, dict):
        raise InputError(f"{path} must hold a JSON object.")
    return value


def load_checkpoint(path: Path) -> dict:
    """``torch.load(weights_only=True)`` with only the numpy types nnU-Net's training log contains."""
    import numpy as np
    import torch

    core = getattr(np, "_core", None) or np.core  # numpy 2 renamed it
    allowed = [core.multiarray.scalar, np.dtype, np.dtypes.Float32DType, np.dtypes.Float64DType,
               np.dtypes.Int64DType]
    try:
        with torch.serialization.safe_globals(allowed):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        first = str(error).strip().splitlines()[0]
        raise InputError(f"{path} holds objects outside the allow-list of a safe checkpoint load ({first}). "
                         "TwinTrack never unpickles arbitrary objects; re-save the checkpoint with plain "
                         "tensors, dicts, lists and numbers.") from None
    except (OSError, RuntimeError) as error:
        raise InputError(f"{path} is not a readable torch checkpoint ({error}).") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("network_weights"), dict):
        raise InputError(f"{path} is not an nnU-Net v2 checkpoint: it has no 'network_weights'.")
    return checkpoint


def resolve_configuration(plans: dict, name: str, where: Path) -> dict:
    """The configuration with ``inherits_from`` resolved (parent first, then the child's keys)."""
    configurations = plans.get("configurations", {})
    if not isinstance(configurations, dict) or not all(isinstance(c, dict) for c in configurations.values()):
        raise _wrong(where / "plans.json", "configurations", "must be an object of configuration objects")
    chain: List[str] = []
    current = name
    while True:
        if current not in configurations:
            raise InputError(f"{where}: configuration {current!r} is not in its plans "
                             f"(it has {', '.join(configurations)}).")
        if current in chain:
            raise InputError(f"{where}: configurations inherit from each other in a circle: {chain}.")
        chain.append(current)
        parent = configurations[current].get("inherits_from")
        if parent is None:
            break
        current = parent
    resolved: dict = {}
    for entry in reversed(chain):
        resolved.update(configurations[entry])
    return resolved


def _wrong(path: Path, where: str, what: str) -> InputError:
    return InputError(f"{path}: {where} {what}. The file is not as nnU-Net v2 writes it; restore it from the "
                      "training run (nnUNet_results/DatasetXXX/Trainer__Plans__configuration).")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _numbers(path: Path, where: str, value, whole: bool = False, length: Optional[int] = None) -> None:
    kind = "whole numbers" if whole else "numbers"
    if (not isinstance(value, list) or (length is not None and len(value) != length)
            or not all(isinstance(v, int) and not isinstance(v, bool) if whole else _number(v) for v in value)):
        raise _wrong(path, where, f"must be a list of {length or 'some'} {kind}, not {value!r}"[:300])


def check_files(folder: Path, plans: dict, dataset: dict, configuration: dict, name: str) -> None:
    """What the import reads from plans.json and dataset.json is there and of the right kind, so that
    an edited or foreign file is a sentence naming the file and the key, not a KeyError."""
    plans_path, dataset_path = folder / "plans.json", folder / "dataset.json"
    labels = dataset.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise _wrong(dataset_path, "labels", "must be an object of label names and their values")
    for label, value in labels.items():
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise _wrong(dataset_path, f"labels.{label}", f"is {value!r}; a label value is a whole number (or, for "
                         "a region-based model, a list of them)")
    if not isinstance(dataset.get("channel_names", {}), dict):
        raise _wrong(dataset_path, "channel_names", "must be an object")
    where = f"configurations.{name}"
    architecture = configuration.get("architecture")
    if not isinstance(architecture, dict):
        raise _wrong(plans_path, f"{where}.architecture", "is missing or not an object")
    if not isinstance(architecture.get("network_class_name"), str):
        raise _wrong(plans_path, f"{where}.architecture.network_class_name", "is missing or not a string")
    if not isinstance(architecture.get("arch_kwargs"), dict):
        raise _wrong(plans_path, f"{where}.architecture.arch_kwargs", "is missing or not an object (the network's "
                     "settings)")
    if not isinstance(architecture.get("_kw_requires_import", []), list):
        raise _wrong(plans_path, f"{where}.architecture._kw_requires_import", "must be a list of key names")
    _numbers(plans_path, f"{where}.spacing", configuration.get("spacing"), length=3)
    _numbers(plans_path, f"{where}.patch_size", configuration.get("patch_size"), whole=True)
    if not isinstance(configuration.get("normalization_schemes"), list):
        raise _wrong(plans_path, f"{where}.normalization_schemes", "is missing or not a list")
    for key in ("resampling_fn_data_kwargs", "resampling_fn_probabilities_kwargs"):
        kwargs = configuration.get(key)
        if not isinstance(kwargs, dict):
            raise _wrong(plans_path, f"{where}.{key}", "is missing or not an object")
        for option in ("order", "order_z"):
            if option in kwargs and not (isinstance(kwargs[option], int) and not isinstance(kwargs[option], bool)):
                raise _wrong(plans_path, f"{where}.{key}.{option}", f"is {kwargs[option]!r}, not a whole number")
    if configuration.get("normalization_schemes", [None])[:1] == ["CTNormalization"]:
        stats = (plans.get("foreground_intensity_properties_per_channel") or {}).get("0")
        keys = ("percentile_00_5", "percentile_99_5", "mean", "std")
        if not isinstance(stats, dict) or not all(_number(stats.get(key)) for key in keys):
            raise _wrong(plans_path, 'foreground_intensity_properties_per_channel["0"]',
                         f"must hold the numbers {', '.join(keys)} (CT normalisation uses them)")


def _refuse(folder: Path, what: str, why: str) -> UnsupportedModel:
    return UnsupportedModel(f"{folder}: {what}; a TwinTrack bundle cannot express that yet ({why}).")


def check_supported(folder: Path, plans: dict, dataset: dict, configuration: dict, name: str) -> None:
    if configuration.get("previous_stage"):
        raise _refuse(folder, f"configuration {name} is a cascade stage (previous_stage "
                              f"{configuration['previous_stage']!r})",
                      "its input includes the previous stage's segmentation; import the 3d_fullres or "
                      "3d_lowres configuration instead")
    if len(configuration.get("patch_size", [])) != 3:
        raise _refuse(folder, f"configuration {name} is {len(configuration.get('patch_size', []))}D",
                      "bundle stages are 3D networks; import a 3d configuration")
    if len(dataset.get("channel_names", {})) != 1:
        raise _refuse(folder, f"the dataset has {len(dataset.get('channel_names', {}))} input channels",
                      "a bundle feeds the network one CT")
    if list(plans.get("transpose_forward", [0, 1, 2])) != [0, 1, 2]:
        raise _refuse(folder, f"the plans transpose axes ({plans['transpose_forward']})",
                      "bundle stages work in the CT's own (z, y, x) order")
    reader = plans.get("image_reader_writer", READER)
    if reader != READER:
        raise _refuse(folder, f"the plans read images with {reader}",
                      f"TwinTrack reads images as {READER} does; other readers order or reorient axes differently")
    schemes = configuration.get("normalization_schemes", [])
    if len(schemes) != 1 or schemes[0] not in NORMALISATIONS:
        raise _refuse(folder, f"the normalisation is {schemes}", "supported: CTNormalization, ZScoreNormalization")
    if any(configuration.get("use_mask_for_norm", [False])):
        raise _refuse(folder, "normalisation uses the nonzero mask (use_mask_for_norm)",
                      "only whole-crop normalisation is implemented")
    for key in ("resampling_fn_data", "resampling_fn_probabilities"):
        if configuration.get(key) != RESAMPLING:
            raise _refuse(folder, f"{key} is {configuration.get(key)!r}", f"only {RESAMPLING} is reproduced")
    network = configuration.get("architecture", {}).get("network_class_name", "")
    if not network.startswith(ARCHITECTURES):
        raise _refuse(folder, f"the network class is {network!r}",
                      "only dynamic_network_architectures networks built from the plans are exported")


def output_channel(folder: Path, dataset: dict, label: Optional[str]) -> Tuple[int, int, str, str]:
    """(channels, channel, activation, label name) for the chosen foreground label."""
    labels = {k: v for k, v in dataset.get("labels", {}).items() if k != "ignore"}
    region_based = any(isinstance(v, (list, tuple)) for v in labels.values())
    foreground = [k for k, v in labels.items() if v not in (0, [0])]
    if label is None:
        candidates = [k for k in foreground if k.lower() in ("tumour", "tumor")] or foreground
        if len(candidates) != 1:
            raise InputError(f"{folder / 'dataset.json'} has the foreground labels {', '.join(foreground)}; "
                             "choose one with --tumour-label NAME.")
        label = candidates[0]
    if label not in foreground:
        raise InputError(f"--tumour-label {label!r} is not a foreground label of {folder / 'dataset.json'} "
                         f"(it has {', '.join(foreground)}).")
    if region_based:
        return len(foreground), foreground.index(label), "sigmoid", label
    values = sorted(int(v) for v in labels.values())
    if values != list(range(len(values))):
        raise InputError(f"{folder / 'dataset.json'}: labels {values} are not consecutive from 0, as nnU-Net "
                         "requires.")
    return len(values), int(labels[label]), "softmax", label


def read_model(folder: Path, fold_names: Optional[Sequence[str]] = None, label: Optional[str] = None,
               ) -> NnunetModel:
    folder = Path(folder)
    plans = _json(folder / "plans.json")
    dataset = _json(folder / "dataset.json")
    if fold_names is None:
        fold_names = sorted(p.parent.name for p in folder.glob(f"fold_*/{CHECKPOINT}"))
        if not fold_names:
            raise InputError(f"{folder} has no fold_*/{CHECKPOINT}. Pass an nnU-Net trained-model folder whose "
                             "folds finished training.")
    folds, configuration_name = [], None
    for fold_name in fold_names:
        path = folder / fold_name / CHECKPOINT
        if not path.is_file():
            raise InputError(f"{path} is missing. Check the fold numbers after ':' (found "
                             f"{', '.join(sorted(p.parent.name for p in folder.glob('fold_*/' + CHECKPOINT)))}).")
        checkpoint = load_checkpoint(path)
        trainer = str(checkpoint.get("trainer_name", ""))
        if not TRAINERS.fullmatch(trainer):
            raise _refuse(folder, f"{path} was trained with {trainer!r}",
                          "only trainers that keep the plans' network are known: nnUNetTrainer and its epoch, "
                          "deep-supervision and mirroring variants")
        init_args = checkpoint.get("init_args")
        this_configuration = str(init_args.get("configuration", "") if isinstance(init_args, dict) else "")
        if configuration_name not in (None, this_configuration):
            raise InputError(f"{path} is configuration {this_configuration}, the other folds are "
                             f"{configuration_name}; a member's folds must share one configuration.")
        configuration_name = this_configuration
        axes = checkpoint.get("inference_allowed_mirroring_axes")
        if axes is not None and not (isinstance(axes, (list, tuple)) and all(a in (0, 1, 2) for a in axes)):
            raise InputError(f"{path}: inference_allowed_mirroring_axes is {axes!r}, not a list of the axes 0, 1, 2. "
                             "Restore the checkpoint from the training run.")
        folds.append(Fold(fold_name, path, hashlib.sha256(path.read_bytes()).hexdigest(),
                          checkpoint["network_weights"], trainer, tuple(int(a) for a in axes or ())))
    if len({fold.mirror_axes for fold in folds}) != 1:
        raise InputError(f"{folder}: the folds allow different mirroring axes; import them as separate models.")
    if configuration_name is None:  # the check above already refuses no folds
        raise InputError(f"{folder}: no folds to import.")
    configuration = resolve_configuration(plans, configuration_name, folder)
    check_files(folder, plans, dataset, configuration, configuration_name)
    check_supported(folder, plans, dataset, configuration, configuration_name)
    channels, channel, activation, label = output_channel(folder, dataset, label)
    return NnunetModel(folder, plans, dataset, configuration_name, configuration, folds, channels, channel,
                       activation, label)
