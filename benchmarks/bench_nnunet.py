"""nnU-Net folds through TwinTrack (onnxruntime, nnU-Net mode) against nnU-Net's own predictor, same run.

    .venv/bin/pip install -e ".[nnunet]"
    .venv/bin/python benchmarks/bench_nnunet.py [--threads 2] [--network shrunk|default|both]

Uses the tiny nnU-Net results folder of the parity tests (Testing/nnunet_fixture.py, built under
.cache/ if missing). For each network, one fold is exported with `twintrack bundle from-nnunet`,
then each side runs in a fresh process on the same phantom CT with the same thread count:

- nnU-Net: ``nnUNetPredictor(device=cpu)`` initialised from the model folder (not timed), then
  ``predict_single_npy_array(..., save_or_return_probabilities=True)`` (timed);
- TwinTrack: ``Ensemble(bundle).predict(volume)`` after loading (not timed).

Prints time, peak resident memory of each process, max |Δp| and the ratios. Networks: ``shrunk``
is the fixture's fold 0 (PlainConvUNet 4-32 features, patch 32 x 64 x 64); ``default`` is
nnU-Net's own plan for the phantom (PlainConvUNet 32-320, patch 48 x 96 x 96, 16 M parameters)
with random weights, saved in nnU-Net's checkpoint format (timing only needs the architecture).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "Testing"))

from nnunet_fixture import DATASET, TEST_CASES, is_built, results_folder  # noqa: E402

FIXTURE = ROOT / ".cache" / "nnunet-fixture"


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss it is not inherited over exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def test_image() -> Path:
    return FIXTURE / "nnUNet_raw" / DATASET / "imagesTs" / f"{TEST_CASES[0]}_0000.nii.gz"


def child_nnunet(model: Path, threads: int, out: Path) -> dict:
    import torch
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    torch.set_num_threads(threads)
    predictor = nnUNetPredictor(device=torch.device("cpu"), perform_everything_on_device=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(model), use_folds=(0,))
    image, properties = SimpleITKIO().read_images([str(test_image())])
    started = time.perf_counter()
    _, probabilities = predictor.predict_single_npy_array(image, properties, None, None, True)
    seconds = time.perf_counter() - started
    np.save(out, probabilities[1].astype(np.float32))
    return {"seconds": seconds, "peak_mb": peak_rss_mb()}


def child_twintrack(bundle: Path, threads: int, out: Path) -> dict:
    from TwinTrackLogic.inference import Ensemble
    from TwinTrackLogic.io import read_image

    ensemble = Ensemble(bundle, device="cpu", threads=threads)
    image = read_image(test_image(), dtype=np.float32)
    started = time.perf_counter()
    probability = ensemble.predict(image).probability
    seconds = time.perf_counter() - started
    np.save(out, probability)
    return {"seconds": seconds, "peak_mb": peak_rss_mb()}


CHILDREN = {"nnunet": child_nnunet, "twintrack": child_twintrack}


def run_child(name: str, target: Path, threads: int, out: Path) -> dict:
    output = subprocess.run([sys.executable, __file__, "--child", name, "--target", str(target),
                             "--threads", str(threads), "--out", str(out)],
                            check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(output.stdout.strip().splitlines()[-1])


def default_size_model(work: Path) -> Path:
    """nnU-Net's own 3d_fullres plan for the phantom with random (He-initialised) weights."""
    import torch

    from nnunet_fixture import build_network, save_checkpoint

    preprocessed = FIXTURE / "nnUNet_preprocessed" / DATASET
    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text())
    dataset = json.loads((preprocessed / "dataset.json").read_text())
    folder = work / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    torch.manual_seed(0)
    network = build_network(plans)
    optimiser = torch.optim.SGD(network.parameters(), lr=0.01)
    save_checkpoint(folder / "fold_0" / "checkpoint_final.pth", network, optimiser, [np.float32(0.0)], plans,
                    "3d_fullres", 0, dataset)
    (folder / "plans.json").write_text(json.dumps(plans))
    shutil.copy(preprocessed / "dataset.json", folder / "dataset.json")
    return folder


def with_batch_size(bundle: Path, batch_size: int) -> Path:
    """A copy of ``bundle`` whose members run ``batch_size`` windows per onnxruntime call."""
    copy = bundle.with_name(f"{bundle.name}-batch{batch_size}")
    shutil.copytree(bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    for member in manifest["members"]:
        member["sliding_window"]["batch_size"] = batch_size
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def compare(name: str, model: Path, work: Path, threads: int, batch_sizes) -> None:
    from TwinTrackLogic.cli import main as twintrack

    bundle = work / f"bundle-{name}"
    assert twintrack(["bundle", "from-nnunet", f"{model}:0", "--out", str(bundle)]) == 0
    theirs = run_child("nnunet", model, threads, work / f"{name}-nnunet.npy")
    ours = run_child("twintrack", with_batch_size(bundle, batch_sizes[0]), threads, work / f"{name}-twintrack.npy")
    theirs_p, ours_p = np.load(work / f"{name}-nnunet.npy"), np.load(work / f"{name}-twintrack.npy")
    difference = np.abs(theirs_p - ours_p).max()
    decided = np.abs(theirs_p - 0.5) > 2.5e-3
    flipped = int(((theirs_p > 0.5) != (ours_p > 0.5))[decided].sum())
    # Where nnU-Net's float16 Gaussian weights are subnormal (an image's corner regions, far from every
    # window centre) its output is quantised (docs/bundle.md); this shows how much of it is at the border.
    interior = np.abs(theirs_p - ours_p)[2:-2, 2:-2, 2:-2].max()
    print(f"\n{name} network, {TEST_CASES[0]} (96 x 96 x 48 phantom), {threads} threads, one fold, 8 mirrors:")
    print(f"  nnU-Net 2.8.1 predictor (torch CPU): {theirs['seconds']:.2f} s, peak RSS {theirs['peak_mb']:.0f} MB")
    print(f"  TwinTrack nnU-Net mode (onnxruntime, {batch_sizes[0]} windows per call): {ours['seconds']:.2f} s, "
          f"peak RSS {ours['peak_mb']:.0f} MB")
    print(f"  speed ratio {theirs['seconds'] / ours['seconds']:.2f}x, memory ratio "
          f"{ours['peak_mb'] / theirs['peak_mb']:.2f}, max |Δp| {difference:.2e} ({interior:.2e} two voxels in from "
          f"the image border), p > 0.5 differs at {flipped} "
          f"voxels (of {(theirs_p > 0.5).sum()} nnU-Net p > 0.5)")
    for batch_size in batch_sizes[1:]:
        other = run_child("twintrack", with_batch_size(bundle, batch_size), threads, work / f"{name}-b.npy")
        same = np.abs(np.load(work / f"{name}-b.npy") - ours_p).max()
        print(f"  TwinTrack, {batch_size} windows per onnxruntime call: {other['seconds']:.2f} s "
              f"({ours['seconds'] / other['seconds']:.2f}x the speed of {batch_sizes[0]}), peak RSS "
              f"{other['peak_mb']:.0f} MB, max |Δp| against {batch_sizes[0]}: {same:.1e}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--network", choices=("shrunk", "default", "both"), default="both")
    parser.add_argument("--batch-sizes", default="2",
                        help="windows per onnxruntime call, comma-separated; the first is compared with nnU-Net, "
                             "the others with the first (default 2, the imported bundle's)")
    parser.add_argument("--child", choices=sorted(CHILDREN))
    parser.add_argument("--target", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(CHILDREN[args.child](args.target, args.threads, args.out)))
        return 0
    if not is_built(FIXTURE):
        subprocess.run([sys.executable, str(ROOT / "Testing" / "nnunet_fixture.py"), "--out", str(FIXTURE)],
                       check=True)
    batch_sizes = [int(v) for v in args.batch_sizes.split(",")]
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        if args.network in ("shrunk", "both"):
            compare("shrunk", results_folder(FIXTURE, "3d_fullres"), work, args.threads, batch_sizes)
        if args.network in ("default", "both"):
            compare("default", default_size_model(work), work, args.threads, batch_sizes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
