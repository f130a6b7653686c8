"""The manifest's nnU-Net-compatible stage mode (bundle format version 2).

A stage with ``"mode": "nnunet"`` lists the folds of one nnU-Net configuration
under ``models`` (each ``{"name", "model", "sha256"}``) instead of one ``model``,
and an ``nnunet`` section with nnU-Net's resampling settings::

    "nnunet": {"image_resampling": {"order": 3, "order_z": 0, "force_separate_z": null},
               "logit_resampling": {"order": 1, "order_z": 0, "force_separate_z": null},
               "anisotropy_threshold": 3.0, "crop_to_nonzero": true}

``inference/nnunet_mode.py`` runs such a stage. This module only reads and
validates; messages name the manifest and the key through the bundle reader.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

SPLINE_ORDERS = range(0, 6)


@dataclass(frozen=True)
class ModelFile:
    """One fold's ONNX file inside the bundle."""

    name: str
    path: Path
    sha256: str


@dataclass(frozen=True)
class Resampling:
    """nnU-Net's ``resample_data_or_seg_to_shape`` settings (``force_separate_z`` None: decide by anisotropy)."""

    order: int
    order_z: int
    force_separate_z: Optional[bool]


@dataclass(frozen=True)
class NnunetSettings:
    folds: Tuple[ModelFile, ...]
    image_resampling: Resampling
    logit_resampling: Resampling
    anisotropy_threshold: float
    crop_to_nonzero: bool


DEFAULT_IMAGE_RESAMPLING = {"order": 3, "order_z": 0, "force_separate_z": None}
DEFAULT_LOGIT_RESAMPLING = {"order": 1, "order_z": 0, "force_separate_z": None}


def read_models(reader, mapping, where, check_sha256) -> Tuple[ModelFile, ...]:
    entries = reader.get(mapping, "models", list, where)
    if not entries:
        raise reader.fail(f"{where}.models", "must list at least one fold's model")
    folds = []
    for k, entry in enumerate(entries):
        at = f"{where}.models[{k}]"
        folds.append(ModelFile(name=reader.get(entry, "name", str, at, f"fold {k}"),
                               path=reader.file(reader.get(entry, "model", str, at), f"{at}.model"),
                               sha256=check_sha256(reader.get(entry, "sha256", str, at), f"{at}.sha256")))
    return tuple(folds)


def _resampling(reader, mapping, where, defaults) -> Resampling:
    mapping = {**defaults, **(mapping or {})}
    values = {}
    for key in ("order", "order_z"):
        values[key] = reader.get(mapping, key, int, where)
        if values[key] not in SPLINE_ORDERS:
            raise reader.fail(f"{where}.{key}", f"must be a spline order 0..5, not {values[key]}")
    force = mapping.get("force_separate_z")
    if force is not None and not isinstance(force, bool):
        raise reader.fail(f"{where}.force_separate_z", f"must be true, false or null, not {force!r}")
    return Resampling(values["order"], values["order_z"], force)


def read_settings(reader, mapping, where, folds: Tuple[ModelFile, ...]) -> NnunetSettings:
    section = reader.get(mapping, "nnunet", dict, where, {})
    at = f"{where}.nnunet"
    threshold = reader.get(section, "anisotropy_threshold", float, at, 3.0)
    if threshold <= 1.0:
        raise reader.fail(f"{at}.anisotropy_threshold", f"must be above 1, not {threshold}")
    return NnunetSettings(
        folds=folds,
        image_resampling=_resampling(reader, section.get("image_resampling"), f"{at}.image_resampling",
                                     DEFAULT_IMAGE_RESAMPLING),
        logit_resampling=_resampling(reader, section.get("logit_resampling"), f"{at}.logit_resampling",
                                     DEFAULT_LOGIT_RESAMPLING),
        anisotropy_threshold=threshold,
        crop_to_nonzero=reader.get(section, "crop_to_nonzero", bool, at, True),
    )
