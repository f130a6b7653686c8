"""What the demo bundle's vessel stage adds to a prediction, against the same bundle without it.

    python benchmarks/bench_vessel_stage.py --repeats 3

Runs ``Ensemble.predict`` (CPU, 2 threads) on one small (96 x 96 x 48) and one full-size
(512 x 512 x 100) phantom with the demo bundle as shipped and with a copy whose manifest has no
vessel stage, in the same process, and prints the median times and their ratio.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import median_seconds  # noqa: E402  (a sibling script module)

from TwinTrackLogic.inference import Ensemble  # noqa: E402
from TwinTrackLogic.io import Volume  # noqa: E402
from TwinTrackLogic.phantom import generate_case  # noqa: E402

DEMO = Path(__file__).resolve().parent.parent / "Resources" / "DemoBundle"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        without = Path(folder) / "bundle"
        shutil.copytree(DEMO, without)
        manifest = json.loads((without / "manifest.json").read_text())
        manifest.pop("vessels")
        manifest["version"] = 1
        (without / "manifest.json").write_text(json.dumps(manifest))
        with_stage = Ensemble(DEMO, device="cpu", threads=args.threads)
        reference = Ensemble(without, device="cpu", threads=args.threads)
        for size in ("small", "full"):
            case = generate_case(0, raters=1, seed=13, size=size)
            volume = Volume(case.image.astype(np.float32), case.geometry)
            base = median_seconds(lambda volume=volume: reference.predict(volume), args.repeats)
            full = median_seconds(lambda volume=volume: with_stage.predict(volume), args.repeats)
            print(f"{size} phantom {case.geometry.size}: predict without the vessel stage {base:.2f} s, with it "
                  f"{full:.2f} s (ratio {full / base:.2f}; medians of {args.repeats}, CPU, {args.threads} threads)",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
