"""`twintrack evaluate`: CURVAS-PDACVI and MHR metrics over a multi-rater cohort."""

from __future__ import annotations

from pathlib import Path

from TwinTrackLogic import TwinTrackError, find_cases
from TwinTrackLogic.cohort.cases import DEFAULT_DILATION_MM, DEFAULT_PADDING_MM, REGION_POLICIES
from TwinTrackLogic.evaluation import report as evaluation
from TwinTrackLogic.io.paths import check_outputs, input_paths, output_paths
from TwinTrackLogic.progress import TerminalProgress

from . import EXIT_OK, EXIT_PARTIAL, options, scheduling


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score a cohort's tumour probability with the CURVAS-PDACVI and MHR calibration metrics",
        description=(
            "Evaluate each case's tumour probability against its raters: the CURVAS-PDACVI challenge "
            "metrics (thresh_dsc, binary_dsc, ece_curvas, crps_volume, and for cases with vessels.nii.gz the "
            "vascular-involvement score per vessel), calibration against the mean "
            "human response inside the calibration region (ece_mhr, brier_mhr, soft_dice, volumes) and "
            "the volume-versus-agreement curve. With --calibrator the probability is calibrated first "
            "and every case also carries its uncalibrated values, so one run shows before and after. "
            "Writes report.json with per-case values and bootstrap 95%% intervals over cases; a case "
            "that fails is reported and skipped (exit code 1). Definitions: docs/metrics.md."
        ),
    )
    parser.add_argument("--cohort", required=True, type=Path, help="folder of case folders")
    parser.add_argument("--probability", default="probability.nii.gz", metavar="NAME",
                        help="probability file in each case folder (default: probability.nii.gz)")
    parser.add_argument("--calibrator", type=Path, metavar="CAL.json",
                        help="calibrator to apply before scoring (from `twintrack calibrate`)")
    parser.add_argument("--binary-threshold", type=options.binary_threshold, default=0.5,
                        help="binary_dsc counts p > THRESHOLD as tumour, the challenge's strict > (default: 0.5)")
    parser.add_argument("--out", required=True, type=Path, metavar="REPORT.json", help="report file to write")
    parser.add_argument("--plots", type=Path, metavar="DIR",
                        help="also write reliability.png and agreement_volume.png here (needs matplotlib)")
    parser.add_argument("--region", choices=REGION_POLICIES, default="auto",
                        help="region of the MHR metrics, as for calibration (default: auto)")
    parser.add_argument("--region-dilation-mm", type=options.distance_mm, default=DEFAULT_DILATION_MM,
                        help=f"organ region dilation in mm (default: {DEFAULT_DILATION_MM:g})")
    parser.add_argument("--region-padding-mm", type=options.distance_mm, default=DEFAULT_PADDING_MM,
                        help=f"bbox region padding in mm (default: {DEFAULT_PADDING_MM:g})")
    parser.add_argument("--bootstrap", type=options.bootstrap, default=evaluation.BOOTSTRAP_RESAMPLES,
                        help=f"bootstrap resamples for the 95%% intervals (default: {evaluation.BOOTSTRAP_RESAMPLES})")
    parser.add_argument("--seed", type=options.seed, default=0, help="bootstrap seed (default: 0)")
    scheduling.add_options(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    plots = args.plots
    check_outputs(output_paths(("--out", args.out, "json"), ("--plots", plots, "folder"),
                          ("--plots", None if plots is None else plots / "reliability.png", "file"),
                          ("--plots", None if plots is None else plots / "agreement_volume.png", "file")),
                  input_paths(("--calibrator", args.calibrator),
                         *(("--cohort", case.folder) for case in find_cases(args.cohort))))
    settings = evaluation.EvaluationSettings(
        probability_name=args.probability,
        calibrator_path=str(args.calibrator) if args.calibrator is not None else None,
        binary_threshold=args.binary_threshold, region_policy=args.region, dilation_mm=args.region_dilation_mm,
        padding_mm=args.region_padding_mm, bootstrap_resamples=args.bootstrap, seed=args.seed,
    )
    if args.plots is not None:
        from TwinTrackLogic.review.figures import require_matplotlib
        require_matplotlib()  # refuse before the long run, not after it
    cohort = scheduling.absolute(args.cohort) if scheduling.uses_dask(args) else args.cohort
    with scheduling.case_map(args) as case_map:
        report = evaluation.evaluate_cohort(cohort, settings, progress=TerminalProgress(), case_map=case_map)
    if not report["cases"]:
        listing = "; ".join(f"{name}: {why}" for name, why in report["failed"].items())
        raise TwinTrackError(f"No case of {args.cohort} could be evaluated, so no report was written ({listing}).")
    evaluation.write_report(args.out, report)
    print(evaluation.format_table(report))
    print(f"Report: {args.out}")
    if args.plots is not None:
        from TwinTrackLogic.evaluation.plots import write_plots
        for path in write_plots(report, args.plots):
            print(f"Plot: {path}")
    return EXIT_PARTIAL if report["failed"] else EXIT_OK
