"""`twintrack predict`: run a model bundle on one CT and write its (calibrated) tumour probability."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..bundle import default_bundle_dir, load_bundle
from ..errors import InputError
from ..io import StagedOutputs, read_image
from ..progress import TerminalProgress


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="run the model ensemble on one CT and write its calibrated tumour probability",
        description=(
            "Run a model bundle (localiser, then an ensemble of members in the dilated region) on one "
            "CT in HU and write the tumour probability on the CT's grid. By default the probability is "
            "calibrated with the bundle's default calibrator, so a value reads as the expected fraction of "
            "annotators who would label the voxel tumour. Without --bundle the embedded demo bundle "
            "(or $TWINTRACK_BUNDLE) is used."
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
    parser.add_argument("--level", type=float, default=0.5,
                        help="agreement level for --mask-out, in (0, 1] (default 0.5: a majority of annotators)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="onnxruntime device (default auto: CUDA when available)")
    parser.add_argument("--threads", type=int, help="CPU threads per network (default: onnxruntime's choice)")
    parser.add_argument("--no-region", action="store_true",
                        help="skip the localiser and run the members on the whole CT, as nnU-Net does "
                             "(like-for-like with nnUNetv2_predict for imported nnU-Net bundles)")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ..inference import Ensemble

    if not 0.0 < args.level <= 1.0:
        raise InputError(f"--level must be in (0, 1], not {args.level}.")
    bundle = load_bundle(args.bundle if args.bundle is not None else default_bundle_dir())
    calibrator = None
    if not args.no_calibration:
        path = args.calibrator or bundle.default_calibrator_path
        if path is None:
            raise InputError(f"The bundle {bundle.folder} has no default calibrator. Pass --calibrator "
                             "cal.json (from `twintrack calibrate`) or --no-calibration for the raw probability.")
        from ..calibration import load_calibrator

        calibrator = load_calibrator(path)
    image = read_image(args.image, dtype=np.float32)
    ensemble = Ensemble(bundle, device=args.device, threads=args.threads)
    prediction = ensemble.predict(image, progress=TerminalProgress(), use_region=not args.no_region)
    raw = prediction.probability
    probability = raw
    if calibrator is not None:
        probability = np.zeros_like(raw)
        probability[prediction.region] = calibrator.transform(raw[prediction.region])
    # All outputs appear together or none does (a failure leaves the old ones untouched).
    with StagedOutputs() as outputs:
        if args.raw_out is not None:
            outputs.image(args.raw_out, raw, image.geometry)
        outputs.image(args.out, probability.astype(np.float32, copy=False), image.geometry)
        if args.mask_out is not None:
            outputs.image(args.mask_out, probability >= args.level, image.geometry)
    kind = "raw ensemble" if calibrator is None else "calibrated"
    region_ml = float(prediction.region.sum()) * image.geometry.voxel_volume_ml
    print(f"Wrote the {kind} tumour probability to {args.out} (bundle {bundle.id}, region {region_ml:.1f} mL)")
    return 0
