"""Build a tiny but real nnU-Net v2 results folder, and nnU-Net's own predictions on it.

Run as a script (nnU-Net spawns worker processes, so it must not run inside pytest):

    python Testing/nnunet_fixture.py --out .cache/nnunet-fixture

1. Four phantom cases become an nnU-Net raw dataset ``Dataset501_TTPhantom`` (three for
   training, labels = majority of the five raters) and two test images: a fresh case and
   the same case with zero slabs at its border, so that nnU-Net's crop-to-nonzero acts.
2. ``nnUNetv2_plan_and_preprocess`` plans and preprocesses it (nnU-Net's own code).
3. A second plans file ``nnUNetPlansTT.json`` shrinks the network (features 4..32) and the
   patch (32 x 64 x 64) and sets two configurations: ``3d_fullres`` at 3 x 2.8 x 2.8 mm
   (finer in z, coarser in-plane, no separate z; 12 windows) and ``3d_aniso`` at 6.5 x 2 x 2 mm
   (anisotropy 3.25 > 3: separate z, nearest neighbour along z; 30 slices, so the working
   image is padded to the 32-slice patch).
4. Two folds are fitted with plain torch (a few hundred Adam steps on 16 x 32 x 32 patches of
   nnU-Net's preprocessed cases,
   different seeds and lengths, so the folds disagree) and saved in nnU-Net's checkpoint format.
5. ``nnUNetv2_predict --save_probabilities -f 0 1`` runs each configuration on the test
   images; its ``.npz`` files are what the parity tests compare against.

Everything is deterministic for a given seed; ``stamp.json`` records what was built, so a
caller can reuse a finished folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DATASET = "Dataset501_TTPhantom"
PLANS = "nnUNetPlansTT"
CONFIGURATIONS = {"3d_fullres": [3.0, 2.8, 2.8], "3d_aniso": [6.5, 2.0, 2.0]}  # (z, y, x) mm
FEATURES = [4, 8, 16, 32, 32]
PATCH = [32, 64, 64]
TRAIN_PATCH = [16, 32, 32]  # the network is fully convolutional: small training patches are cheap
FOLD_STEPS = {0: 150, 1: 100}
LEARNING_RATE = 1e-2
TEST_CASES = ("test_000", "test_001")
STAMP = "stamp.json"
VERSION = 1  # bump when this script changes what it builds


def environment(out: Path) -> dict:
    env = dict(os.environ)
    env.update(nnUNet_raw=str(out / "nnUNet_raw"), nnUNet_preprocessed=str(out / "nnUNet_preprocessed"),
               nnUNet_results=str(out / "nnUNet_results"), nnUNet_n_proc_DA="1", nnUNet_def_n_proc="1")
    return env


def write_raw_dataset(out: Path) -> None:
    from TwinTrackLogic import phantom
    from TwinTrackLogic.io import write_image

    raw = out / "nnUNet_raw" / DATASET
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (raw / sub).mkdir(parents=True, exist_ok=True)
    for index in range(3):
        case = phantom.generate_case(index, raters=5, seed=5)
        majority = (np.sum(case.annotations, axis=0) >= 3).astype(np.uint8)
        write_image(raw / "imagesTr" / f"case_{index:03d}_0000.nii.gz", case.image, case.geometry)
        write_image(raw / "labelsTr" / f"case_{index:03d}.nii.gz", majority, case.geometry)
    test = phantom.generate_case(3, raters=5, seed=5)
    write_image(raw / "imagesTs" / f"{TEST_CASES[0]}_0000.nii.gz", test.image, test.geometry)
    bordered = test.image.copy()
    bordered[:3] = 0  # zero slabs, as outside a reconstruction's field of view
    bordered[:, :, -7:] = 0
    write_image(raw / "imagesTs" / f"{TEST_CASES[1]}_0000.nii.gz", bordered, test.geometry)
    dataset = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "tumour": 1},
               "numTraining": 3, "file_ending": ".nii.gz", "name": DATASET}
    (raw / "dataset.json").write_text(json.dumps(dataset, indent=2))


def run(command, env) -> None:
    """An nnU-Net console script from this interpreter's environment (it may not be on PATH)."""
    print("+", " ".join(command), flush=True)
    executable = Path(sys.executable).parent / command[0]
    subprocess.run([str(executable), *command[1:]], env=env, check=True)


def shrunk_plans(out: Path) -> dict:
    folder = out / "nnUNet_preprocessed" / DATASET
    plans = json.loads((folder / "nnUNetPlans.json").read_text())
    plans["plans_name"] = PLANS
    fullres = plans["configurations"]["3d_fullres"]
    fullres["patch_size"] = PATCH
    fullres["spacing"] = CONFIGURATIONS["3d_fullres"]
    fullres["architecture"]["arch_kwargs"]["features_per_stage"] = FEATURES
    plans["configurations"] = {
        "3d_fullres": fullres,
        "3d_aniso": {"inherits_from": "3d_fullres", "spacing": CONFIGURATIONS["3d_aniso"]},
    }
    (folder / f"{PLANS}.json").write_text(json.dumps(plans, indent=2))
    return plans


def build_network(plans: dict):
    """The network exactly as nnU-Net's default trainer builds it from the plans (no deep supervision)."""
    import pydoc

    architecture = plans["configurations"]["3d_fullres"]["architecture"]
    kwargs = dict(architecture["arch_kwargs"])
    for key in architecture["_kw_requires_import"]:
        if kwargs.get(key) is not None:
            kwargs[key] = pydoc.locate(kwargs[key])
    network = pydoc.locate(architecture["network_class_name"])(
        input_channels=1, num_classes=2, deep_supervision=False, **kwargs)
    network.apply(network.initialize)
    return network


def training_cases(out: Path):
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

    folder = out / "nnUNet_preprocessed" / DATASET / "nnUNetPlans_3d_fullres"
    dataset = nnUNetDatasetBlosc2(str(folder))
    cases = []
    for identifier in dataset.identifiers:
        data, seg, _, _ = dataset.load_case(identifier)
        cases.append((np.asarray(data[0], dtype=np.float32), np.asarray(seg[0]) > 0))
    return cases


def fit_fold(plans: dict, cases, fold: int):
    """A few Adam steps of cross-entropy + soft Dice on random patches, half centred on tumour."""
    import torch

    torch.manual_seed(fold)
    rng = np.random.default_rng(fold)
    network = build_network(plans)
    optimiser = torch.optim.Adam(network.parameters(), lr=LEARNING_RATE)
    losses = []
    for _ in range(FOLD_STEPS[fold]):
        images, labels = [], []
        for _ in range(4):
            image, label = cases[rng.integers(len(cases))]
            starts = []
            tumour = np.argwhere(label)
            centre = tumour[rng.integers(len(tumour))] if rng.random() < 0.5 and len(tumour) else None
            for axis, (n, p) in enumerate(zip(image.shape, TRAIN_PATCH)):
                if centre is None:
                    starts.append(int(rng.integers(0, max(n - p, 0) + 1)))
                else:
                    starts.append(int(np.clip(centre[axis] - p // 2, 0, max(n - p, 0))))
            box = tuple(slice(s, s + p) for s, p in zip(starts, TRAIN_PATCH))
            patch, target = image[box], label[box]
            pad = [(0, p - n) for n, p in zip(patch.shape, TRAIN_PATCH)]
            patch, target = np.pad(patch, pad), np.pad(target, pad)
            flips = tuple(a for a in range(3) if rng.random() < 0.5)
            images.append(np.flip(patch, flips).copy())
            labels.append(np.flip(target, flips).copy())
        x = torch.from_numpy(np.stack(images)[:, None])
        y = torch.from_numpy(np.stack(labels).astype(np.int64))
        logits = network(x)
        probability = torch.softmax(logits, 1)[:, 1]
        dice = 1 - (2 * (probability * y).sum() + 1) / (probability.sum() + y.sum() + 1)
        loss = torch.nn.functional.cross_entropy(logits, y) + dice
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(np.float32(loss.item()))
    print(f"fold {fold}: loss {losses[0]:.3f} -> {np.mean(losses[-10:]):.3f} in {len(losses)} steps", flush=True)
    return network, optimiser, losses


def save_checkpoint(path: Path, network, optimiser, losses, plans, configuration, fold, dataset_json) -> None:
    """The dict ``nnUNetTrainer.save_checkpoint`` writes (numpy scalars in ``logging``, as real runs have)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "network_weights": network.state_dict(),
        "optimizer_state": optimiser.state_dict(),
        "grad_scaler_state": None,
        "logging": {"train_losses": losses, "val_losses": losses, "mean_fg_dice": [np.float32(0.5)],
                    "ema_fg_dice": [np.float32(0.5)], "lrs": [LEARNING_RATE] * len(losses)},
        "_best_ema": np.float32(0.5),
        "current_epoch": 1,
        "init_args": {"plans": plans, "configuration": configuration, "fold": fold,
                      "dataset_json": dataset_json, "device": torch.device("cpu")},
        "trainer_name": "nnUNetTrainer",
        "inference_allowed_mirroring_axes": (0, 1, 2),
    }
    torch.save(checkpoint, path)


def build(out: Path) -> None:
    import torch

    torch.set_num_threads(2)
    started = time.time()
    out.mkdir(parents=True, exist_ok=True)
    env = environment(out)
    write_raw_dataset(out)
    run(["nnUNetv2_plan_and_preprocess", "-d", "501", "-c", "3d_fullres", "-np", "1"], env)
    plans = shrunk_plans(out)
    preprocessed = out / "nnUNet_preprocessed" / DATASET
    dataset_json = json.loads((preprocessed / "dataset.json").read_text())
    cases = training_cases(out)
    for fold in FOLD_STEPS:
        network, optimiser, losses = fit_fold(plans, cases, fold)
        for configuration in CONFIGURATIONS:
            folder = out / "nnUNet_results" / DATASET / f"nnUNetTrainer__{PLANS}__{configuration}"
            save_checkpoint(folder / f"fold_{fold}" / "checkpoint_final.pth", network, optimiser, losses,
                            plans, configuration, fold, dataset_json)
            for name in ("dataset.json", "dataset_fingerprint.json"):
                shutil.copy(preprocessed / name, folder / name)
            (folder / "plans.json").write_text(json.dumps(plans, indent=2))
    images = out / "nnUNet_raw" / DATASET / "imagesTs"
    for configuration in CONFIGURATIONS:
        run(["nnUNetv2_predict", "-i", str(images), "-o", str(out / "predictions" / configuration),
             "-d", "501", "-p", PLANS, "-c", configuration, "-f", "0", "1", "-device", "cpu",
             "--save_probabilities", "-npp", "1", "-nps", "1", "--disable_progress_bar"], env)
    (out / STAMP).write_text(json.dumps({"version": VERSION, "seconds": round(time.time() - started, 1)}))


def results_folder(out: Path, configuration: str) -> Path:
    return out / "nnUNet_results" / DATASET / f"nnUNetTrainer__{PLANS}__{configuration}"


def is_built(out: Path) -> bool:
    try:
        return json.loads((out / STAMP).read_text()).get("version") == VERSION
    except (OSError, ValueError):
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    if is_built(args.out):
        print(f"{args.out} is already built")
        return 0
    if args.out.exists():
        shutil.rmtree(args.out)
    build(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
