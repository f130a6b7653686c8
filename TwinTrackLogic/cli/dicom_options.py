"""The DICOM options `twintrack predict` shares with `export-dicom`: parsing and early checks.

Everything is checked before the ensemble runs (the extra installed, the CT a DICOM series whose
UIDs the results can reference), so a wrong option costs seconds, not a whole run.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from ..errors import InputError
from ..io.dicom_series import DicomSeries, check_series, is_dicom_folder
from ..pipeline import check_level


def parse_levels(text: str) -> List[float]:
    """``"0.2,0.5,0.8"`` -> the agreement levels of the SEG's segments."""
    try:
        levels = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"--levels must be comma-separated numbers in (0, 1], like 0.2,0.5,0.8, not {text!r}.") from None
    if not levels:
        raise InputError("--levels needs at least one agreement level, like 0.5.")
    return sorted({check_level(level, "--levels") for level in levels})


def add_output_arguments(parser) -> None:
    parser.add_argument("--levels", default="0.2,0.5,0.8",
                        help="agreement levels of the DICOM SEG's segments, comma-separated (default "
                             "0.2,0.5,0.8: one segment each, p >= level)")


def dicom_source(image: Path, series_uid: Optional[str], option: str) -> DicomSeries:
    """The checked series the DICOM results will reference; refused early if they cannot."""
    from ..dicom import require
    from ..dicom.export import check_references

    require()
    if not Path(image).is_dir() or not is_dicom_folder(image):
        raise InputError(f"{option} writes DICOM objects that reference the CT's series, so --image must be a "
                         f"DICOM series folder; {image} is not one.")
    series = check_series(image, series_uid)
    check_references(series)
    return series
