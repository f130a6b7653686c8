"""Fit the demo bundle's default calibrator on a separate phantom calibration split.

    python training/fit_demo_calibrator.py --bundle Resources/DemoBundle

Runs the bundle (onnxruntime, as ``twintrack predict`` does) on phantom cases of
the calibration split (phantom seed 12; training uses 11, the held-out test
13), fits the isotonic calibrator against their 5 raters' MHR, writes
``calibrator.json`` into the bundle and names it in the manifest as the default.
Called at the end of ``train_demo_bundle.py``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from TwinTrackLogic.bundle import load_bundle
from TwinTrackLogic.calibration import fit_cohort
from TwinTrackLogic.inference import Ensemble
from TwinTrackLogic.io import find_cases, write_json
from TwinTrackLogic.phantom import write_cohort
from TwinTrackLogic.progress import TerminalProgress

CALIBRATION_PHANTOM_SEED = 12
RATERS = 5


def fit_demo_calibrator(bundle_dir: Path, cases: int = 12, threads: int = 2) -> None:
    started = time.time()
    bundle = load_bundle(bundle_dir)
    ensemble = Ensemble(bundle, device="cpu", threads=threads)
    print(f"Calibrator: isotonic on {cases} phantom cases (seed {CALIBRATION_PHANTOM_SEED}, {RATERS} raters)",
          flush=True)
    with tempfile.TemporaryDirectory() as cohort:
        write_cohort(Path(cohort), cases, RATERS, CALIBRATION_PHANTOM_SEED)
        result = fit_cohort(
            find_cases(cohort), "isotonic",
            probability_for=ensemble.case_probability,
            probability_source=f"bundle:{bundle.id}", progress=TerminalProgress())
    result.calibrator.save(bundle_dir / "calibrator.json")
    manifest = dict(bundle.manifest)  # as load_bundle read it
    manifest["default_calibrator"] = "calibrator.json"
    manifest["provenance"] = dict(manifest.get("provenance", {}))
    manifest["provenance"]["calibration"] = {"script": "training/fit_demo_calibrator.py",
                                             "phantom_seed": CALIBRATION_PHANTOM_SEED, "cases": cases,
                                             "method": "isotonic"}
    write_json(bundle_dir / "manifest.json", manifest)
    print(f"  ECE against MHR on the calibration voxels: raw {result.ece_before:.4f}, "
          f"calibrated {result.ece_after:.4f} ({time.time() - started:.0f} s)", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=Path("Resources/DemoBundle"))
    parser.add_argument("--cases", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    fit_demo_calibrator(args.bundle, args.cases, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
