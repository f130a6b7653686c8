"""`twintrack calibrate`: fit a calibrator on a multi-rater cohort."""

from __future__ import annotations

import argparse
from pathlib import Path

from TwinTrackLogic import InputError, find_cases, fit_cohort
from TwinTrackLogic.calibration import CASE_WEIGHTS, METHODS, FitSettings
from TwinTrackLogic.calibration.crossval import RULE, summary_lines
from TwinTrackLogic.calibration.fitting import AUTO
from TwinTrackLogic.calibration.statistics import ECE_MHR_BINS
from TwinTrackLogic.cohort.cases import DEFAULT_DILATION_MM, DEFAULT_PADDING_MM, REGION_POLICIES
from TwinTrackLogic.io.paths import check_outputs, input_paths, output_paths
from TwinTrackLogic.progress import TerminalProgress

from . import EXIT_OK, EXIT_PARTIAL, options, scheduling


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="fit a calibrator (p -> mean human response) on a multi-rater cohort",
        description=(
            "Fit a calibrator that maps the ensemble's tumour probability to the mean human "
            "response (MHR), the fraction of annotators who label a voxel tumour. Each case folder "
            "needs the ensemble's uncalibrated probability.nii.gz and annotation_1..K.nii.gz; the "
            "voxels inside each case's region are pooled. Cases that cannot be read are reported "
            "and skipped (exit code 1)."
        ),
    )
    parser.add_argument("--cohort", required=True, type=Path, help="folder of case folders (CURVAS-PDACVI layout)")
    parser.add_argument("--out", required=True, type=Path, help="calibrator JSON to write")
    shown = ["isotonic", "identity", *sorted(set(METHODS) - {"isotonic", "identity"}), AUTO]
    parser.add_argument("--method", choices=shown, default="isotonic",
                        help="calibration method (default: isotonic, as the TwinTrack paper); identity keeps "
                             "the raw map; auto chooses by cross-validation (--cv, default loo): "
                             + RULE.replace("%", "%%"))
    parser.add_argument("--cv", type=_folds, metavar="{loo,K}",
                        help="cross-validate every method (identity included) on held-out cases: loo = leave "
                             "one case out, K = K folds; prints held-out ECE and Brier against MHR per case "
                             "and pooled, with bootstrap 95%% intervals, and stores the report in the file")
    parser.add_argument("--case-weight", choices=CASE_WEIGHTS, default="voxels",
                        help="voxels: every voxel counts once (cases with large regions dominate); equal: "
                             "every case carries the same total weight (default: voxels; docs/calibration-study.md)")
    parser.add_argument("--plots", type=Path,
                        help="with --cv: folder for the held-out reliability diagram (bootstrap band over "
                             "cases) and the per-case ECE before/after plot")
    for method, calibrator in METHODS.items():
        for option in calibrator.options:
            parser.add_argument(f"--{method}-{option.name.replace('_', '-')}", type=option.type,
                                default=option.default, choices=option.choices, dest=f"{method}__{option.name}",
                                metavar=None if option.choices else option.name.upper(),
                                help=f"{method}: {option.help} (default: {option.default})".replace("%", "%%"))
    parser.add_argument("--probability", default="probability.nii.gz",
                        help="file name of the uncalibrated probability in each case (default: probability.nii.gz)")
    parser.add_argument("--region", choices=REGION_POLICIES, default="auto",
                        help="fitting region: organ = pancreas/roi mask dilated; bbox = padded box around "
                             "annotations and p > 0.01; all = whole image; auto = organ if the case has "
                             "a mask, else bbox (default: auto)")
    parser.add_argument("--region-dilation-mm", type=options.distance_mm, default=DEFAULT_DILATION_MM,
                        help=f"dilation of the organ mask in mm (default: {DEFAULT_DILATION_MM:g})")
    parser.add_argument("--region-padding-mm", type=options.distance_mm, default=DEFAULT_PADDING_MM,
                        help=f"padding of the bbox region in mm (default: {DEFAULT_PADDING_MM:g})")
    parser.add_argument("--bundle", type=Path,
                        help="model bundle to run on cases that have no probability file (the ensemble's "
                             "raw output is then fitted; e.g. Resources/DemoBundle)")
    parser.add_argument("--strict", action="store_true",
                        help="with --bundle: leave out (and list) every case whose CT is outside the bundle's "
                             "declared training domain, instead of fitting on it with a warning")
    scheduling.add_options(parser)
    parser.set_defaults(run=run)


def _folds(text: str):
    if text == "loo":
        return text
    try:
        folds = int(text)
    except ValueError:
        folds = 0
    if folds < 2:
        raise argparse.ArgumentTypeError(f"{text!r}: use loo (leave one case out) or a number of folds K >= 2")
    return folds


def _method_options(args) -> dict:
    return {method: {option.name: getattr(args, f"{method}__{option.name}") for option in calibrator.options}
            for method, calibrator in METHODS.items()}


def run(args) -> int:
    cases = find_cases(scheduling.absolute(args.cohort) if scheduling.uses_dask(args) else args.cohort)
    check_outputs(output_paths(("--out", args.out, "json")),
                  input_paths(("--bundle", args.bundle), *(("--cohort", case.folder) for case in cases)))
    probability_for = probability_source = None
    if args.strict and args.bundle is None:
        raise InputError("--strict leaves out cases outside the bundle's domain; it needs --bundle (the "
                         "ensemble's domain checks run on the cases it predicts).")
    if args.bundle is not None:
        from TwinTrackLogic.pipeline import ensemble_probability_hook

        probability_for, probability_source = ensemble_probability_hook(
            args.bundle, threads=scheduling.task_threads(args), probability_name=args.probability)
    if args.plots is not None:
        if args.cv is None and args.method != AUTO:
            raise InputError("--plots shows the cross-validation: add --cv loo (or --cv K).")
        from TwinTrackLogic.review.figures import require_matplotlib
        require_matplotlib()  # refuse before the long run, not after it
    with scheduling.case_map(args) as case_map:
        settings = FitSettings(args.method, probability_name=args.probability, probability_source=probability_source,
                               region_policy=args.region, dilation_mm=args.region_dilation_mm,
                               padding_mm=args.region_padding_mm, case_weight=args.case_weight, cv=args.cv,
                               options_by_method=_method_options(args), strict=args.strict)
        result = fit_cohort(cases, settings, progress=TerminalProgress(), probability_for=probability_for,
                            case_map=case_map)
    result.calibrator.save(args.out)
    calibrator = result.calibrator
    print(f"Calibrator: {calibrator.describe()}")
    print(f"Fitted on: {len(result.used)} of {len(cases)} cases ({calibrator.raters} raters each), "
          f"{calibrator.voxels:,} voxels")
    print(f"Region: {calibrator.region}")
    print(f"Probability: {calibrator.probability_source}")
    print(f"Case weight: {args.case_weight}")
    print(f"ECE against MHR on the fitting voxels ({ECE_MHR_BINS} bins, in-sample): before "
          f"{result.ece_before:.4f}, after {result.ece_after:.4f}")
    if result.cross_validation is not None:
        for line in summary_lines(result.cross_validation.to_dict()):
            print(line)
    print(f"Wrote {args.out}")
    if args.plots is not None:
        from TwinTrackLogic.evaluation.plots import write_cross_validation_plots
        if result.cross_validation is None:  # never: --plots is refused without cross-validation
            raise InputError("--plots shows the cross-validation: add --cv loo (or --cv K).")
        for path in write_cross_validation_plots(result.cross_validation.to_dict(), args.plots):
            print(f"Plot: {path}")
    for name, warning in result.warnings:
        print(f"warning: {name}: {warning}")
    if result.failures:
        print(f"{len(result.failures)} case(s) were skipped:")
        for name, message in result.failures:
            print(f"  {name}: {message}")
        return EXIT_PARTIAL
    return EXIT_OK
