"""`twintrack predict`: run a model bundle on one CT and write its (calibrated) tumour probability."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..bundle import default_bundle_dir, load_bundle
from ..io import StagedOutputs, read_image
from ..io.images import image_suffix
from ..io.paths import check_outputs, input_paths, output_paths
from ..pipeline import DEFAULT_LEVEL, check_level, input_record, resolve_calibrator, run_case
from ..progress import TerminalProgress


def provenance_path(out: Path) -> Path:
    """The provenance sidecar of an output image: ``prob.nii.gz`` -> ``prob.provenance.json``."""
    suffix = image_suffix(out.name)
    name = out.name[: -len(suffix)] if suffix else out.name
    return out.with_name(f"{name}.provenance.json")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="run the model ensemble on one CT and write its calibrated tumour probability",
        description=(
            "Run a model bundle (localiser, then an ensemble of members in the dilated region) on one "
            "CT in HU and write the tumour probability on the CT's grid. By default the probability is "
            "calibrated with the bundle's default calibrator, inside the ensemble's region (0 outside), so "
            "a value reads as the expected fraction of annotators who would label the voxel tumour. "
            "Next to --out, OUT.provenance.json records the bundle, calibrator, input hash, region volume, "
            "warnings, version and timings. Without --bundle the embedded demo bundle (or "
            "$TWINTRACK_BUNDLE) is used."
        ),
    )
    parser.add_argument("--image", required=True, type=Path, help="CT image (NIfTI, NRRD, MHA or a DICOM folder)")
    parser.add_argument("--bundle", type=Path, help="model bundle folder (default: the demo bundle)")
    calibration = parser.add_mutually_exclusive_group()
    calibration.add_argument("--calibrator", type=Path, help="calibrator JSON (default: the bundle's own)")
    calibration.add_argument("--no-calibration", action="store_true", help="write the raw ensemble probability")
    parser.add_argument("--out", required=True, type=Path, help="probability map to write (e.g. prob.nii.gz)")
    parser.add_argument("--raw-out", type=Path, help="also write the raw (uncalibrated) ensemble probability")
    parser.add_argument("--mask-out", type=Path, help="also write the binary mask of probability >= --level")
    parser.add_argument("--region-out", type=Path,
                        help="also write the ensemble's region (0/1): where it looked and the calibrator applies")
    parser.add_argument("--level", type=float, default=DEFAULT_LEVEL,
                        help="agreement level for --mask-out, in (0, 1]; the mask is p >= level "
                             "(default 0.5: a majority of annotators)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="onnxruntime device (default auto: CUDA when available)")
    parser.add_argument("--threads", type=int, help="CPU threads per network (default: onnxruntime's choice)")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ..inference import Ensemble

    bundle_dir = args.bundle if args.bundle is not None else default_bundle_dir()
    sidecar = provenance_path(args.out)
    check_outputs(output_paths(("--out", args.out, "image"), ("--raw-out", args.raw_out, "image"),
                          ("--mask-out", args.mask_out, "image"), ("--region-out", args.region_out, "image"),
                          ("--out's provenance sidecar", sidecar, "json")),
                  input_paths(("--image", args.image), ("--bundle", bundle_dir), ("--calibrator", args.calibrator),
                         sealed={"--image": "a DICOM series"}))
    level = check_level(args.level)
    bundle = load_bundle(bundle_dir)
    calibrator, calibrator_path = resolve_calibrator(bundle, args.calibrator, args.no_calibration)
    image = read_image(args.image, dtype=np.float32)
    ensemble = Ensemble(bundle, device=args.device, threads=args.threads)
    result = run_case(image, predict=ensemble.predict, calibrator=calibrator, calibrator_path=calibrator_path,
                      bundle=bundle, level=level, progress=TerminalProgress())
    result.provenance["inputs"] = {"image": input_record(args.image)}
    # All outputs appear together or none does (a failure leaves the old ones untouched).
    with StagedOutputs() as outputs:
        if args.raw_out is not None:
            outputs.image(args.raw_out, result.raw, image.geometry)
        outputs.image(args.out, result.calibrated, image.geometry)
        if args.mask_out is not None:
            outputs.image(args.mask_out, result.mask(), image.geometry)
        if args.region_out is not None:
            outputs.image(args.region_out, result.region, image.geometry)
        result.provenance["outputs"] = {"probability": str(args.out), "raw": _name(args.raw_out),
                                        "mask": _name(args.mask_out), "region": _name(args.region_out)}
        outputs.json(sidecar, result.provenance)
    for warning in result.warnings:
        print(f"warning: {warning}")
    kind = "calibrated" if result.is_calibrated else "raw ensemble"
    print(f"Wrote the {kind} tumour probability to {args.out} (bundle {bundle.id}, region "
          f"{result.region_volume_ml:.1f} mL, expected tumour {result.calibrated_curve.expected_volume_ml:.1f} mL); "
          f"provenance: {sidecar}")
    return 0


def _name(path):
    return None if path is None else str(path)
