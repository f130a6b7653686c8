"""`twintrack apply`: calibrate one probability map with a calibrator file."""

from __future__ import annotations

from pathlib import Path

from ..calibration import load_calibrator
from ..io import read_image, write_image


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "apply",
        help="calibrate a probability map with a calibrator JSON",
        description=(
            "Map an uncalibrated tumour probability map to the expected mean human response with a "
            "calibrator written by `twintrack calibrate`. The output keeps the input's voxel grid "
            "and is float32 in [0, 1]."
        ),
    )
    parser.add_argument("--calibrator", required=True, type=Path, help="calibrator JSON")
    parser.add_argument("--probability", required=True, type=Path, help="uncalibrated probability map")
    parser.add_argument("--out", required=True, type=Path, help="calibrated map to write")
    parser.set_defaults(run=run)


def run(args) -> int:
    calibrator = load_calibrator(args.calibrator)
    volume = read_image(args.probability)
    calibrated = calibrator.transform(volume.array, source=str(args.probability))
    volume.array = None  # the input is not needed while the output is written
    write_image(args.out, calibrated, volume.geometry)
    raters = f", {calibrator.raters} raters" if calibrator.raters else ""
    print(f"Calibrated {args.probability} ({calibrator.describe()}{raters}); wrote {args.out}")
    return 0
