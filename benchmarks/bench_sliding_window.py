"""Sliding-window inference: TwinTrack on onnxruntime against MONAI + PyTorch, same network, same run.

    .venv/bin/pip install -e ".[bench]"      # torch (CPU) and MONAI, for this benchmark only
    .venv/bin/python benchmarks/bench_sliding_window.py [--threads 2] [--repeats 3] [--skip-full]

1. One 3D U-Net (the demo members' architecture, fixed random weights) is exported
   to ONNX. The same normalised volume goes through TwinTrack's sliding window
   (``TwinTrackLogic.inference``: the Network wrapper of the bundle stage on
   onnxruntime) and through ``monai.inferers.sliding_window_inference`` on the
   PyTorch model, with the same patch, overlap, batch, Gaussian importance map
   and thread count, each in a fresh process. Prints the largest difference of
   the tumour probabilities (must be <= 1e-4), the time ratio (median of
   ``--repeats``) and the peak memory ratio (peak resident memory of each
   process, and its growth during inference).
2. The whole two-stage pipeline of the demo bundle on a full-size phantom
   (512 x 512 x 100 at 0.8 x 0.8 x 2.5 mm): time and peak memory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from measure import status_mb  # benchmarks/measure.py

ROOT = Path(__file__).resolve().parent.parent
PATCH = (32, 48, 48)  # (z, y, x), the demo members' patch
# Windows at the same positions in both implementations: (size - patch) is a multiple of the step.
VOLUME = (96, 192, 192)
OVERLAP = 0.5
BATCH = 4


_PEAK_BEFORE_RESET = [0.0]


def rss_mb() -> float:
    """Resident memory now, after resetting the kernel's peak (VmHWM) so that
    :func:`window_peak_mb` sees only what follows (Linux: clear_refs 5)."""
    _PEAK_BEFORE_RESET[0] = max(_PEAK_BEFORE_RESET[0], status_mb("VmHWM"))
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    return status_mb("VmRSS")


def window_peak_mb() -> float:
    """Peak resident memory since the last :func:`rss_mb`."""
    return status_mb("VmHWM")


def peak_rss_mb() -> float:
    """Peak resident memory of the whole process so far."""
    return max(_PEAK_BEFORE_RESET[0], status_mb("VmHWM"))


# --- children: each runs one implementation in a fresh process -------------------------------

def child_twintrack(folder: Path, threads: int, repeats: int) -> dict:
    from TwinTrackLogic.inference.bundle import load_bundle
    from TwinTrackLogic.inference.network import Network
    from TwinTrackLogic.inference.sliding_window import sliding_window

    volume = np.load(folder / "volume.npy")
    stage = load_bundle(folder).members[0]
    network = Network(stage, device="cpu", threads=threads)
    network(np.zeros((1, 1) + PATCH, np.float32))  # warm-up, as torch's first call
    before = rss_mb()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        probability = sliding_window(volume, network, PATCH, OVERLAP, "gaussian", 0.125, BATCH)
        times.append(time.perf_counter() - started)
    np.save(folder / "twintrack.npy", probability)
    return {"seconds": float(np.median(times)), "peak_mb": peak_rss_mb(), "growth_mb": window_peak_mb() - before}


def child_monai(folder: Path, threads: int, repeats: int) -> dict:
    import torch
    from monai.inferers import sliding_window_inference

    sys.path.insert(0, str(ROOT / "training"))
    from tiny_unet import TinyUNet

    torch.set_num_threads(threads)
    model = TinyUNet(8)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in np.load(folder / "weights.npz").items()})
    model.eval()
    volume = torch.from_numpy(np.load(folder / "volume.npy"))[None, None]
    weight = torch.from_numpy(np.load(folder / "importance.npy"))  # TwinTrack's map, so both weight alike

    def predictor(batch):
        return torch.softmax(model(batch), 1)[:, 1:2]

    with torch.inference_mode():
        predictor(torch.zeros((1, 1) + PATCH))
        before = rss_mb()
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            probability = sliding_window_inference(volume, PATCH, BATCH, predictor, overlap=OVERLAP,
                                                   mode="gaussian", roi_weight_map=weight)
            times.append(time.perf_counter() - started)
    np.save(folder / "monai.npy", probability[0, 0].numpy())
    return {"seconds": float(np.median(times)), "peak_mb": peak_rss_mb(), "growth_mb": window_peak_mb() - before}


def child_full_pipeline(folder: Path, threads: int, repeats: int) -> dict:
    from TwinTrackLogic.inference.bundle import default_bundle_dir
    from TwinTrackLogic.inference import Ensemble
    from TwinTrackLogic.io import Volume
    from TwinTrackLogic.phantom import generate_case

    case = generate_case(0, raters=5, seed=13, size="full")
    image = Volume(case.image.astype(np.float32), case.geometry)
    del case
    ensemble = Ensemble(default_bundle_dir(), device="cpu", threads=threads)
    before = rss_mb()
    started = time.perf_counter()
    prediction = ensemble.predict(image)
    seconds = time.perf_counter() - started
    box = [int(v) for v in prediction.region.nonzero()[0][[0, -1]]] if prediction.region.any() else []
    return {"seconds": seconds, "peak_mb": peak_rss_mb(), "growth_mb": window_peak_mb() - before,
            "region_voxels": int(prediction.region.sum()), "region_z_range": box,
            "shape": list(image.array.shape)}


CHILDREN = {"twintrack": child_twintrack, "monai": child_monai, "full": child_full_pipeline}


def run_child(name: str, folder: Path, threads: int, repeats: int) -> dict:
    output = subprocess.run([sys.executable, __file__, "--child", name, "--folder", str(folder),
                             "--threads", str(threads), "--repeats", str(repeats)],
                            check=True, capture_output=True, text=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


# --- parent -----------------------------------------------------------------------------------

def prepare(folder: Path) -> None:
    """Export one fixed-weight network to ONNX (as a one-member bundle) and save its weights and the input."""
    import hashlib
    import io

    import torch

    sys.path.insert(0, str(ROOT / "training"))
    from tiny_unet import TinyUNet

    from TwinTrackLogic.inference.sliding_window import importance_map
    from TwinTrackLogic.io import write_bytes_atomic, write_json

    torch.manual_seed(0)
    model = TinyUNet(8).eval()
    np.save(folder / "importance.npy", importance_map(PATCH, "gaussian", 0.125))
    np.savez(folder / "weights.npz", **{k: v.numpy() for k, v in model.state_dict().items()})
    buffer = io.BytesIO()
    torch.onnx.export(model, (torch.zeros((2, 1) + PATCH),), buffer, dynamo=False, opset_version=17,
                      input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    write_bytes_atomic(folder / "member.onnx", buffer.getvalue())

    write_json(folder / "manifest.json", {
        "format": "twintrack-bundle", "version": 1, "id": "benchmark",
        "members": [{"name": "member", "model": "member.onnx",
                     "sha256": hashlib.sha256(buffer.getvalue()).hexdigest(), "spacing_mm": [1, 1, 1],
                     "patch_size": list(PATCH), "normalisation": {"scheme": "none"},
                     "output": {"channels": 2, "channel": 1, "activation": "softmax"}}]})
    # A smooth random volume (a CT-like texture after z-scoring) so the network's output varies.
    from scipy import ndimage

    volume = ndimage.gaussian_filter(np.random.default_rng(0).normal(size=VOLUME), 2.0).astype(np.float32)
    np.save(folder / "volume.npy", volume / volume.std())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for both implementations (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per implementation (median; default 3)")
    parser.add_argument("--skip-full", action="store_true", help="skip the full-size two-stage pipeline")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(CHILDREN[args.child](args.folder, args.threads, args.repeats)))
        return 0

    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        prepare(folder)
        print(f"Sliding window: volume {VOLUME} (z, y, x), patch {PATCH}, overlap {OVERLAP}, batch {BATCH}, "
              f"Gaussian importance, {args.threads} thread(s), median of {args.repeats}")
        ours = run_child("twintrack", folder, args.threads, args.repeats)
        reference = run_child("monai", folder, args.threads, args.repeats)
        difference = float(np.abs(np.load(folder / "twintrack.npy") - np.load(folder / "monai.npy")).max())
        print(f"  TwinTrack (onnxruntime): {ours['seconds']:.2f} s, peak RSS {ours['peak_mb']:.0f} MB "
              f"(+{ours['growth_mb']:.0f} MB during inference)")
        print(f"  MONAI (PyTorch):         {reference['seconds']:.2f} s, peak RSS {reference['peak_mb']:.0f} MB "
              f"(+{reference['growth_mb']:.0f} MB during inference)")
        print(f"  max |difference| of the probabilities: {difference:.2e} ({'OK' if difference <= 1e-4 else 'FAIL'}"
              f", limit 1e-4)")
        print(f"  speed-up {reference['seconds'] / ours['seconds']:.2f}x; peak memory ratio (TwinTrack / MONAI) "
              f"{ours['peak_mb'] / reference['peak_mb']:.2f} (process), "
              f"{ours['growth_mb'] / max(reference['growth_mb'], 1e-9):.2f} (growth during inference)")
        if not args.skip_full:
            full = run_child("full", folder, args.threads, 1)
            print(f"Full-size phantom {full['shape']} (z, y, x) through the demo bundle's two-stage pipeline: "
                  f"{full['seconds']:.1f} s, peak RSS {full['peak_mb']:.0f} MB, "
                  f"region {full['region_voxels']:,} voxels")
    return 0 if difference <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
