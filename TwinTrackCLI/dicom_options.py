"""The DICOM options `twintrack predict` shares with `export-dicom`: parsing and early checks.

Everything is checked before the ensemble runs (the extra installed, the CT a DICOM series whose
UIDs the results can reference), so a wrong option costs seconds, not a whole run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from TwinTrackLogic import InputError
from TwinTrackLogic.dicom.export import PM_EXTENTS
from TwinTrackLogic.io.dicom_series import DicomSeries, check_series, is_dicom_folder, no_series_error
from TwinTrackLogic.review.levels import DEFAULT_CONTOUR_LEVELS, parse_percents, percent_text


def parse_levels(text: str) -> List[float]:
    """``"20,50,80"`` (percent of annotators) -> the agreement levels of the SEG's segments, as fractions."""
    return list(parse_percents(text, "--levels"))


def add_output_arguments(parser) -> None:
    parser.add_argument("--levels", default=percent_text(DEFAULT_CONTOUR_LEVELS),
                        help="agreement levels of the DICOM SEG's segments, in percent of annotators, comma-"
                             f"separated (default {percent_text(DEFAULT_CONTOUR_LEVELS)}: one segment each, p >= level)")
    parser.add_argument("--parametric-map-extent", choices=PM_EXTENTS, default=PM_EXTENTS[0],
                        help="slices the DICOM Parametric Map covers: 'series' (default) one frame per CT "
                             "slice, which OHIF and Slicer both read; 'slab' only the slices where p > 0: "
                             "smaller (a quarter to a third of the size on the phantoms), read by Slicer "
                             "but not by OHIF 3.13 (see docs/dicom.md)")
    parser.add_argument("--replace-invalid-uids", action="store_true",
                        help="when the CT carries a UID DICOM forbids (over 64 characters, letters, a leading "
                             "zero), give the results new UIDs in its place, recorded in the objects; without "
                             "it such a CT is refused")


def dicom_source(image: Path, series_uid: Optional[str], option: str, replace_uids: bool = False) -> DicomSeries:
    """The checked series the DICOM results will reference; refused early if they cannot (no UIDs,
    or UIDs DICOM forbids unless ``replace_uids``)."""
    from TwinTrackLogic.dicom import require
    from TwinTrackLogic.dicom.export import check_references
    from TwinTrackLogic.dicom.uids import check_series_uids

    require()
    if Path(image).is_dir() and not is_dicom_folder(image):
        raise no_series_error(Path(image))  # says where the series is when it lies below (a disc's DICOMDIR)
    if not Path(image).is_dir():
        raise InputError(f"{option} writes DICOM objects that reference the CT's series, so --image must be a "
                         f"DICOM series folder; {image} is not one.")
    series = check_series(image, series_uid)
    check_references(series)
    check_series_uids(series, replace_uids)
    return series


def add_dicomweb_arguments(parser) -> None:
    group = parser.add_argument_group(
        "PACS (DICOMweb)", "fetch the CT from a DICOMweb server instead of --image and, with --send, store "
        "the Parametric Map, the SEG and (with vessels) the involvement Structured Report back into its study. "
        "Credentials come from $TWINTRACK_DICOMWEB_TOKEN, or $TWINTRACK_DICOMWEB_USER and "
        "$TWINTRACK_DICOMWEB_PASSWORD, or --dicomweb-credentials; never from the command line.")
    group.add_argument("--dicomweb", metavar="URL", help="DICOMweb base URL, e.g. http://localhost:8042/dicom-web")
    group.add_argument("--study", metavar="UID", help="StudyInstanceUID of the CT on the server")
    group.add_argument("--send", action="store_true", help="store the results in the CT's study (STOW-RS)")
    group.add_argument("--dicomweb-credentials", type=Path, metavar="FILE",
                       help='JSON file with {"username": ..., "password": ...} or {"token": ...}, readable by you '
                            "only (chmod 600)")
    from TwinTrackLogic.dicom.web import Limits

    from . import options

    group.add_argument("--dicomweb-max-mb", type=options.megabytes, default=Limits.max_mb, metavar="MB",
                       help=f"largest answer read from the server (default {Limits.max_mb:g} MB: a thin-slice CT "
                            "series with room to spare); a larger one is refused")
    group.add_argument("--dicomweb-request-timeout-s", type=options.seconds, default=Limits.request_s, metavar="S",
                       help=f"deadline of one request, first byte to last (default {Limits.request_s:g} s)")
    group.add_argument("--dicomweb-series-timeout-s", type=options.seconds, default=Limits.series_s, metavar="S",
                       help=f"deadline of fetching the whole series (default {Limits.series_s:g} s)")


def check_source_options(args) -> None:
    """Exactly one CT source: --image, or --dicomweb with --study and --series."""
    if args.dicomweb is None:
        if args.image is None:
            raise InputError("Give the CT with --image (a file or a DICOM folder) or --dicomweb URL --study UID --series UID.")
        if args.send or args.study is not None:
            raise InputError("--send and --study go with --dicomweb URL (the PACS the CT comes from).")
        return
    if args.image is not None:
        raise InputError("Give either --image or --dicomweb, not both.")
    if args.study is None or args.series is None:
        raise InputError("--dicomweb needs --study UID and --series UID: the CT series to fetch.")


def open_pacs(args):
    from TwinTrackLogic.dicom.web import Limits, Pacs

    return Pacs(args.dicomweb, args.dicomweb_credentials,
                Limits(args.dicomweb_max_mb, args.dicomweb_request_timeout_s, args.dicomweb_series_timeout_s))


def involvement_for_export(probability, probability_path: Path, vessels: Optional[Path],
                           provenance: Optional[Dict[str, Any]]) -> Tuple[Optional[Dict[str, Any]], str]:
    """The involvement read-out for export-dicom's Structured Report, and where it came from: recomputed
    from ``vessels`` (a label map file) when given, else ``PROB.involvement.json`` next to the map; None
    (and why) without either. ``probability``: the map as read (a Volume)."""
    from TwinTrackLogic.involvement import read_involvement
    from TwinTrackLogic.io.strictjson import read_json
    from TwinTrackLogic.prediction_outputs import involvement_path
    from TwinTrackLogic.vessels import read_vessels

    if vessels is not None:
        labels = read_vessels(vessels, probability.geometry, probability_path)
        calibrator = provenance.get("calibrator") if isinstance(provenance, dict) else None
        raters = calibrator.get("raters") if isinstance(calibrator, dict) else 0
        # Without a provenance record nothing says the map is calibrated: no claim about annotators then.
        readout = read_involvement(probability.array, labels, raters=raters if isinstance(raters, int) else 0,
                                   is_calibrated=isinstance(calibrator, dict))
        return {**readout.to_json(), "vessels_source": f"given file {vessels.name}"}, str(vessels)
    path = involvement_path(probability_path)
    if not path.is_file():
        return None, f"no {path.name} next to the map and no --vessels"
    return read_json(path, "involvement read-out", hint="Give the OUT.involvement.json `twintrack predict` wrote, "
                     "or recompute it with --vessels FILE."), str(path)
