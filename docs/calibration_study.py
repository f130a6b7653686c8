"""Data for docs/calibration-study.md: phantom cohorts of several seeds with the demo ensemble's raw map.

    python docs/calibration_study.py --out study

Writes, under ``--out``, one cohort folder per phantom seed (``seed_<S>``),
each case with ``probability.nii.gz``: the demo bundle's uncalibrated tumour
probability (as ``twintrack predict --no-calibration`` writes it). Every
phantom seed has its own rater panel. The demo bundle was trained on seed 11;
the seeds used here are listed in the study. Then run the ``twintrack
calibrate --cv`` and ``twintrack evaluate`` commands the study lists.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from TwinTrackLogic.inference import Ensemble
from TwinTrackLogic.io import find_cases, read_geometry, write_image
from TwinTrackLogic.phantom import write_cohort

RATERS = 5


def write_study_cohort(out: Path, seed: int, cases: int, ensemble: Ensemble, first_index: int = 0,
                       size: str = "small") -> None:
    folder = out / (f"seed_{seed}" if size == "small" else f"seed_{seed}_{size}")
    if (folder / "phantom.json").exists() and len(find_cases(folder)) >= cases:
        return  # already written: the generator and the ensemble are deterministic
    write_cohort(folder, cases, RATERS, seed, size=size, first_index=first_index)
    for case in find_cases(folder):
        probability = ensemble.case_probability(case)
        write_image(case.folder / "probability.nii.gz", probability, read_geometry(case.image))


def summarise(report_path: Path) -> str:
    """Held-out numbers of one `twintrack evaluate --calibrator` report: per case and pooled, raw -> calibrated."""
    import json

    import numpy as np

    report = json.loads(Path(report_path).read_text())
    names = sorted(report["cases"])
    after = np.array([report["cases"][n]["ece_mhr"] for n in names])
    before = np.array([report["cases"][n]["uncalibrated"]["ece_mhr"] for n in names])
    change = report["summary"]["change.ece_mhr"]
    pooled = report["pooled"]
    lines = [f"{report_path}: {len(names)} cases; per-case ECE {before.mean():.4f} -> {after.mean():.4f} "
             f"(change {change['mean']:+.4f} [{change['ci95'][0]:+.4f}, {change['ci95'][1]:+.4f}], lower on "
             f"{int(np.sum(after < before))} of {len(names)}); pooled ECE {pooled['uncalibrated']['ece_mhr']:.4f} -> "
             f"{pooled['calibrated']['ece_mhr']:.4f}"]
    for seed in sorted({n.split("_")[0] for n in names}):
        chosen = [i for i, n in enumerate(names) if n.startswith(seed + "_")]
        lines.append(f"  {seed}: per-case ECE {before[chosen].mean():.4f} -> {after[chosen].mean():.4f}, "
                     f"lower on {int(np.sum(after[chosen] < before[chosen]))} of {len(chosen)}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="folder for the cohorts")
    parser.add_argument("--seeds", type=int, nargs="+", default=[12, 14, 16, 13, 15, 17, 19])
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--bundle", type=Path, default=Path("Resources/DemoBundle"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", default="small", choices=("small", "full"))
    parser.add_argument("--first-index", type=int, default=0)
    parser.add_argument("--summarise", type=Path, nargs="+", metavar="REPORT",
                        help="instead: print the held-out summary of these evaluate reports")
    args = parser.parse_args(argv)
    if args.summarise:
        for path in args.summarise:
            print(summarise(path))
        return 0
    if args.out is None:
        parser.error("--out is required to write cohorts")
    ensemble = Ensemble(args.bundle, device="cpu", threads=args.threads)  # after --summarise: no models needed
    for seed in args.seeds:
        started = time.time()
        write_study_cohort(args.out, seed, args.cases, ensemble, args.first_index, args.size)
        print(f"seed {seed}: {args.cases} cases in {time.time() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

