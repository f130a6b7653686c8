"""Does batching patches speed up the sliding window on this machine?

Runs the demo bundle's first member through TwinTrack's sliding window on the
same random volume with batch sizes 1, 2, 4 and 8 (onnxruntime, CPU) and prints
the median time of each and its ratio to batch size 1.

    .venv/bin/python benchmarks/bench_batch_size.py [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from TwinTrackLogic.inference.bundle import default_bundle_dir, load_bundle
from TwinTrackLogic.inference.network import Network
from TwinTrackLogic.inference.sliding_window import sliding_window


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    stage = load_bundle(default_bundle_dir()).members[0]
    network = Network(stage, threads=args.threads)
    volume = np.random.default_rng(0).normal(size=(64, 128, 128)).astype(np.float32)
    print(f"member {stage.name}, patch {stage.patch_size}, volume {volume.shape}, overlap 0.5, "
          f"{args.threads} threads")
    reference = None
    for batch_size in (1, 2, 4, 8):
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            sliding_window(volume, network, stage.patch_size, overlap=0.5, batch_size=batch_size)
            times.append(time.perf_counter() - start)
        median = float(np.median(times))
        reference = reference or median
        print(f"batch {batch_size}: {median:.3f} s (x{reference / median:.2f} the speed of batch 1)")


if __name__ == "__main__":
    main()
