"""`twintrack demo`: the main job on the embedded default, end to end.

It runs exactly the commands a researcher would run, and prints each one:
phantom cohorts (a calibration split and a review split), `calibrate` with the
demo bundle, `predict` on the review cases with the new calibrator,
`evaluate` before and after calibration, and PNG previews.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import List

from TwinTrackLogic import Case, TwinTrackError, default_bundle_dir, find_cases, read_image
from TwinTrackLogic.io.paths import check_outputs, input_paths, output_paths
from TwinTrackLogic.io.strictjson import read_json
from TwinTrackLogic.raters import mhr_from_masks
from TwinTrackLogic.signals import UNWINDING_SIGNALS, Terminated

from . import options

RATERS = 5
REVIEW_FIRST_INDEX = 100  # review cases never overlap the calibration cases


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole TwinTrack job on demo phantoms: calibrate, predict, evaluate, previews",
        description=(
            "Run TwinTrack end to end on synthetic phantoms with five raters, using the embedded demo "
            "bundle: write a calibration cohort and a review cohort, fit a calibrator with the demo "
            "ensemble on the calibration cohort, predict calibrated tumour probability on the review "
            "cases, evaluate before and after calibration, and write PNG previews. Each step is the "
            "`twintrack` command it prints, so you can rerun any of them by hand."
        ),
    )
    parser.add_argument("--out", type=Path, default=Path("twintrack-demo"),
                        help="folder for everything the demo writes (default: ./twintrack-demo)")
    parser.add_argument("--calibration-cases", type=options.cases, default=6,
                        help="phantom cases to fit the calibrator on (default: 6)")
    parser.add_argument("--review-cases", type=options.cases, default=3,
                        help="held-out phantom cases to predict and evaluate (default: 3)")
    parser.add_argument("--seed", type=options.seed, default=2025, help="phantom seed (default: 2025)")
    parser.add_argument("--bundle", type=Path, help="model bundle (default: the embedded demo bundle)")
    parser.set_defaults(run=run)


def _step(argv: List[str]) -> None:
    from . import EXIT_CANCELLED, main

    print(f"\n$ twintrack {shlex.join(argv)}", flush=True)
    code = main(argv)
    # A step stopped by Ctrl-C or a signal stops the demo the same way (exit 130, 143, 129).
    if code == EXIT_CANCELLED:
        raise KeyboardInterrupt
    if code > 128 and code - 128 in UNWINDING_SIGNALS:
        raise Terminated(code - 128)
    if code != 0:
        raise TwinTrackError(f"the demo step `twintrack {argv[0]}` failed (exit code {code}); see above.")


def run(args) -> int:
    out = args.out
    calibration, review = out / "calibration", out / "review"
    # The calibration cases have no probability file: calibrate runs the ensemble on them.
    bundle_dir = args.bundle or default_bundle_dir()
    bundle = ["--bundle", str(bundle_dir)]
    check_outputs(output_paths(("--out", out, "folder"), ("--out", calibration, "folder"), ("--out", review, "folder"),
                          ("--out", out / "calibrator.json", "json"), ("--out", out / "report.json", "json"),
                          ("--out", out / "plots", "folder"), ("--out", out / "previews", "folder")),
                  input_paths(("--bundle", bundle_dir), sealed={"--bundle": "a model bundle"}))
    _step(["phantom", "--out", str(calibration), "--cases", str(args.calibration_cases),
           "--raters", str(RATERS), "--seed", str(args.seed)])
    _step(["phantom", "--out", str(review), "--cases", str(args.review_cases), "--raters", str(RATERS),
           "--seed", str(args.seed), "--first-index", str(REVIEW_FIRST_INDEX)])
    calibrator = out / "calibrator.json"
    _step(["calibrate", "--cohort", str(calibration), "--out", str(calibrator), *bundle])
    for case in find_cases(review):
        _step(["predict", "--image", str(case.image), "--calibrator", str(calibrator), *bundle,
               "--out", str(case.folder / "calibrated.nii.gz"),
               "--raw-out", str(case.folder / "probability.nii.gz"),
               "--mask-out", str(case.folder / "tumour_50.nii.gz")])
    report = out / "report.json"
    _step(["evaluate", "--cohort", str(review), "--calibrator", str(calibrator), "--out", str(report),
           "--plots", str(out / "plots")])
    previews = _previews(find_cases(review), out / "previews")
    _summary(out, report, previews)
    return 0


def _previews(cases: List[Case], folder: Path) -> List[Path]:
    from TwinTrackLogic.review.preview import save_comparison, save_preview

    written = []
    for case in cases:
        ct = read_image(case.image)
        calibrated = read_image(case.folder / "calibrated.nii.gz").array
        raw = read_image(case.folder / "probability.nii.gz").array
        mhr = mhr_from_masks(case.read_annotations(ct.geometry))
        written.append(save_preview(folder / f"{case.name}_calibrated.png", ct, calibrated, RATERS,
                                    f"{case.name}: calibrated tumour probability (cyan: 50 % agreement)"))
        written.append(save_comparison(folder / f"{case.name}_raw_calibrated_raters.png", ct,
                                       {"raw ensemble": raw, "calibrated": calibrated,
                                        f"{RATERS} raters (MHR)": mhr}, RATERS, case.name))
    return written


def _summary(out: Path, report_path: Path, previews: List[Path]) -> None:
    report = read_json(report_path, "TwinTrack evaluation report")
    summary, pooled = report["summary"], report["pooled"]
    print("\nCalibration on the held-out review cases, uncalibrated -> calibrated:")
    print(f"  ECE against MHR, all review voxels pooled: {pooled['uncalibrated']['ece_mhr']:.4f} -> "
          f"{pooled['calibrated']['ece_mhr']:.4f}")
    print("  mean over cases:")
    for metric in ("ece_mhr", "brier_mhr", "thresh_dsc", "crps_volume"):
        before, after = summary.get(f"uncalibrated.{metric}"), summary.get(metric)
        if before and after and before.get("mean") is not None and after.get("mean") is not None:
            print(f"    {metric:<12} {before['mean']:.4g} -> {after['mean']:.4g}")
    print("\nPreviews:")
    for path in previews:
        print(f"  {path}")
    print(f"\nEverything the demo wrote is in {out.resolve()}")
