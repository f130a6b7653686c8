"""Train the demo bundle's vessel stage on phantoms and add it to the bundle's manifest.

    python training/train_vessel_stage.py --seed 0 --bundle Resources/DemoBundle

A tiny 3D U-Net (``tiny_unet.py``, six classes: background and the five CURVAS vessels) learns
the phantom's vessel label map at the phantom's 2.6 x 2.6 x 4 mm, on the training split of
``train_demo_bundle.py`` (phantom seed 11), in a few minutes on two CPU cores. Patches are
turned by half a turn in-plane at random but never mirrored: a mirror image would put the SMV on
the SMA's side. The script exports it to ``vessels.onnx``, declares it as the manifest's
``vessels`` stage (format version 3), then runs the bundle as ``twintrack predict`` does on
held-out phantoms (seed 13, never used for training) and records the Dice per vessel on the CT
grid in the manifest (``provenance.vessels``). ``--keep-model`` measures an existing
``vessels.onnx`` again without training.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from TwinTrackLogic.inference.bundle import load_bundle
from TwinTrackLogic.inference import Ensemble
from TwinTrackLogic.inference.normalisation import ct_statistics, normalise
from TwinTrackLogic.inference.resample import to_spacing
from TwinTrackLogic.io import Volume, write_json
from TwinTrackLogic.phantom import SIZES, generate_case
from TwinTrackLogic.vessels import VESSEL_LABELS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_unet import TinyUNet  # noqa: E402  (sibling script modules, not a package)
from train_demo_bundle import TRAIN_PHANTOM_SEED, VALIDATION_PHANTOM_SEED, _sitk, export_onnx, train  # noqa: E402

SPACING_MM = SIZES["small"][1]  # (x, y, z)
PATCH = (16, 32, 32)  # (z, y, x) voxels: 64 x 83 x 83 mm, enough to see the aorta beside the SMA
CLASSES = 1 + len(VESSEL_LABELS)  # channel = CURVAS label value, 0 background
WIDTH = 6
MAX_LR = 1e-2
CLASS_WEIGHTS = torch.tensor([1.0] + [10.0] * len(VESSEL_LABELS))
HELD_OUT_CASES = 6


def vessel_case(index: int, seed: int):
    """(HU array, vessel labels) on the stage's working grid (the small phantom's own)."""
    case = generate_case(index, raters=1, seed=seed)
    image = sitk_array(to_spacing(_sitk(case.image, case.geometry), SPACING_MM))
    if image.shape != case.vessels.shape:
        raise SystemExit(f"working grid {image.shape} differs from the phantom's {case.vessels.shape}")
    return image, case.vessels.astype(np.int64)


def sitk_array(image) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(image)


def multiclass_loss(logits, target):
    """Cross-entropy (vessel voxels weighted up: they are under 1 % of the CT) plus the soft Dice of each
    vessel, averaged (thin vessels count as much as the aorta)."""
    cross_entropy = nn.functional.cross_entropy(logits, target, weight=CLASS_WEIGHTS)
    probability = torch.softmax(logits, 1)
    dice = []
    for label in range(1, CLASSES):
        truth = (target == label).float()
        dice.append((2 * (probability[:, label] * truth).sum() + 1) / (probability[:, label].sum() + truth.sum() + 1))
    return cross_entropy + 1 - torch.stack(dice).mean()


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return float(2 * (a & b).sum() / total) if total else 1.0


def held_out_dice(bundle_dir: Path, seed: int = VALIDATION_PHANTOM_SEED, cases: int = HELD_OUT_CASES,
                  threads: int = 2) -> dict:
    """Dice per vessel of the bundle's vessel map on held-out phantoms, on the CT grid: mean and minimum."""
    ensemble = Ensemble(load_bundle(bundle_dir), device="cpu", threads=threads)
    scores = {name: [] for name in VESSEL_LABELS}
    for index in range(cases):
        case = generate_case(index, raters=1, seed=seed)
        vessels = ensemble.predict_vessels(Volume(case.image.astype(np.float32), case.geometry))
        for name, label in VESSEL_LABELS.items():
            scores[name].append(dice(vessels == label, case.vessels == label))
        print(f"  held-out case {index} (seed {seed}): "
              + ", ".join(f"{name} {values[-1]:.3f}" for name, values in scores.items()), flush=True)
    return {name: {"mean": round(float(np.mean(values)), 3), "min": round(float(np.min(values)), 3)}
            for name, values in scores.items()}


def vessel_note(scores: dict) -> str:
    """The sentence ``domain.description`` carries about the vessel stage's held-out Dice."""
    return ("Vessel stage: Dice per vessel on held-out phantoms (mean, lowest of "
            f"{HELD_OUT_CASES} cases): " + ", ".join(f"{name} {row['mean']:.2f} ({row['min']:.2f})"
                                                     for name, row in scores.items()) + ".")


def add_vessel_stage(bundle_dir: Path, seed: int = 0, train_cases: int = 16, iterations: int = 1000,
                     threads: int = 2, keep_model: bool = False) -> dict:
    """Train (or keep) ``vessels.onnx``, declare it in the manifest and record its held-out Dice."""
    started = time.time()
    onnx_path = bundle_dir / "vessels.onnx"
    print("Vessel stage: background + 5 CURVAS vessels at 2.6 x 2.6 x 4 mm", flush=True)
    cases = [vessel_case(i, TRAIN_PHANTOM_SEED) for i in range(train_cases)]
    body = np.concatenate([image[image > -500] for image, _ in cases])
    norm = ct_statistics(body)
    if keep_model and onnx_path.is_file():
        sha = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
        print(f"  kept {onnx_path} ({sha[:12]})", flush=True)
    else:
        volumes = [normalise(image, norm) for image, _ in cases]
        labels = [label for _, label in cases]
        anchors = [(np.argwhere(label > 0), np.argwhere(image > -500)) for image, label in cases]
        torch.manual_seed(seed * 100 + 50)
        model = train(TinyUNet(WIDTH, CLASSES), volumes, labels, anchors, PATCH, iterations,
                      seed * 100 + 50, 0.9, (6, 12, 12), "vessels", loss=multiclass_loss, turn_only=True,
                      max_lr=MAX_LR)
        sha = export_onnx(model, PATCH, onnx_path)
        print(f"  trained in {time.time() - started:.0f} s", flush=True)

    manifest = dict(load_bundle(bundle_dir).manifest)
    manifest["version"] = 3
    manifest["vessels"] = {
        "name": "vessels", "model": onnx_path.name, "sha256": sha, "spacing_mm": list(SPACING_MM),
        "patch_size": list(PATCH), "normalisation": norm,
        "output": {"channels": CLASSES, "activation": "softmax"},
        "labels": {str(label): name for name, label in VESSEL_LABELS.items()},
        "mirror_axes": [],  # mirroring one axis alone would swap the sides of the SMV and SMA
    }
    write_json(bundle_dir / "manifest.json", manifest)
    scores = held_out_dice(bundle_dir, threads=threads)
    manifest["provenance"] = dict(manifest.get("provenance", {}))
    manifest["provenance"]["vessels"] = {
        "script": "training/train_vessel_stage.py", "seed": seed,
        "phantom_seeds": {"training": TRAIN_PHANTOM_SEED, "held_out": VALIDATION_PHANTOM_SEED},
        "training_cases": train_cases, "iterations": iterations, "label": "the phantom's vessels.nii.gz",
        "held_out_cases": HELD_OUT_CASES, "held_out_dice_on_ct_grid": scores}
    if manifest.get("domain"):
        manifest["domain"] = dict(manifest["domain"])
        described = manifest["domain"].get("description", "").split(" Vessel stage:")[0]
        manifest["domain"]["description"] = f"{described} {vessel_note(scores)}".strip()
    write_json(bundle_dir / "manifest.json", manifest)
    print(f"  held-out Dice per vessel (seed {VALIDATION_PHANTOM_SEED}, {HELD_OUT_CASES} cases, mean and lowest): "
          f"{scores}", flush=True)
    print(f"  wrote {bundle_dir / 'manifest.json'} ({time.time() - started:.0f} s)", flush=True)
    return scores


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    parser.add_argument("--bundle", type=Path, default=Path("Resources/DemoBundle"))
    parser.add_argument("--train-cases", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=1000, help="optimiser steps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep-model", action="store_true",
                        help="keep BUNDLE/vessels.onnx and only (re)declare and measure it")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    add_vessel_stage(args.bundle, args.seed, args.train_cases, args.iterations, args.threads, args.keep_model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
