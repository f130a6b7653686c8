"""`twintrack apply`: calibrate one raw probability map with a calibrator file."""

from __future__ import annotations

from pathlib import Path

from TwinTrackLogic import load_calibrator, read_image, run_case
from TwinTrackLogic.cohort.cases import check_probability
from TwinTrackLogic.io import StagedOutputs, read_mask
from TwinTrackLogic.io.paths import check_outputs, input_paths, output_paths
from TwinTrackLogic.prediction_outputs import involvement_path, involvement_record
from TwinTrackLogic.review.levels import DEFAULT_LEVEL, check_level
from TwinTrackLogic.vessels import read_vessels

from . import options


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "apply",
        help="calibrate a raw probability map with a calibrator JSON",
        description=(
            "Map an uncalibrated tumour probability map to the expected mean human response with a "
            "calibrator written by `twintrack calibrate`, exactly as `twintrack predict` does: only "
            "inside the ensemble's region, 0 outside. The region is --region MASK (for example the "
            "--region-out of `predict`); without it, the voxels where the raw map is non-zero (the "
            "engine writes exact zeros outside its region). The output keeps the input's voxel grid "
            "and is float32 in [0, 1]. With --vessels it also prints the tumour's contact with each vessel "
            "per agreement level and writes it to OUT.involvement.json (docs/involvement.md)."
        ),
    )
    parser.add_argument("--calibrator", required=True, type=Path, help="calibrator JSON")
    parser.add_argument("--probability", required=True, type=Path, help="uncalibrated (raw) probability map")
    parser.add_argument("--region", type=Path, metavar="MASK",
                        help="0/1 mask on the map's grid where the ensemble ran (default: raw map > 0)")
    parser.add_argument("--out", required=True, type=Path, help="calibrated map to write")
    parser.add_argument("--mask-out", type=Path, help="also write the binary mask of calibrated p >= --level")
    parser.add_argument("--level", type=options.level, default=DEFAULT_LEVEL,
                        help="agreement level for --mask-out, in percent of annotators; the mask is p >= level (default 50)")
    parser.add_argument("--vessels", type=Path, metavar="FILE",
                        help="vessel label map on the map's grid (CURVAS-PDACVI labels: 1 portal vein, 2 SMV, 3 aorta, "
                             "4 celiac trunk, 5 SMA) for the vascular-involvement read-out")
    parser.set_defaults(run=run)


def run(args) -> int:
    readout = involvement_path(args.out)
    check_outputs(output_paths(("--out", args.out, "image"), ("--mask-out", args.mask_out, "image"),
                               ("the involvement read-out", readout, "json")),
                  input_paths(("--calibrator", args.calibrator), ("--probability", args.probability),
                              ("--region", args.region), ("--vessels", args.vessels)))
    level = check_level(args.level)
    calibrator = load_calibrator(args.calibrator)
    volume = read_image(args.probability)
    raw = check_probability(volume.array, args.probability)
    region = None if args.region is None else read_mask(args.region, volume.geometry, args.probability)
    vessels = None if args.vessels is None else read_vessels(args.vessels, volume.geometry, args.probability)
    result = run_case(volume, raw=raw, region=region, calibrator=calibrator, calibrator_path=args.calibrator,
                      level=level, vessels=vessels,
                      vessels_source=f"given file {args.vessels.name}" if args.vessels is not None else None)
    with StagedOutputs() as outputs:
        outputs.image(args.out, result.calibrated, volume.geometry)
        if args.mask_out is not None:
            outputs.image(args.mask_out, result.mask(), volume.geometry)
        if result.involvement is not None:
            outputs.json(readout, involvement_record(result))
        else:  # an earlier run's read-out would describe another map
            readout.unlink(missing_ok=True)
    raters = f", {calibrator.raters} raters" if calibrator.raters else ""
    region_text = args.region if args.region is not None else "raw map > 0"
    print(f"Calibrated {args.probability} ({calibrator.describe()}{raters}) inside {region_text} "
          f"({result.region_volume_ml:.1f} mL): expected tumour {result.calibrated_curve.expected_volume_ml:.1f} mL; "
          f"wrote {args.out}")
    if result.involvement is not None:
        print("\n".join(result.involvement.table_lines()))
        print(f"Involvement read-out: {readout}")
    return 0
