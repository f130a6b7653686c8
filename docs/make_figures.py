"""Regenerate every figure the README and the documentation show, from the scripts that make them.

    .venv/bin/python docs/make_figures.py            # all of them (tens of minutes: the study runs the ensemble)
    .venv/bin/python docs/make_figures.py --only slicer demo

Each figure in docs/images/ has one recipe here (FIGURES); Testing/test_docs.py checks that every
image the pages use has one, that every recipe's script exists, and that the script writes that file.
The Slicer screenshots need slicer-core (the [test] extra), the browser ones Chromium and the
[review] extra.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

REPOSITORY = Path(__file__).resolve().parents[1]
IMAGES = REPOSITORY / "docs" / "images"
PYTHON = sys.executable

# image -> (recipe, the file whose code writes it: the name, or the suffix it is written under, appears there)
FIGURES: Dict[str, Tuple[str, str]] = {
    "slicer_view_with_legend.png": ("slicer", "docs/make_slicer_screenshots.py"),
    "slicer_ambiguous_band.png": ("slicer", "docs/make_slicer_screenshots.py"),
    "web_review.png": ("web", "Testing/test_web_review.py"),
    "web_review_band.png": ("web", "Testing/test_web_review.py"),
    "demo_raw_calibrated_raters.png": ("demo", "TwinTrackCLI/demo.py"),
    "cv_reliability.png": ("study", "TwinTrackLogic/evaluation/plots.py"),
    "cv_per_case_ece.png": ("study", "TwinTrackLogic/evaluation/plots.py"),
}


def _run(command: List[str], **environment: str) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=REPOSITORY, env={**os.environ, **environment})


def slicer(_: Path) -> None:
    _run([PYTHON, "docs/make_slicer_screenshots.py", "--out", str(IMAGES)])


def web(_: Path) -> None:
    _run([PYTHON, "-m", "pytest", "-q", "Testing/test_web_review.py"], TWINTRACK_SCREENSHOTS=str(IMAGES))


def demo(scratch: Path) -> None:
    _run([PYTHON, "-m", "TwinTrackCLI", "demo", "--out", str(scratch / "demo")])
    first = sorted((scratch / "demo" / "previews").glob("*_raw_calibrated_raters.png"))[0]  # the first review case
    shutil.copyfile(first, IMAGES / "demo_raw_calibrated_raters.png")


def study(scratch: Path) -> None:
    """The calibration study's split and its leave-one-case-out run (docs/calibration-study.md, section 1)."""
    folder = scratch / "study"
    _run([PYTHON, "docs/calibration_study.py", "--out", str(folder), "--seeds", "12", "14", "16"])
    split = folder / "cal"
    split.mkdir()
    for seed in (12, 14, 16):
        for case in sorted((folder / f"seed_{seed}").glob("case_*")):
            (split / f"s{seed}_{case.name}").symlink_to(case.resolve())
    _run([PYTHON, "-m", "TwinTrackCLI", "calibrate", "--cohort", str(split), "--cv", "loo",
          "--out", str(scratch / "cal.json"), "--plots", str(IMAGES)])


RECIPES = {"slicer": slicer, "web": web, "demo": demo, "study": study}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(RECIPES), help="run only these recipes")
    args = parser.parse_args()
    wanted = args.only or sorted(RECIPES)
    with tempfile.TemporaryDirectory(prefix="twintrack-figures-") as scratch:
        for name in wanted:
            RECIPES[name](Path(scratch))
    made = sorted(image for image, (recipe, _) in FIGURES.items() if recipe in wanted)
    print("regenerated:", ", ".join(made))


if __name__ == "__main__":
    main()
