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


def write_study_cohort(out: Path, seed: int, cases: int, ensemble: Ensemble, first_index: int = 0) -> None:
    folder = out / f"seed_{seed}"
    if (folder / "phantom.json").exists() and len(find_cases(folder)) >= cases:
        return  # already written: the generator and the ensemble are deterministic
    write_cohort(folder, cases, RATERS, seed, first_index=first_index)
    for case in find_cases(folder):
        probability = ensemble.case_probability(case)
        write_image(case.folder / "probability.nii.gz", probability, read_geometry(case.image))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[12, 14, 16, 13, 15, 17, 19])
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--bundle", type=Path, default=Path("Resources/DemoBundle"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    ensemble = Ensemble(args.bundle, device="cpu", threads=args.threads)
    for seed in args.seeds:
        started = time.time()
        write_study_cohort(args.out, seed, args.cases, ensemble)
        print(f"seed {seed}: {args.cases} cases in {time.time() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
