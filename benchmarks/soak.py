"""Soak test: run predict and apply over and over and watch memory.

Runs, in one process, the whole `twintrack predict` path (read the CT, run the
ensemble, calibrate, write the outputs) and `twintrack apply` on phantom cases
for a few minutes, sampling the resident memory (VmRSS) after every
iteration. A leak shows as a rising line; the script prints the samples, the
growth between the first and the last quarter of the run, and a verdict.
Not run by CI (it takes minutes by design).

    .venv/bin/python benchmarks/soak.py --minutes 3
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from measure import status_mb  # benchmarks/measure.py

from TwinTrackCLI import main as twintrack

FLAT_LIMIT_MB = 20.0  # growth between first and last quarter that still counts as flat


def _iteration(image: Path, out: Path, calibrator: Path) -> int:
    """One `twintrack predict` (ensemble + default calibrator) and one `twintrack apply`."""
    code = twintrack(["predict", "--image", str(image), "--out", str(out / "p.nii.gz"),
                      "--raw-out", str(out / "raw.nii.gz"), "--mask-out", str(out / "mask.nii.gz")])
    return code | twintrack(["apply", "--calibrator", str(calibrator), "--probability",
                             str(out / "raw.nii.gz"), "--out", str(out / "c.nii.gz")])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="how long to run (default: 3)")
    parser.add_argument("--cases", type=int, default=3, help="phantom cases to cycle through (default: 3)")
    parser.add_argument("--size", choices=("small", "full"), default="small", help="phantom size (default: small)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="twintrack-soak-") as folder:
        work = Path(folder)
        assert twintrack(["phantom", "--out", str(work / "cohort"), "--cases", str(args.cases),
                          "--size", args.size, "--seed", "99"]) == 0
        images = sorted((work / "cohort").glob("case_*/image.nii.gz"))
        calibrator = Path(__file__).resolve().parent.parent / "Resources" / "DemoBundle" / "calibrator.json"
        samples = []
        start = time.monotonic()
        iteration = 0
        while time.monotonic() - start < args.minutes * 60:
            image = images[iteration % len(images)]
            out = work / "out"
            with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet), \
                    contextlib.redirect_stderr(quiet):
                code = _iteration(image, out, calibrator)
            if code != 0:
                print(f"iteration {iteration} failed with exit code {code}", file=sys.stderr)
                return 1
            gc.collect()
            iteration += 1
            samples.append((time.monotonic() - start, status_mb("VmRSS")))
            print(f"\r{iteration} iterations, RSS {samples[-1][1]:.0f} MB", end="", file=sys.stderr)

    times, memory = np.array(samples).T
    print(f"\n{iteration} predict + apply iterations in {times[-1]:.0f} s ({args.size} phantoms)")
    print(f"{'time (s)':>9} {'RSS (MB)':>9}")
    for index in np.unique(np.linspace(0, len(samples) - 1, 12).round().astype(int)):
        print(f"{times[index]:9.1f} {memory[index]:9.1f}")
    quarter = max(len(samples) // 4, 1)
    growth = float(np.median(memory[-quarter:]) - np.median(memory[:quarter]))
    slope = float(np.polyfit(times, memory, 1)[0] * 60) if len(samples) > 2 else 0.0
    print(f"RSS growth, first to last quarter (medians): {growth:+.1f} MB; fitted slope {slope:+.2f} MB/min")
    flat = growth < FLAT_LIMIT_MB
    print("verdict: flat" if flat else f"verdict: GROWING (more than {FLAT_LIMIT_MB:g} MB)")
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
