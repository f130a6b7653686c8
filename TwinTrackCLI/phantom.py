"""`twintrack phantom`: write a synthetic multi-rater CT cohort."""

from __future__ import annotations

from pathlib import Path

from TwinTrackLogic import phantom
from TwinTrackLogic.io.paths import check_outputs, output_paths
from TwinTrackLogic.progress import TerminalProgress

from . import options


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "phantom",
        help="write a synthetic multi-rater abdominal CT cohort (CURVAS-PDACVI layout)",
        description=(
            "Write a synthetic cohort: contrast-CT-like volumes in HU with a hypodense pancreatic "
            "tumour whose margin is ambiguous, K rater masks that agree in the core and disagree "
            "at the margin, the pancreas mask and the main peripancreatic vessels. Each case is "
            "written as <out>/case_NNN/image.nii.gz, annotation_1..K.nii.gz, pancreas.nii.gz "
            "and vessels.nii.gz. The same seed always gives the same cohort."
        ),
    )
    parser.add_argument("--out", required=True, type=Path, help="cohort folder to write (created if missing)")
    parser.add_argument("--cases", type=options.cases, default=4, help="number of cases (default: 4)")
    parser.add_argument("--raters", type=options.raters, default=5, help="annotators per case (default: 5, as CURVAS-PDACVI)")
    parser.add_argument("--seed", type=options.seed, default=0, help="random seed (default: 0)")
    parser.add_argument("--first-index", type=options.first_index, default=0,
                        help="index of the first case; use disjoint ranges for separate splits (default: 0)")
    parser.add_argument("--size", choices=sorted(phantom.SIZES), default="small",
                        help="small: 96 x 96 x 48 voxels at 2.6 x 2.6 x 4 mm (default); "
                             "full: 512 x 512 x 100 at 0.8 x 0.8 x 2.5 mm")
    parser.add_argument("--dicom", action="store_true",
                        help="write each CT as a DICOM series folder case_NNN/image/ instead of image.nii.gz "
                             "(to try the DICOM and PACS paths; needs twintrack[dicom])")
    parser.set_defaults(run=run)


def run(args) -> int:
    check_outputs(output_paths(("--out", args.out, "folder")))
    folders = phantom.write_cohort(args.out, args.cases, args.raters, args.seed, args.size,
                                   progress=TerminalProgress(), first_index=args.first_index, dicom=args.dicom)
    print(f"Wrote {phantom.describe(folders, args.raters, args.size)} to {args.out}")
    if args.dicom:
        from TwinTrackLogic.io.dicom_series import check_series

        for folder in folders:
            series = check_series(folder / "image")
            print(f"{folder.name}: --study {series.study_uid} --series {series.series_uid}")
    return 0
