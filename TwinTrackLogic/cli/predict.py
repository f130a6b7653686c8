"""`twintrack predict`: run a model bundle on one CT and write its (calibrated) tumour probability."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ..bundle import default_bundle_dir, load_bundle
from ..errors import InputError
from ..io import StagedOutputs, read_image
from ..pipeline import DEFAULT_LEVEL, check_level, input_record, resolve_calibrator, run_case
from ..progress import TerminalProgress
from .dicom_options import (add_dicomweb_arguments, add_output_arguments, check_source_options, dicom_source,
                            open_pacs, parse_levels)


def provenance_path(out: Path) -> Path:
    """The provenance sidecar of an output image: ``prob.nii.gz`` -> ``prob.provenance.json``."""
    name = out.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
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
    parser.add_argument("--image", type=Path, help="CT image (NIfTI, NRRD, MHA or a DICOM folder); or use --dicomweb")
    parser.add_argument("--series", metavar="UID",
                        help="with a DICOM folder holding several series: the SeriesInstanceUID to read "
                             "(a folder with several series is refused with their list otherwise)")
    parser.add_argument("--bundle", type=Path, help="model bundle folder (default: the demo bundle)")
    calibration = parser.add_mutually_exclusive_group()
    calibration.add_argument("--calibrator", type=Path, help="calibrator JSON (default: the bundle's own)")
    calibration.add_argument("--no-calibration", action="store_true", help="write the raw ensemble probability")
    parser.add_argument("--out", type=Path, help="probability map to write (e.g. prob.nii.gz); "
                        "needed unless --dicom-out is given")
    parser.add_argument("--dicom-out", type=Path, metavar="DIR",
                        help="also write the calibrated map as a DICOM Parametric Map and the masks at --levels "
                             "as a DICOM SEG into DIR (--image must be a DICOM folder; needs twintrack[dicom])")
    add_output_arguments(parser)
    add_dicomweb_arguments(parser)
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
    check_source_options(args)
    if args.out is None and args.dicom_out is None and not args.send:
        raise InputError("Give --out (a probability map file), --dicom-out (a folder for DICOM objects) or --send.")
    if args.dicomweb is None:
        return _run(args)
    pacs = open_pacs(args)
    # The fetched CT (and, without --dicom-out, the objects sent) live only in this folder.
    with tempfile.TemporaryDirectory(prefix="twintrack-dicomweb-") as scratch:
        args.image = pacs.fetch_series(args.study, args.series, Path(scratch) / "ct")[0].parent
        scratch_results = args.send and args.dicom_out is None
        if scratch_results:
            args.dicom_out = Path(scratch) / "results"
        return _run(args, pacs if args.send else None, keep_dicom=not scratch_results)


def _run(args, pacs=None, keep_dicom: bool = True) -> int:
    from ..inference import Ensemble

    level = check_level(args.level)
    levels = parse_levels(args.levels) if args.dicom_out is not None else None
    dicom = dicom_source(args.image, args.series, "--dicom-out") if args.dicom_out is not None else None
    bundle = load_bundle(args.bundle if args.bundle is not None else default_bundle_dir())
    calibrator, calibrator_path = resolve_calibrator(bundle, args.calibrator, args.no_calibration)
    image = read_image(args.image, dtype=np.float32, series_uid=args.series)
    ensemble = Ensemble(bundle, device=args.device, threads=args.threads)
    result = run_case(image, predict=ensemble.predict, calibrator=calibrator, calibrator_path=calibrator_path,
                      bundle=bundle, level=level, progress=TerminalProgress())
    result.provenance["inputs"] = {"image": input_record(args.image)}
    if dicom is not None:
        result.provenance["inputs"]["dicom_series"] = {
            "study": dicom.study_uid, "series": dicom.series_uid, "slices": len(dicom.files),
            "header_check_s": round(dicom.check_seconds, 3)}
    if args.dicomweb is not None:
        result.provenance["inputs"]["dicomweb"] = {"url": pacs.url if pacs else args.dicomweb,
                                                   "study": args.study, "series": args.series}
    sidecar = provenance_path(args.out) if args.out is not None else args.dicom_out / "provenance.json"
    # All outputs appear together or none does (a failure leaves the old ones untouched), and a
    # DICOM folder made for them goes too (a refused upload leaves nothing behind).
    new_folder = args.dicom_out if args.dicom_out is not None and not args.dicom_out.exists() else None
    try:
        with StagedOutputs() as outputs:
            if args.raw_out is not None:
                outputs.image(args.raw_out, result.raw, image.geometry)
            if args.out is not None:
                outputs.image(args.out, result.calibrated, image.geometry)
            if dicom is not None:
                from ..dicom.export import export_results

                exported = export_results(dicom, result.calibrated, args.dicom_out, provenance=result.provenance,
                                          levels=levels, outputs=outputs)
            if args.mask_out is not None:
                outputs.image(args.mask_out, result.mask(), image.geometry)
            if args.region_out is not None:
                outputs.image(args.region_out, result.region, image.geometry)
            result.provenance["outputs"] = {"probability": _name(args.out), "raw": _name(args.raw_out),
                                            "mask": _name(args.mask_out), "region": _name(args.region_out)}
            if dicom is not None:
                result.provenance["outputs"]["dicom"] = [str(path) for path in exported.paths]
            outputs.json(sidecar, result.provenance)
            if pacs is not None:  # last, inside the block: a refused upload keeps no local output either
                pacs.store(exported.datasets, dicom.study_uid)
    except BaseException:
        if new_folder is not None and new_folder.is_dir() and not any(new_folder.iterdir()):
            new_folder.rmdir()
        raise
    for warning in result.warnings:
        print(f"warning: {warning}")
    kind = "calibrated" if result.is_calibrated else "raw ensemble"
    places = [str(args.out)] if args.out is not None else []
    places += [str(args.dicom_out)] if dicom is not None and keep_dicom else []
    places += [f"study {args.study} on {pacs.url}"] if pacs is not None else []
    record = f"; provenance: {sidecar}" if args.out is not None or keep_dicom else ""
    print(f"Wrote the {kind} tumour probability to {' and '.join(places)} (bundle {bundle.id}, region "
          f"{result.region_volume_ml:.1f} mL, expected tumour {result.calibrated_curve.expected_volume_ml:.1f} mL)"
          f"{record}")
    return 0


def _name(path):
    return None if path is None else str(path)
