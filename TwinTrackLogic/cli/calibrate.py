"""`twintrack calibrate`: fit a calibrator on a multi-rater cohort."""

from __future__ import annotations

from pathlib import Path

from ..calibration import METHODS, fit_cohort
from ..cohort import DEFAULT_DILATION_MM, DEFAULT_PADDING_MM, REGION_POLICIES
from ..io import find_cases
from ..io.paths import check_outputs, input_paths, output_paths
from ..progress import TerminalProgress
from . import EXIT_OK, EXIT_PARTIAL


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
    parser.add_argument("--method", choices=list(METHODS), default="isotonic",
                        help="calibration method (default: isotonic, as the TwinTrack paper)")
    parser.add_argument("--probability", default="probability.nii.gz",
                        help="file name of the uncalibrated probability in each case (default: probability.nii.gz)")
    parser.add_argument("--region", choices=REGION_POLICIES, default="auto",
                        help="fitting region: organ = pancreas/roi mask dilated; bbox = padded box around "
                             "annotations and p > 0.01; all = whole image; auto = organ if the case has "
                             "a mask, else bbox (default: auto)")
    parser.add_argument("--region-dilation-mm", type=float, default=DEFAULT_DILATION_MM,
                        help=f"dilation of the organ mask in mm (default: {DEFAULT_DILATION_MM:g})")
    parser.add_argument("--region-padding-mm", type=float, default=DEFAULT_PADDING_MM,
                        help=f"padding of the bbox region in mm (default: {DEFAULT_PADDING_MM:g})")
    parser.add_argument("--bundle", type=Path,
                        help="model bundle to run on cases that have no probability file (the ensemble's "
                             "raw output is then fitted; e.g. Resources/DemoBundle)")
    parser.set_defaults(run=run)


def run(args) -> int:
    cases = find_cases(args.cohort)
    check_outputs(output_paths(("--out", args.out, "json")),
                  input_paths(("--bundle", args.bundle), *(("--cohort", case.folder) for case in cases)))
    probability_for = probability_source = None
    if args.bundle is not None:
        from ..pipeline import ensemble_probability_hook

        probability_for, probability_source = ensemble_probability_hook(args.bundle,
                                                                        probability_name=args.probability)
    result = fit_cohort(cases, args.method, args.probability, args.region, args.region_dilation_mm,
                        args.region_padding_mm, progress=TerminalProgress(),
                        probability_for=probability_for, probability_source=probability_source)
    result.calibrator.save(args.out)
    calibrator = result.calibrator
    print(f"Calibrator: {calibrator.describe()}")
    print(f"Fitted on: {len(result.used)} of {len(cases)} cases ({calibrator.raters} raters each), "
          f"{calibrator.voxels:,} voxels")
    print(f"Region: {calibrator.region}")
    print(f"Probability: {calibrator.probability_source}")
    print(f"ECE against MHR on the fitting voxels (15 bins): before {result.ece_before:.4f}, "
          f"after {result.ece_after:.4f}")
    print(f"Wrote {args.out}")
    if result.failures:
        print(f"{len(result.failures)} case(s) were skipped:")
        for name, message in result.failures:
            print(f"  {name}: {message}")
        return EXIT_PARTIAL
    return EXIT_OK
