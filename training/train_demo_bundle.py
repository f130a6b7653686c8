"""Train the demo ensemble on phantom cohorts and write it as a TwinTrack model bundle.

    python training/train_demo_bundle.py --seed 0 --out Resources/DemoBundle

Reproduces ``Resources/DemoBundle`` from ``--seed`` (torch on CPU, a few minutes
on two cores): a localiser (tiny 3D U-Net, pancreas at 5.2 x 5.2 x 8 mm) and
three members (tiny 3D U-Nets, tumour at the phantom's 2.6 x 2.6 x 4 mm, with
different seeds, widths and training cases), then the vessel stage (``train_vessel_stage.py``).
Members learn rater 1's masks only,
as real datasets are labelled by one annotator, so the raw ensemble is
miscalibrated against the mean human response; the demo calibrator (fitted on a
separate phantom split by ``fit_demo_calibrator.py``, run at the end) fixes that.

Phantom splits (seeds of ``TwinTrackLogic.phantom``): training 11, calibration
12, 14 and 16, held-out test 13 (and 15, 17, 19 in docs/calibration-study.md). torch is used here only; the bundle runs on onnxruntime.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime
import SimpleITK as sitk
import torch
from torch import nn

from TwinTrackLogic.inference.normalisation import ct_statistics, normalise
from TwinTrackLogic.inference.resample import resample, to_spacing
from TwinTrackLogic.inference.sliding_window import sliding_window
from TwinTrackLogic.io import Geometry, write_bytes_atomic, write_json
from TwinTrackLogic.masks import dilate_mm
from TwinTrackLogic.phantom import SIZES, generate_case

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_unet import TinyUNet  # noqa: E402  (a sibling script module, not a package)

TRAIN_PHANTOM_SEED = 11
VALIDATION_PHANTOM_SEED = 13
RATERS = 5
MEMBER_SPACING_MM = SIZES["small"][1]  # (x, y, z)
MEMBER_PATCH = (32, 48, 48)  # (z, y, x) voxels
LOCALISER_SPACING_MM = (5.2, 5.2, 8.0)
LOCALISER_PATCH = (24, 48, 48)
REGION_DILATION_MM = 10.0
# (name, torch seed, base width, training cases (indices into the training split))
MEMBERS = (("member_1", 1, 8, slice(0, 20)), ("member_2", 2, 6, slice(4, 24)),
           ("member_3", 3, 8, slice(0, 24, 1)))


# --- data ------------------------------------------------------------------

def _sitk(array: np.ndarray, geometry: Geometry) -> sitk.Image:
    return geometry.apply_to(sitk.GetImageFromArray(array))


def member_case(index: int, seed: int):
    """(HU array, rater-1 mask, organ mask) on the member grid (the phantom's own)."""
    case = generate_case(index, RATERS, seed)
    image = sitk.GetArrayFromImage(to_spacing(_sitk(case.image, case.geometry), MEMBER_SPACING_MM))
    return image, case.annotations[0].astype(np.int64), case.pancreas.astype(bool), case


def localiser_case(index: int, seed: int):
    """(HU array, organ mask) on the localiser grid, resampled as the engine does."""
    case = generate_case(index, RATERS, seed)
    image = to_spacing(_sitk(case.image, case.geometry), LOCALISER_SPACING_MM)
    target = Geometry.from_sitk(image)
    organ = resample(_sitk(case.pancreas.astype(np.float32), case.geometry), target)
    return sitk.GetArrayFromImage(image), (sitk.GetArrayFromImage(organ) > 0.5).astype(np.int64)


def _crop_start(centre, shape, patch, rng, jitter):
    start = []
    for c, n, p, j in zip(centre, shape, patch, jitter):
        s = int(c) - p // 2 + int(rng.integers(-j, j + 1))
        start.append(min(max(s, 0), n - p))
    return start


def sample_batch(volumes, labels, anchors, patch, batch, rng, positive_fraction, jitter, turn_only=False):
    """Random patches (B, 1, z, y, x) and labels (B, z, y, x), flipped in y and x at random.

    ``turn_only``: flip y and x together (a half turn in-plane), never one alone, for labels that
    tell left from right (a mirror image would swap the SMV and the SMA sides).
    """
    images, targets = [], []
    for _ in range(batch):
        k = int(rng.integers(len(volumes)))
        positives, everywhere = anchors[k]
        pool = positives if (len(positives) and rng.random() < positive_fraction) else everywhere
        centre = pool[int(rng.integers(len(pool)))]
        start = _crop_start(centre, volumes[k].shape, patch, rng, jitter)
        box = tuple(slice(s, s + p) for s, p in zip(start, patch))
        image, target = volumes[k][box], labels[k][box]
        if turn_only:
            if rng.random() < 0.5:
                image, target = np.flip(image, (1, 2)), np.flip(target, (1, 2))
        else:
            for axis in (1, 2):
                if rng.random() < 0.5:
                    image, target = np.flip(image, axis), np.flip(target, axis)
        images.append(np.ascontiguousarray(image)[None])
        targets.append(np.ascontiguousarray(target))
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(targets))


def loss_function(logits, target):
    """Cross-entropy plus soft Dice of the foreground over the batch (nnU-Net's default pair)."""
    cross_entropy = nn.functional.cross_entropy(logits, target)
    foreground = torch.softmax(logits, 1)[:, 1]
    truth = (target == 1).float()
    dice = (2 * (foreground * truth).sum() + 1) / (foreground.sum() + truth.sum() + 1)
    return cross_entropy + (1 - dice)


def train(model, volumes, labels, anchors, patch, iterations, seed, positive_fraction, jitter, name,
          loss=loss_function, turn_only=False, max_lr=3e-3):
    rng = np.random.default_rng(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=max_lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=max_lr, total_steps=iterations)
    model.train()
    started, running = time.time(), []
    for step in range(iterations):
        images, targets = sample_batch(volumes, labels, anchors, patch, 4, rng, positive_fraction, jitter, turn_only)
        value = loss(model(images), targets)
        optimiser.zero_grad()
        value.backward()
        optimiser.step()
        schedule.step()
        running.append(value.item())
        if (step + 1) % 50 == 0 or step + 1 == iterations:
            print(f"  {name}: step {step + 1}/{iterations}, loss {np.mean(running[-50:]):.3f}, "
                  f"{time.time() - started:.0f} s", flush=True)
    model.eval()
    return model


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return float(2 * (a & b).sum() / total) if total else 1.0


@torch.no_grad()
def validation_probability(model, image: np.ndarray, patch=LOCALISER_PATCH) -> np.ndarray:
    """Organ/tumour probability of one volume through TwinTrack's sliding window, for validation.

    Patches, not one whole-volume pass: instance normalisation statistics depend on the field of
    view, so the network must see patches as in training and in the engine.
    """
    def predictor(batch):
        return torch.softmax(model(torch.from_numpy(batch)), 1)[:, 1].numpy()

    return sliding_window(image, predictor, patch, 0.5, batch_size=2)


# --- export ----------------------------------------------------------------

def export_onnx(model, patch, path: Path) -> str:
    """Export with a dynamic batch axis, check onnxruntime against torch, return the sha256."""
    example = torch.zeros((2, 1) + tuple(patch))
    buffer = io.BytesIO()
    torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=17, input_names=["image"],
                      output_names=["logits"], dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    data = buffer.getvalue()
    check = torch.randn((3, 1) + tuple(patch), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(check).numpy()
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    actual = session.run(None, {"image": check.numpy()})[0]
    difference = float(np.abs(actual - expected).max())
    print(f"  {path.name}: onnxruntime vs torch max |logit difference| {difference:.2e}, "
          f"{len(data) / 1e6:.2f} MB")
    if difference > 1e-4:
        raise SystemExit(f"{path.name}: onnxruntime and torch disagree by {difference:g} (> 1e-4)")
    write_bytes_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def stage_entry(name, onnx_name, sha256, spacing, patch, normalisation, **extra):
    entry = {"name": name, "model": onnx_name, "sha256": sha256, "spacing_mm": list(spacing),
             "patch_size": list(patch), "normalisation": normalisation,
             "output": {"channels": 2, "channel": 1, "activation": "softmax"}}
    entry.update(extra)
    return entry


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    parser.add_argument("--out", type=Path, default=Path("Resources/DemoBundle"))
    parser.add_argument("--train-cases", type=int, default=24)
    parser.add_argument("--iterations", type=int, default=400, help="optimiser steps per member")
    parser.add_argument("--localiser-iterations", type=int, default=250)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-calibrator", action="store_true", help="skip fitting the demo calibrator")
    parser.add_argument("--keep-localiser", action="store_true",
                        help="reuse OUT/localiser.onnx from an earlier run with the same seed instead of "
                             "training it again (training is deterministic, so the result is the same)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()

    print("Localiser: pancreas at 5.2 x 5.2 x 8 mm", flush=True)
    cases = [localiser_case(i, TRAIN_PHANTOM_SEED) for i in range(args.train_cases)]
    body = np.concatenate([image[image > -500] for image, _ in cases])
    localiser_norm = ct_statistics(body)
    pad = (4, 12, 12)
    volumes = [np.pad(normalise(image, localiser_norm), [(p, p) for p in pad], mode="edge") for image, _ in cases]
    labels = [np.pad(organ, [(p, p) for p in pad]) for _, organ in cases]
    anchors = [(np.argwhere(label == 1), np.array([[v.shape[0] // 2, v.shape[1] // 2, v.shape[2] // 2]]))
               for v, label in zip(volumes, labels)]
    if args.keep_localiser and (args.out / "localiser.onnx").is_file():
        localiser_sha = hashlib.sha256((args.out / "localiser.onnx").read_bytes()).hexdigest()
        print(f"  kept {args.out / 'localiser.onnx'} ({localiser_sha[:12]})", flush=True)
    else:
        torch.manual_seed(args.seed * 100)
        localiser = train(TinyUNet(8), volumes, labels, anchors, LOCALISER_PATCH, args.localiser_iterations,
                          args.seed * 100, 0.0, pad, "localiser")
        validation = [localiser_case(i, VALIDATION_PHANTOM_SEED) for i in range(4)]
        scores = [dice(validation_probability(localiser, normalise(image, localiser_norm)) > 0.5, organ == 1)
                  for image, organ in validation]
        print(f"  localiser Dice vs pancreas on held-out phantoms (seed {VALIDATION_PHANTOM_SEED}): "
              f"{np.mean(scores):.3f} ({', '.join(f'{s:.2f}' for s in scores)})", flush=True)
        localiser_sha = export_onnx(localiser, LOCALISER_PATCH, args.out / "localiser.onnx")

    print("Members: tumour (rater 1's masks only) at 2.6 x 2.6 x 4 mm", flush=True)
    cases = [member_case(i, TRAIN_PHANTOM_SEED) for i in range(args.train_cases)]
    organ_hu = np.concatenate([image[organ] for image, _, organ, _ in cases])
    member_norm = ct_statistics(organ_hu)
    volumes = [normalise(image, member_norm) for image, _, _, _ in cases]
    labels = [label for _, label, _, _ in cases]
    anchors = [(np.argwhere(label == 1), np.argwhere(organ)) for _, label, organ, _ in cases]
    validation = [member_case(i, VALIDATION_PHANTOM_SEED) for i in range(4)]
    validation_inputs = [normalise(image, member_norm) for image, _, _, _ in validation]
    majority = [np.mean([a > 0 for a in case.annotations], 0) > 0.5 for _, _, _, case in validation]
    # Score inside the pancreas dilated as the engine's region (members never run outside it).
    regions = [dilate_mm(organ, case.geometry, REGION_DILATION_MM) for _, _, organ, case in validation]
    members, ensemble_sum = [], [np.zeros(m.shape, np.float32) for m in majority]
    for name, member_seed, width, split in MEMBERS:
        torch.manual_seed(args.seed * 100 + member_seed)
        picked = range(args.train_cases)[split]
        model = train(TinyUNet(width), [volumes[i] for i in picked], [labels[i] for i in picked],
                      [anchors[i] for i in picked], MEMBER_PATCH, args.iterations,
                      args.seed * 100 + member_seed, 0.67, (8, 12, 12), name)
        probabilities = [validation_probability(model, image, MEMBER_PATCH) * region
                         for image, region in zip(validation_inputs, regions)]
        for total, p in zip(ensemble_sum, probabilities):
            total += p
        scores = [dice(p > 0.5, m) for p, m in zip(probabilities, majority)]
        print(f"  {name} Dice vs rater majority in the region on held-out phantoms "
              "(sliding window, no mirroring): "
              f"{np.mean(scores):.3f}", flush=True)
        sha = export_onnx(model, MEMBER_PATCH, args.out / f"{name}.onnx")
        members.append(stage_entry(name, f"{name}.onnx", sha, MEMBER_SPACING_MM, MEMBER_PATCH, member_norm))
    scores = [dice(total / len(MEMBERS) > 0.5, m) for total, m in zip(ensemble_sum, majority)]
    print(f"  ensemble Dice vs rater majority in the region on held-out phantoms "
          "(sliding window, no mirroring): "
          f"{np.mean(scores):.3f}", flush=True)

    manifest = {
        "format": "twintrack-bundle",
        "version": 1,
        "id": f"twintrack-demo-phantom-seed{args.seed}",
        "description": ("Demo ensemble trained on TwinTrack phantoms (not for clinical use): a pancreas "
                        "localiser and three tumour members trained on rater 1's masks only."),
        "raters": RATERS,
        "default_calibrator": None,
        "sliding_window": {"overlap": 0.5, "importance": "gaussian", "sigma_scale": 0.125,
                           "batch_size": 2, "mirror_axes": [1, 2]},
        "localiser": stage_entry("localiser", "localiser.onnx", localiser_sha, LOCALISER_SPACING_MM,
                                 LOCALISER_PATCH, localiser_norm, threshold=0.5,
                                 dilation_mm=REGION_DILATION_MM, mirror_axes=[]),
        "members": members,
        "provenance": {"training": {
            "script": "training/train_demo_bundle.py", "seed": args.seed,
            "phantom_seeds": {"training": TRAIN_PHANTOM_SEED, "validation": VALIDATION_PHANTOM_SEED},
            "label": "annotation_1 (rater 1 only)", "iterations": args.iterations}},
    }
    write_json(args.out / "manifest.json", manifest)
    print(f"Wrote {args.out / 'manifest.json'} ({time.time() - started:.0f} s)", flush=True)

    from train_vessel_stage import add_vessel_stage  # sibling scripts, on sys.path since start-up
    add_vessel_stage(args.out, args.seed, threads=args.threads)
    from measure_demo_domain import measure_demo_domain
    measure_demo_domain(args.out)
    if not args.no_calibrator:
        from fit_demo_calibrator import fit_demo_calibrator
        fit_demo_calibrator(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
