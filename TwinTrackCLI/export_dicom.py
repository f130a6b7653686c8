"""`twintrack export-dicom`: an existing probability map on a DICOM CT as a Parametric Map and a SEG, and
with its involvement read-out a Structured Report."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from TwinTrackLogic import InputError, read_image
from TwinTrackLogic.cohort.cases import check_probability
from TwinTrackLogic.io import check_geometry
from TwinTrackLogic.io.outputs import file_record
from TwinTrackLogic.io.strictjson import read_json

from .dicom_options import add_output_arguments, dicom_source, involvement_for_export, parse_levels
from .predict import provenance_path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export-dicom",
        help="write a probability map on a DICOM CT as a DICOM Parametric Map and a SEG",
        description=(
            "Write a (calibrated) tumour probability map that lies on a DICOM CT's grid as a DICOM "
            "Parametric Map (float32, exact) and a binary DICOM Segmentation with one segment per "
            "agreement level, both referencing the CT's study and series. The algorithm named in them "
            "(bundle, calibrator) comes from the map's provenance sidecar (PROB.provenance.json, "
            "written by `twintrack predict`) when there is one. With the map's vascular-involvement read-out "
            "(PROB.involvement.json next to it, or recomputed from --vessels FILE) it also writes a DICOM "
            "Structured Report (TID 1500) of the read-out and the expected tumour volume. Needs pip install "
            "\"twintrack[dicom]\"."
        ),
    )
    parser.add_argument("--image", required=True, type=Path, help="the CT: a DICOM series folder")
    parser.add_argument("--series", metavar="UID", help="the SeriesInstanceUID, when the folder holds several")
    parser.add_argument("--probability", required=True, type=Path, help="probability map on the CT's grid")
    parser.add_argument("--provenance", type=Path,
                        help="provenance JSON of the map (default: PROB.provenance.json next to it, if any)")
    parser.add_argument("--vessels", type=Path, metavar="FILE",
                        help="vessel label map on the CT's grid (CURVAS-PDACVI labels): recompute the involvement "
                             "read-out for the Structured Report (default: PROB.involvement.json next to the map)")
    parser.add_argument("--out", required=True, type=Path, help="folder for the DICOM files")
    add_output_arguments(parser)
    parser.set_defaults(run=run)


def _provenance(args):
    path = args.provenance or provenance_path(args.probability)
    if args.provenance is None and not path.is_file():
        return None
    record = read_json(path, "provenance JSON file", hint="Give the sidecar predict wrote (OUT.provenance.json).")
    if not isinstance(record, dict):
        raise InputError(f"{path} is not a provenance record: it holds a JSON {type(record).__name__}, not an "
                         "object. Give the sidecar predict wrote (OUT.provenance.json).")
    check_describes(record, path, args.probability)
    return record


def check_describes(record: dict, path: Path, probability: Path) -> None:
    """Refuse a provenance record that is not the record of ``probability``: the DICOM objects would
    name another run's bundle and calibrator. The record's sha256 of its calibrated map must be the
    file's."""
    outputs: dict = record["outputs"] if isinstance(record.get("outputs"), dict) else {}
    files: dict = record["output_files"] if isinstance(record.get("output_files"), dict) else {}
    mapped = outputs.get("probability")
    by_name = {Path(key).name: entry for key, entry in files.items()}  # keys are relative to the sidecar
    recorded = by_name.get(Path(mapped).name) if isinstance(mapped, str) else None
    leave_out = ("Give the sidecar written with this map, or leave out --provenance (and move the sidecar "
                 "away) to write the algorithm as unknown.")
    if not isinstance(recorded, dict) or not isinstance(recorded.get("sha256"), str):
        raise InputError(f"{path} records no sha256 of the map it describes (it is not a sidecar of `twintrack "
                         f"predict`, or an older one), so it cannot be checked to describe {probability}. "
                         + leave_out)
    actual = str(file_record(probability)["sha256"])
    if actual != recorded["sha256"]:
        others = [name for name, entry in files.items()
                  if isinstance(entry, dict) and entry.get("sha256") == actual]
        roles = [role for role, name in outputs.items()
                 if others and isinstance(name, str) and Path(name).name == Path(others[0]).name]
        which = (f"it is the record's {roles[0] if roles else 'other'} map ({Path(others[0]).name}), not its "
                 "calibrated map" if others else
                 f"the record is of {mapped} (sha256 {recorded['sha256'][:12]}...), this map's sha256 is "
                 f"{actual[:12]}...")
        raise InputError(f"{path} does not describe {probability}: {which}. The DICOM objects would name "
                         "another run's bundle and calibrator. " + leave_out)


def run(args) -> int:
    from TwinTrackLogic.dicom.export import export_results

    levels = parse_levels(args.levels)
    series = dicom_source(args.image, args.series, "export-dicom", args.replace_invalid_uids)
    probability = read_image(args.probability, dtype=np.float32)
    check_geometry(series.geometry, probability.geometry, args.probability, args.image)
    check_probability(probability.array, args.probability)  # NaN or outside [0, 1]: refused naming the file
    provenance = _provenance(args)
    involvement, source = involvement_for_export(probability, args.probability, args.vessels, provenance)
    exported = export_results(series, probability.array, args.out, provenance=provenance, levels=levels,
                              parametric_map_extent=args.parametric_map_extent,
                              replace_invalid_uids=args.replace_invalid_uids, involvement=involvement,
                              involvement_source=source)
    report = f", {exported.report} (involvement SR)" if exported.report is not None else ""
    print(f"Wrote {exported.parametric_map} (Parametric Map, {exported.frames['parametric_map']} frames), "
          f"{exported.segmentation} (SEG, {len(levels)} segments){report} for series {series.series_uid}")
    if involvement is None:
        print(f"note: no vascular-involvement read-out ({source}), so no Structured Report was written")
    return 0
