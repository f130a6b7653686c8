"""Write a TwinTrack bundle (format version 2) from nnU-Net trained-model folders.

Each MODEL_FOLDER becomes one member in the nnU-Net-compatible mode: its folds
are exported to ONNX and blended as logits (nnU-Net's way), while different
folders (configurations or models) are averaged as probabilities, as
``nnUNetv2_ensemble`` does. An optional localiser folder becomes the localiser
stage in the same mode. The manifest records, per stage, the nnU-Net version,
plans, trainer, configuration, folds, checkpoint sha256s and the onnxruntime
check. The bundle is written next to ``out`` and renamed into place at the end.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from TwinTrackLogic.errors import InputError
from TwinTrackLogic.inference.bundle import FORMAT, MANIFEST, VERSION, load_bundle

from .export import OPSET, export_fold
from .results import NnunetModel, parse_spec, read_model

CALIBRATOR = "calibrator.json"


def _version(package: str) -> Optional[str]:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _stage(model: NnunetModel, folder: Path, prefix: str, say: Callable[[str], None]) -> dict:
    models, checks = [], []
    for fold in model.folds:
        relative = f"{prefix}/{fold.name}.onnx"
        check = export_fold(model, fold, folder / relative)
        say(f"{model.folder.name} {fold.name}: exported {relative}; onnxruntime vs torch max |Δ logit| "
            f"{check['max_abs_logit_difference']:.2g} (tolerance {check['tolerance']:.2g}, "
            f"max |logit| {check['max_abs_logit']:.3g})")
        models.append({"name": fold.name, "model": relative,
                       "sha256": hashlib.sha256((folder / relative).read_bytes()).hexdigest()})
        checks.append({"fold": fold.name, "checkpoint_sha256": fold.sha256, "onnxruntime_check": check})
    plans_name = model.plans.get("plans_name")
    return {
        "name": f"{model.plans.get('dataset_name', 'nnU-Net')} {model.configuration_name}",
        "mode": "nnunet",
        "models": models,
        "spacing_mm": list(reversed(model.spacing_zyx)),
        "patch_size": model.patch_size,
        "normalisation": model.normalisation(),
        "output": {"channels": model.channels, "channel": model.channel, "activation": model.activation},
        "sliding_window": {"overlap": 0.5, "importance": "gaussian", "sigma_scale": 0.125,
                           "mirror_axes": list(model.folds[0].mirror_axes)},
        "nnunet": {"image_resampling": model.resampling("resampling_fn_data"),
                   "logit_resampling": model.resampling("resampling_fn_probabilities"),
                   "anisotropy_threshold": 3.0, "crop_to_nonzero": True},
        "provenance": {"source": "nnU-Net v2", "nnunetv2_version": _version("nnunetv2"),
                       "model_folder": model.folder.name, "dataset": model.plans.get("dataset_name"),
                       "plans": plans_name, "trainer": model.folds[0].trainer,
                       "configuration": model.configuration_name, "label": model.label,
                       "labels": model.dataset.get("labels"), "folds": checks,
                       "exported_with": {"torch": _version("torch"), "opset": OPSET,
                                         "dynamic_network_architectures": _version("dynamic_network_architectures")}},
    }


# The training spacings' range is widened by this share at each end before it becomes the domain, so
# that a CT at a training spacing read at another precision (DICOM text, NIfTI float32) stays inside.
SPACING_MARGIN = 0.05


def _domain(members: Sequence[NnunetModel], say: Callable[[str], None]) -> Optional[dict]:
    """The bundle's ``domain`` from the members' ``dataset_fingerprint.json`` (nnU-Net copies it into
    each trained-model folder): CT, and the training cases' voxel spacing. None when a member is not
    CT-normalised or has no fingerprint; nnU-Net records no body HU percentiles or organ volumes."""
    from TwinTrackLogic.io.strictjson import read_json

    spacings: List[List[float]] = []
    for model in members:
        path = model.folder / "dataset_fingerprint.json"
        if model.normalisation()["scheme"] != "ct" or not path.is_file():
            say(f"domain: none declared ({model.folder.name} "
                f"{'is not CT-normalised' if path.is_file() else 'has no dataset_fingerprint.json'}); "
                "predict cannot warn about unlike CTs until you add one (docs/bundle.md)")
            return None
        found = read_json(path, "nnU-Net dataset fingerprint").get("spacings")
        valid = isinstance(found, list) and found and all(
            isinstance(v, list) and len(v) == 3 and all(isinstance(x, (int, float)) and 0 < x <= 1000 for x in v)
            for v in found)
        if not valid:
            say(f"domain: none declared ({path} holds no usable 'spacings'); add one by hand (docs/bundle.md)")
            return None
        spacings += [[float(x) for x in v] for v in found]
    low = [round(min(v[a] for v in spacings) * (1 - SPACING_MARGIN), 4) for a in (2, 1, 0)]  # (z, y, x) -> (x, y, z)
    high = [round(max(v[a] for v in spacings) * (1 + SPACING_MARGIN), 4) for a in (2, 1, 0)]
    say(f"domain: CT, spacing {low} to {high} mm (x, y, z): the {len(spacings)} training cases' range "
        f"from dataset_fingerprint.json, widened by {SPACING_MARGIN:.0%}; no HU or organ ranges (nnU-Net does "
        "not record them)")
    return {"modality": "CT", "synthetic": False,
            "description": (f"From nnU-Net's dataset_fingerprint.json: the voxel spacing of the {len(spacings)} "
                            f"training cases, widened by {SPACING_MARGIN:.0%}. Add body_hu and organ ranges "
                            "measured on your training data (docs/bundle.md)."),
            "spacing_mm": {"min": low, "max": high}}


def import_nnunet(member_specs: Sequence[str], out: Path, tumour_label: Optional[str] = None,
                  localiser_spec: Optional[str] = None, organ_label: Optional[str] = None,
                  dilation_mm: float = 10.0, calibrator: Optional[Path] = None, bundle_id: Optional[str] = None,
                  say: Callable[[str], None] = print) -> Path:
    """Export the models to a new bundle folder ``out``; returns it after loading it back."""
    out = Path(out)
    if out.exists():
        raise InputError(f"{out} already exists; choose a new --out folder (nothing is overwritten).")
    if dilation_mm < 0:
        raise InputError(f"--dilation-mm must be 0 or more, not {dilation_mm}.")
    members: List[NnunetModel] = [read_model(*parse_spec(spec), label=tumour_label) for spec in member_specs]
    localiser = read_model(*parse_spec(localiser_spec), label=organ_label) if localiser_spec else None
    raters = None
    if calibrator is not None:
        from TwinTrackLogic.calibration import load_calibrator
        from TwinTrackLogic.calibration.fileformat import read_json

        load_calibrator(calibrator)  # refuses a bad file before any export work
        raters = read_json(calibrator).get("fitting", {}).get("raters")
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    try:
        manifest: Dict[str, Any] = {"format": FORMAT, "version": VERSION,
                    "id": bundle_id or "nnunet-" + "+".join(f"{m.plans.get('dataset_name')}-{m.configuration_name}"
                                                              for m in members),
                    "description": "Imported from nnU-Net v2: " + ", ".join(
                        f"{m.folder.parent.name}/{m.folder.name} ({', '.join(f.name for f in m.folds)})"
                        for m in members),
                    "default_calibrator": None, "members": []}
        for k, model in enumerate(members):
            (partial / f"member_{k + 1}").mkdir()
            manifest["members"].append(_stage(model, partial, f"member_{k + 1}", say))
        if localiser is not None:
            (partial / "localiser").mkdir()
            manifest["localiser"] = {**_stage(localiser, partial, "localiser", say), "threshold": 0.5,
                                     "dilation_mm": float(dilation_mm)}
        domain = _domain(members, say)
        if domain is not None:
            manifest["domain"] = domain
        if calibrator is not None:
            shutil.copyfile(calibrator, partial / CALIBRATOR)
            manifest["default_calibrator"] = CALIBRATOR
            if raters is not None:
                manifest["raters"] = int(raters)
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        load_bundle(partial)  # what was written must read back
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out
