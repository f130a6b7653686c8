"""Fit the demo bundle's default calibrator on a separate phantom calibration split.

    python training/fit_demo_calibrator.py --bundle Resources/DemoBundle

Runs the bundle (onnxruntime, as ``twintrack predict`` does) on the phantom
cases of the calibration split: 8 cases from each of the seeds 12, 14 and 16
(every seed has its own rater panel; training uses 11, and the held-out
checks of docs/calibration-study.md use 13, 15, 17 and 19). It then fits the
procedure docs/calibration-study.md chose from held-out numbers (``--method``,
``--case-weight``; the leave-one-case-out report is stored in the file), writes
``calibrator.json`` into the bundle and names it in the manifest as the
default. Called at the end of ``train_demo_bundle.py``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from TwinTrackLogic.inference.bundle import load_bundle
from TwinTrackLogic.calibration import FitSettings, fit_cohort
from TwinTrackLogic.inference import Ensemble
from TwinTrackLogic.io import find_cases, write_json
from TwinTrackLogic.phantom import write_cohort
from TwinTrackLogic.progress import TerminalProgress

CALIBRATION_PHANTOM_SEEDS = (12, 14, 16)
CASES_PER_SEED = 8
RATERS = 5
METHOD = "isotonic"  # docs/calibration-study.md
CASE_WEIGHT = "voxels"


def fit_demo_calibrator(bundle_dir: Path, cases_per_seed: int = CASES_PER_SEED, threads: int = 2,
                        method: str = METHOD, case_weight: str = CASE_WEIGHT) -> None:
    started = time.time()
    bundle = load_bundle(bundle_dir)
    ensemble = Ensemble(bundle, device="cpu", threads=threads)
    seeds = ", ".join(map(str, CALIBRATION_PHANTOM_SEEDS))
    print(f"Calibrator: {method} ({case_weight} case weight) on {cases_per_seed} phantom cases of each of the "
          f"seeds {seeds} ({RATERS} raters)", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        cohort = Path(folder) / "calibration"
        cohort.mkdir()
        for seed in CALIBRATION_PHANTOM_SEEDS:
            # Seeds reuse case names: one cohort folder of links named after seed and case.
            for case_folder in write_cohort(Path(folder) / f"seed_{seed}", cases_per_seed, RATERS, seed):
                (cohort / f"s{seed}_{case_folder.name}").symlink_to(case_folder.resolve(), target_is_directory=True)
        cases = find_cases(cohort)
        result = fit_cohort(
            cases, FitSettings(method, case_weight=case_weight, cv="loo", probability_source=f"bundle:{bundle.id}"),
            probability_for=ensemble.case_probability, progress=TerminalProgress())
    result.calibrator.save(bundle_dir / "calibrator.json")
    manifest = dict(bundle.manifest)  # as load_bundle read it
    manifest["default_calibrator"] = "calibrator.json"
    manifest["provenance"] = dict(manifest.get("provenance", {}))
    manifest["provenance"]["calibration"] = {"script": "training/fit_demo_calibrator.py",
                                             "phantom_seeds": list(CALIBRATION_PHANTOM_SEEDS), "cases": len(cases),
                                             "method": result.calibrator.method, "case_weight": case_weight,
                                             "study": "docs/calibration-study.md"}
    write_json(bundle_dir / "manifest.json", manifest)
    print(f"  leave-one-case-out: {result.cross_validation.verdict}", flush=True)
    print(f"  ({time.time() - started:.0f} s)", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=Path("Resources/DemoBundle"))
    parser.add_argument("--cases-per-seed", type=int, default=CASES_PER_SEED)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--method", default=METHOD)
    parser.add_argument("--case-weight", default=CASE_WEIGHT)
    args = parser.parse_args(argv)
    fit_demo_calibrator(args.bundle, args.cases_per_seed, args.threads, args.method, args.case_weight)
    return 0


if __name__ == "__main__":
    sys.exit(main())
