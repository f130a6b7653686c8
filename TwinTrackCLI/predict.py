"""`twintrack predict`: run a model bundle on one CT and write its (calibrated) tumour probability."""

from __future__ import annotations

import functools
import sys
import tempfile
from pathlib import Path

import numpy as np

from TwinTrackLogic import InputError, default_bundle_dir, load_bundle, read_image, resolve_calibrator, run_case
from TwinTrackLogic.calibration.fileformat import check_bundle_raters
from TwinTrackLogic.io.paths import check_outputs, input_paths, output_paths
from TwinTrackLogic.pipeline import input_record, strict_refusal
from TwinTrackLogic.prediction_outputs import (  # noqa: F401 (provenance_path: public)
    involvement_path,
    involvement_record,
    provenance_path,
    write_prediction,
)
from TwinTrackLogic.progress import TerminalProgress
from TwinTrackLogic.review.levels import DEFAULT_LEVEL, check_level
from TwinTrackLogic.vessels import read_vessels

from . import EXIT_OK, EXIT_PARTIAL, options, scheduling
from .dicom_options import (
    add_dicomweb_arguments,
    add_output_arguments,
    check_source_options,
    dicom_source,
    open_pacs,
    parse_levels,
)


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
            "warnings, version and timings. With vessels (--vessels, a cohort case's vessels.nii.gz, or the "
            "bundle's vessel stage) it prints the tumour's contact with each vessel per agreement level and "
            "writes it to OUT.involvement.json (docs/involvement.md). Without --bundle the embedded demo "
            "bundle (or $TWINTRACK_BUNDLE) is used."
        ),
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--image", type=Path, help="CT image (NIfTI, NRRD, MHA or a DICOM folder); or use --dicomweb")
    source.add_argument("--cohort", type=Path,
                        help="folder of case folders (each with image.nii.gz): --out is then a folder that "
                             "gets one folder per case with probability, raw, mask, region and provenance; "
                             "a case already predicted with the same inputs, bundle, calibrator and level "
                             "is skipped, so an interrupted run resumes; a failed case is reported (exit 1)")
    parser.add_argument("--series", metavar="UID",
                        help="with a DICOM folder holding several series: the SeriesInstanceUID to read "
                             "(a folder with several series is refused with their list otherwise)")
    parser.add_argument("--bundle", type=Path, help="model bundle folder (default: the demo bundle)")
    calibration = parser.add_mutually_exclusive_group()
    calibration.add_argument("--calibrator", type=Path, help="calibrator JSON (default: the bundle's own)")
    calibration.add_argument("--no-calibration", action="store_true", help="write the raw ensemble probability")
    parser.add_argument("--allow-rater-mismatch", action="store_true",
                        help="use a calibrator fitted to another number of raters than the bundle declares "
                             "(a recalibration to your own panel), with a warning; refused without it")
    parser.add_argument("--out", type=Path, help="probability map to write (e.g. prob.nii.gz), needed unless "
                        "--dicom-out is given; with --cohort, the output folder")
    parser.add_argument("--dicom-out", type=Path, metavar="DIR",
                        help="also write the calibrated map as a DICOM Parametric Map and the masks at --levels "
                             "as a DICOM SEG into DIR, and with vessels the involvement read-out as a DICOM "
                             "Structured Report (--image must be a DICOM folder; needs twintrack[dicom])")
    add_output_arguments(parser)
    add_dicomweb_arguments(parser)
    parser.add_argument("--raw-out", type=Path, help="also write the raw (uncalibrated) ensemble probability")
    parser.add_argument("--mask-out", type=Path, help="also write the binary mask of probability >= --level")
    parser.add_argument("--region-out", type=Path,
                        help="also write the ensemble's region (0/1): where it looked and the calibrator applies")
    parser.add_argument("--vessels", type=Path, metavar="FILE",
                        help="vessel label map on the CT's grid (CURVAS-PDACVI labels: 1 portal vein, 2 SMV, 3 aorta, "
                             "4 celiac trunk, 5 SMA) for the vascular-involvement read-out; default: the bundle's "
                             "vessel stage, if it has one (with --cohort each case's vessels.nii.gz is used)")
    parser.add_argument("--vessels-out", type=Path, metavar="FILE",
                        help="also write the vessel label map the involvement read-out used")
    parser.add_argument("--level", type=options.level, default=DEFAULT_LEVEL,
                        help="agreement level for --mask-out, in percent of annotators; the mask is p >= level "
                             "(default 50: at least half of them)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="onnxruntime device (default auto: CUDA when available)")
    parser.add_argument("--threads", type=options.threads, help="CPU threads per network (default: onnxruntime's choice)")
    parser.add_argument("--no-region", action="store_true",
                        help="skip the localiser and run the members on the whole CT, as nnU-Net does "
                             "(like-for-like with nnUNetv2_predict for imported nnU-Net bundles)")
    parser.add_argument("--strict", action="store_true",
                        help="refuse (exit 2, nothing written) when the CT is outside the bundle's declared "
                             "training domain or the localiser's result looks wrong, instead of warning")
    scheduling.add_options(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    if args.cohort is not None:
        return run_cohort(args)
    if scheduling.uses_dask(args):
        raise InputError("--scheduler and --workers spread the cases of a --cohort; one --image runs here.")
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
    from TwinTrackLogic import Ensemble

    bundle_dir = args.bundle if args.bundle is not None else default_bundle_dir()
    sidecar = provenance_path(args.out) if args.out is not None else args.dicom_out / "provenance.json"
    readout = involvement_path(args.out) if args.out is not None else args.dicom_out / "involvement.json"
    check_outputs(output_paths(("--out", args.out, "image"), ("--raw-out", args.raw_out, "image"),
                               ("--mask-out", args.mask_out, "image"), ("--region-out", args.region_out, "image"),
                               ("--vessels-out", args.vessels_out, "image"),
                               ("the provenance sidecar", sidecar, "json"),
                               ("the involvement read-out", readout, "json"), ("--dicom-out", args.dicom_out, "folder")),
                  input_paths(("--image", args.image), ("--bundle", bundle_dir), ("--calibrator", args.calibrator),
                              ("--vessels", args.vessels), sealed={"--image": "a DICOM series"}))
    level = check_level(args.level)
    levels = parse_levels(args.levels) if args.dicom_out is not None else None
    dicom = (dicom_source(args.image, args.series, "--dicom-out", args.replace_invalid_uids)
             if args.dicom_out is not None else None)
    bundle = load_bundle(bundle_dir)
    calibrator, calibrator_path = resolve_calibrator(bundle, args.calibrator, args.no_calibration)
    rater_warning = check_bundle_raters(bundle, calibrator, calibrator_path, args.allow_rater_mismatch)
    image = read_image(args.image, dtype=np.float32, series_uid=args.series)
    vessels = read_vessels(args.vessels, image.geometry, args.image) if args.vessels is not None else None
    ensemble = Ensemble(bundle, device=args.device, threads=args.threads)
    predict = functools.partial(ensemble.predict, use_region=not args.no_region)
    result = run_case(image, predict=predict, calibrator=calibrator, calibrator_path=calibrator_path,
                      bundle=bundle, level=level, progress=TerminalProgress(), vessels=vessels,
                      vessels_source=f"given file {args.vessels.name}" if args.vessels is not None else None)
    refusal = strict_refusal(result, args.image) if args.strict else None
    if refusal is not None:
        raise refusal
    if args.vessels_out is not None and result.vessels is None:
        raise InputError(f"--vessels-out {args.vessels_out}: nothing was written, because this run had no vessel "
                         "label map: the model bundle has no vessel stage. Give one with --vessels, or leave "
                         "--vessels-out out.")
    inputs = {"image": input_record(args.image)}
    if args.vessels is not None:
        inputs["vessels"] = input_record(args.vessels)
    if dicom is not None:
        inputs["dicom_series"] = {"study": dicom.study_uid, "series": dicom.series_uid, "slices": len(dicom.files),
                                  "header_check_s": round(dicom.check_seconds, 3)}
    if args.dicomweb is not None:
        inputs["dicomweb"] = {"url": pacs.url if pacs else args.dicomweb, "study": args.study, "series": args.series}
    exported = []

    def stage_dicom(outputs) -> dict:
        from TwinTrackLogic.dicom.export import export_results

        if dicom is None or levels is None:  # never: both come with --dicom-out, which this needs
            raise InputError("DICOM objects need --dicom-out.")
        readout = involvement_record(result) if result.involvement is not None else None
        exported.append(export_results(dicom, result.calibrated, args.dicom_out, provenance=result.provenance,
                                       levels=levels, outputs=outputs,
                                       parametric_map_extent=args.parametric_map_extent,
                                       replace_invalid_uids=args.replace_invalid_uids, involvement=readout))
        return {"dicom": [str(path) for path in exported[0].paths]}

    def upload() -> None:
        if dicom is None:  # never: --send always makes DICOM objects (in scratch without --dicom-out)
            raise InputError("--send needs DICOM objects to send.")
        pacs.store(exported[0].datasets, dicom.study_uid)

    # All outputs appear together or none does (a failure leaves the old ones untouched), and a
    # DICOM folder made for them goes too (a refused upload leaves nothing behind).
    new_folder = args.dicom_out if args.dicom_out is not None and not args.dicom_out.exists() else None
    try:
        write_prediction(result, args.out, inputs, args.raw_out, args.mask_out, args.region_out, sidecar=sidecar,
                         stage_more=stage_dicom if dicom is not None else None,
                         before_publish=upload if pacs is not None else None, vessels_out=args.vessels_out,
                         involvement_out=readout)
    except BaseException:
        if new_folder is not None and new_folder.is_dir() and not any(new_folder.iterdir()):
            new_folder.rmdir()
        raise
    for warning in result.warnings + ([rater_warning] if rater_warning else []):
        print(f"twintrack predict: warning: {warning}", file=sys.stderr)
    kind = "calibrated" if result.is_calibrated else "raw ensemble"
    places = [str(args.out)] if args.out is not None else []
    places += [str(args.dicom_out)] if dicom is not None and keep_dicom else []
    places += [f"study {args.study} on {pacs.url}"] if pacs is not None else []
    record = f"; provenance: {sidecar}" if args.out is not None or keep_dicom else ""
    print(f"Wrote the {kind} tumour probability to {' and '.join(places)} (bundle {bundle.id}, region "
          f"{result.region_volume_ml:.1f} mL, expected tumour {result.calibrated_curve.expected_volume_ml:.1f} mL)"
          f"{record}")
    print_involvement(result, readout if args.out is not None or keep_dicom else None)
    return 0


def print_involvement(result, path) -> None:
    """The per-vessel table and where it was written (``path``; None: kept nowhere), or the note that there
    is no read-out."""
    if result.involvement is None:
        for note in result.provenance.get("notes", []):
            print(f"twintrack predict: note: {note}")
        return
    for line in result.involvement.table_lines():
        print(line)
    if path is not None:
        print(f"Involvement read-out: {path}")


def run_cohort(args) -> int:
    from TwinTrackLogic.cohort.predict import predict_cohort, remove_partial_outputs, settings_for

    if args.out is None:
        raise InputError("--cohort needs --out DIR: the folder that gets one output folder per case.")
    dicom_options = [option for option, value in (("--dicom-out", args.dicom_out), ("--dicomweb", args.dicomweb))
                     if value is not None]
    if dicom_options:
        raise InputError(f"{dicom_options[0]} works with one --image; leave it out with --cohort.")

    if args.vessels is not None or args.vessels_out is not None:
        option = "--vessels" if args.vessels is not None else "--vessels-out"
        raise InputError(f"{option} names one file; with --cohort each case uses its own vessels.nii.gz (and its "
                         "read-out goes to its output folder). Leave it out.")
    extra = [name for name in ("raw_out", "mask_out", "region_out") if getattr(args, name) is not None]
    if extra:
        raise InputError(f"--{extra[0].replace('_', '-')} names one file; with --cohort every case folder "
                         "gets probability, raw, mask and region images. Leave it out.")
    settings = settings_for(args.bundle if args.bundle is not None else default_bundle_dir(), args.calibrator,
                            args.no_calibration, args.level, args.device,
                            args.threads if args.threads is not None else scheduling.task_threads(args),
                            use_region=not args.no_region, strict=args.strict,
                            allow_rater_mismatch=args.allow_rater_mismatch)
    try:
        with scheduling.case_map(args) as case_map:
            result = predict_cohort(args.cohort, args.out, settings, case_map=case_map,
                                    progress=TerminalProgress())
    finally:
        remove_partial_outputs(args.out)  # a worker stopped mid-write (Ctrl-C) leaves its temporaries
    print(f"Predicted {len(result.predicted)} case(s), {len(result.skipped)} already up to date, "
          f"{len(result.failed)} failed; outputs in {args.out}")
    for name, row in result.rows.items():
        for warning in row.get("warnings", []):
            print(f"warning: {name}: {warning}")
    without_vessels = [name for name, row in result.rows.items() if row.get("vessels_source") == "none"]
    if without_vessels:
        print(f"note: no vascular-involvement read-out for {len(without_vessels)} case(s) without vessels.nii.gz "
              f"(and the bundle has no vessel stage): {', '.join(without_vessels)}")
    if result.failed:
        print(f"{len(result.failed)} case(s) failed and were skipped:")
        for name, message in result.failed.items():
            print(f"  {name}: {message}")
        return EXIT_PARTIAL
    return EXIT_OK
