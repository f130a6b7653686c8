"""DICOM CT series checked from their headers before a voxel is trusted.

ITK's series reader places slices on a uniform grid whatever the files say: a missing slice,
a duplicated position, a tilted gantry or a slice of another orientation only print a warning
(or nothing), and voxels land millimetres to centimetres from where they belong. This module
reads every file's header (GDCM through SimpleITK, no pixel decoded), refuses a series it cannot
place exactly, and states the grid the headers define:

- one series per folder, or the one ``series_uid`` names (the refusal lists the series);
- single-frame CT images only, no localiser;
- ImagePositionPatient, ImageOrientationPatient and PixelSpacing in every file;
- one Frame of Reference, one orientation, one matrix size and pixel spacing;
- no two slices at the same position, every gap within 1 % of the median gap (no missing
  slice), no in-plane shift from slice to slice (no gantry tilt); deviations up to 0.1 mm
  count as the rounding of written positions.

The grid: origin = the position of the lowest slice along the normal row x column; spacing =
(column spacing, row spacing, the lowest-to-highest distance / (slices - 1)); direction columns = row, column, normal. Slices are
sorted along that normal, so the array's k-th slice is ``files[k]``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, cast

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from .geometry import Geometry, PathLike

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ORIENTATION_ATOL = 1e-4  # direction cosines of two slices that count as the same orientation
GAP_RTOL = 0.01  # a gap more than 1 % off the median gap is a missing slice or uneven spacing
DUPLICATE_ATOL_MM = 0.01  # two slices closer than this along the normal share a position
TILT_FRACTION_OF_PIXEL = 0.05  # largest in-plane drift of a slice over the stack, in pixels
# Scanners often write positions rounded to 0.1 mm (0.625 mm slices then read 0.6, 0.7, 0.6 ...):
# deviations up to this are rounding, not missing slices or tilt.
POSITION_ATOL_MM = 0.1
SHOWN = 5  # slices named in a message


@dataclass(frozen=True)
class SliceHeader:
    """What the check needs from one file's header (values as written; None when absent)."""

    path: Path
    series_uid: str
    study_uid: str
    frame_of_reference_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    modality: str
    description: str
    instance_number: Optional[int]
    position: Optional[Tuple[float, float, float]]
    orientation: Optional[Tuple[float, ...]]
    pixel_spacing: Optional[Tuple[float, float]]  # (row spacing, column spacing) mm, as DICOM orders it
    rows: int
    columns: int
    frames: int
    image_type: str
    gantry_tilt: Optional[float]
    samples_per_pixel: int = 1

    def name(self) -> str:
        number = f" (InstanceNumber {self.instance_number})" if self.instance_number is not None else ""
        return f"{self.path.name}{number}"


@dataclass
class DicomSeries:
    """A checked CT series: its files in array order and the grid its headers define."""

    folder: Path
    series_uid: str
    study_uid: str
    frame_of_reference_uid: str
    description: str
    files: List[Path]
    sop_instance_uids: List[str]
    geometry: Geometry
    check_seconds: float
    warnings: List[str] = field(default_factory=list)

    @property
    def missing_uids(self) -> List[str]:
        """The identifying UIDs the files lack (an over-eager anonymiser blanks them)."""
        missing = [name for name, value in (("StudyInstanceUID", self.study_uid),
                                            ("SeriesInstanceUID", self.series_uid)) if not value]
        if not all(self.sop_instance_uids):
            missing.append("SOPInstanceUID")
        return missing


def _text(reader: sitk.ImageFileReader, tag: str) -> str:
    return reader.GetMetaData(tag).strip().rstrip("\x00").strip() if reader.HasMetaDataKey(tag) else ""


def _numbers(reader: sitk.ImageFileReader, tag: str) -> Optional[Tuple[float, ...]]:
    text = _text(reader, tag)
    if not text:
        return None
    try:
        return tuple(float(value) for value in text.split("\\"))
    except ValueError:
        return None


def _integer(reader: sitk.ImageFileReader, tag: str) -> Optional[int]:
    values = _numbers(reader, tag)
    return int(values[0]) if values else None


def read_slice_header(path: Path) -> Optional[SliceHeader]:
    """The header of one DICOM file, or None when ``path`` is not a DICOM image."""
    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    position = _numbers(reader, "0020|0032")
    orientation = _numbers(reader, "0020|0037")
    spacing = _numbers(reader, "0028|0030")
    tilt = _numbers(reader, "0018|1120")
    return SliceHeader(
        path=path,
        series_uid=_text(reader, "0020|000e"),
        study_uid=_text(reader, "0020|000d"),
        frame_of_reference_uid=_text(reader, "0020|0052"),
        sop_instance_uid=_text(reader, "0008|0018"),
        sop_class_uid=_text(reader, "0008|0016"),
        modality=_text(reader, "0008|0060"),
        description=_text(reader, "0008|103e"),
        instance_number=_integer(reader, "0020|0013"),
        position=position if position is not None and len(position) == 3 else None,
        orientation=orientation if orientation is not None and len(orientation) == 6 else None,
        pixel_spacing=(spacing[0], spacing[1]) if spacing is not None and len(spacing) >= 2 else None,
        rows=_integer(reader, "0028|0010") or 0,
        columns=_integer(reader, "0028|0011") or 0,
        frames=_integer(reader, "0028|0008") or 1,
        image_type=_text(reader, "0008|0008").upper(),
        gantry_tilt=tilt[0] if tilt else None,
        samples_per_pixel=_integer(reader, "0028|0002") or 1,
    )


def scan_folder(folder: PathLike) -> Dict[str, List[SliceHeader]]:
    """Every DICOM image header in ``folder`` (not its sub-folders), grouped by SeriesInstanceUID.

    Files that are not DICOM images (a README, a DICOMDIR) are skipped. A series whose files
    carry no SeriesInstanceUID is grouped under ``""``.
    """
    folder = Path(folder)
    series: Dict[str, List[SliceHeader]] = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        header = read_slice_header(path)
        if header is not None:
            series.setdefault(header.series_uid, []).append(header)
    return series


def _unreadable_dicom(folder: Path) -> List[Path]:
    """Files of ``folder`` that say they are DICOM (the "DICM" marker at byte 128) but whose image header
    GDCM cannot read: a slice cut short is left out of the series silently, and its neighbours would
    be blamed for the gap. A DICOMDIR (an index, not an image) is not one of them."""
    broken = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.name.upper() != "DICOMDIR"):
        try:
            with open(path, "rb") as stream:
                marked = stream.read(132)[128:] == b"DICM"
        except OSError:
            continue
        if marked and read_slice_header(path) is None:
            broken.append(path)
    return broken


def is_dicom_folder(folder: PathLike) -> bool:
    """Whether ``folder`` holds at least one DICOM image file (read from the headers)."""
    folder = Path(folder)
    return folder.is_dir() and any(
        read_slice_header(p) is not None for p in sorted(folder.iterdir()) if p.is_file())


def _series_list(series: Dict[str, List[SliceHeader]]) -> str:
    lines = []
    for uid, headers in sorted(series.items(), key=lambda item: -len(item[1])):
        description = headers[0].description or "(no description)"
        modality = headers[0].modality or "?"
        lines.append(f"  {uid or '(no SeriesInstanceUID)'}  {modality}  {len(headers)} file(s)  {description}")
    return "\n".join(lines)


def _names(headers: Sequence[SliceHeader]) -> str:
    shown = ", ".join(h.name() for h in headers[:SHOWN])
    return shown + (f" and {len(headers) - SHOWN} more" if len(headers) > SHOWN else "")


def _refuse(folder: Path, problem: str) -> InputError:
    return InputError(f"{folder}: {problem} TwinTrack reads only a series it can place exactly; "
                      "export the series again from the scanner or the archive (one series per folder).")


def _series_below(folder: Path, limit: int = 2000) -> Optional[Path]:
    """The first folder under ``folder`` holding a DICOM image (a disc's DICOM/ST000001/...), or None;
    at most ``limit`` files are looked at."""
    looked = 0
    for below in sorted(p for p in folder.rglob("*") if p.is_dir()):
        for path in sorted(p for p in below.iterdir() if p.is_file())[:3]:
            looked += 1
            if looked > limit:
                return None
            if read_slice_header(path) is not None:
                return below
    return None


def no_series_error(folder: Path) -> InputError:
    dicomdir = next((p for p in folder.iterdir() if p.is_file() and p.name.upper() == "DICOMDIR"), None)
    below = _series_below(folder)
    where = (f" The series files are in a folder below it: pass {below} (a folder holding one series' image files)."
             if below is not None else " Its image files were not found below it either; copy the whole disc.")
    if dicomdir is not None:
        return InputError(f"{folder} holds a DICOMDIR (the index of a DICOM disc or USB stick), not the series "
                          f"itself: TwinTrack reads the image files, not the index.{where}")
    hint = where if below is not None else ""
    return InputError(f"{folder} is a folder without a DICOM series (no DICOM image file in it). Pass an image "
                      f"file (NIfTI, NRRD, MHA) or a folder holding one DICOM CT series.{hint}")


def _choose(folder: Path, series: Dict[str, List[SliceHeader]], series_uid: Optional[str]) -> List[SliceHeader]:
    if not series:
        raise no_series_error(folder)
    if series_uid is not None:
        if series_uid not in series:
            raise InputError(f"{folder} holds no series with SeriesInstanceUID {series_uid}. "
                             f"Its series:\n{_series_list(series)}")
        return series[series_uid]
    if len(series) > 1:
        raise InputError(f"{folder} holds {len(series)} DICOM series; choose one with --series UID "
                         f"(or move each into its own folder):\n{_series_list(series)}")
    return next(iter(series.values()))


def _check_uniform(folder: Path, headers: List[SliceHeader]) -> None:
    missing = [h for h in headers if h.position is None or h.orientation is None or h.pixel_spacing is None]
    if missing:
        raise _refuse(folder, f"{len(missing)} of {len(headers)} file(s) lack ImagePositionPatient, "
                              f"ImageOrientationPatient or PixelSpacing: {_names(missing)}.")
    not_ct = [h for h in headers if (h.modality and h.modality != "CT")
              or (h.sop_class_uid and h.sop_class_uid != CT_IMAGE_STORAGE)]
    if not_ct:
        kind = not_ct[0].modality or not_ct[0].sop_class_uid
        raise _refuse(folder, f"{len(not_ct)} file(s) are not single-frame CT images ({kind}): "
                              f"{_names(not_ct)}. TwinTrack's models are for CT in HU.")
    colour = [h for h in headers if h.samples_per_pixel != 1]
    if colour:
        raise _refuse(folder, f"{_names(colour)} hold {colour[0].samples_per_pixel} samples per pixel (a colour "
                              "image, a screenshot or a secondary capture); a CT slice is grey-scale (1 sample). "
                              "Remove those files from the folder.")
    multi = [h for h in headers if h.frames > 1]
    if multi:
        raise _refuse(folder, f"{_names(multi)} hold several frames; only single-frame CT series are read.")
    localisers = [h for h in headers if "LOCALIZER" in h.image_type.split("\\")]
    if localisers:
        raise _refuse(folder, f"the series holds localiser (scout) image(s): {_names(localisers)}. "
                              "Remove them from the folder.")
    frames = {h.frame_of_reference_uid for h in headers}
    if len(frames) > 1 or "" in frames:
        by_frame: Dict[str, List[SliceHeader]] = {}
        for h in headers:
            by_frame.setdefault(h.frame_of_reference_uid, []).append(h)
        parts = "; ".join(f"{uid or '(none)'}: {_names(group)}" for uid, group in by_frame.items())
        what = "no FrameOfReferenceUID" if frames == {""} else f"{len(frames)} frames of reference"
        raise _refuse(folder, f"the slices have {what} ({parts}), so their positions do not share "
                              "one coordinate system.")
    matrices = {(h.rows, h.columns) for h in headers}
    spacings = {h.pixel_spacing for h in headers}
    if len(matrices) > 1 or len(spacings) > 1:
        odd = [h for h in headers if (h.rows, h.columns) != (headers[0].rows, headers[0].columns)
               or h.pixel_spacing != headers[0].pixel_spacing]
        raise _refuse(folder, f"the slices differ in matrix size or pixel spacing from "
                              f"{headers[0].name()} ({headers[0].rows} x {headers[0].columns}, "
                              f"{headers[0].pixel_spacing} mm): {_names(odd)}.")
    first = np.asarray(headers[0].orientation)
    # Every orientation is known here: slices without one were refused above.
    turned = [h for h in headers
              if not np.allclose(cast(Tuple[float, ...], h.orientation), first, rtol=0, atol=ORIENTATION_ATOL)]
    if turned:
        raise _refuse(folder, f"{len(turned)} slice(s) have another ImageOrientationPatient than "
                              f"{headers[0].name()} ({headers[0].orientation}): {_names(turned)}.")
    row, column = first[:3], first[3:]
    if (abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(column) - 1) > 1e-3
            or abs(row @ column) > 1e-3):
        raise _refuse(folder, f"ImageOrientationPatient {headers[0].orientation} is not two orthogonal "
                              "unit vectors.")


def _check_stack(folder: Path, ordered: List[SliceHeader], heights: np.ndarray, normal: np.ndarray,
                 pixel_mm: float) -> float:
    """Refuse duplicates, gaps and tilt; return the slice spacing (mm)."""
    if len(ordered) < 2:
        raise _refuse(folder, f"the series has {len(ordered)} slice; a 3D CT needs at least 2.")
    gaps = np.diff(heights)
    duplicates = np.flatnonzero(gaps < DUPLICATE_ATOL_MM)
    if len(duplicates):
        pairs = "; ".join(f"{ordered[i].name()} and {ordered[i + 1].name()} at {heights[i]:.3f} mm"
                          for i in duplicates[:SHOWN])
        raise _refuse(folder, f"{len(duplicates)} pair(s) of slices share a position along the slice "
                              f"normal ({pairs}): a repeated acquisition or a second reconstruction is "
                              "mixed into the series.")
    step = float(np.median(gaps))
    uneven = np.flatnonzero(np.abs(gaps - step) > max(GAP_RTOL * step, POSITION_ATOL_MM))
    if len(uneven):
        details = []
        for i in uneven[:SHOWN]:
            missing = int(round(gaps[i] / step)) - 1
            note = f", about {missing} slice(s) missing" if missing >= 1 else ""
            details.append(f"{gaps[i]:.3f} mm between {ordered[i].name()} and {ordered[i + 1].name()}{note}")
        raise _refuse(folder, f"the slices are not evenly spaced (median gap {step:.3f} mm; "
                              f"{len(uneven)} gap(s) differ by more than {GAP_RTOL:.0%}: "
                              + "; ".join(details) + ").")
    # The spacing from end to end: exact when positions are rounded, and any drift shows below.
    step = float(heights[-1] - heights[0]) / (len(heights) - 1)
    residual = np.abs(heights - heights[0] - step * np.arange(len(heights)))
    if residual.max() > POSITION_ATOL_MM:
        worst = int(np.argmax(residual))
        raise _refuse(folder, f"the slice spacing drifts along the stack: {ordered[worst].name()} lies "
                              f"{residual[worst]:.3f} mm off an even {step:.4f} mm grid.")
    offsets = np.asarray([h.position for h in ordered]) - np.asarray(ordered[0].position)
    in_plane = offsets - np.outer(offsets @ normal, normal)
    drift = np.linalg.norm(in_plane, axis=1)
    tilted = np.flatnonzero(drift > max(TILT_FRACTION_OF_PIXEL * pixel_mm, POSITION_ATOL_MM))
    if len(tilted):
        angle = np.degrees(np.arctan2(drift[-1], heights[-1] - heights[0]))
        tag = f" (GantryDetectorTilt {ordered[0].gantry_tilt:g}°)" if ordered[0].gantry_tilt else ""
        raise _refuse(folder, f"the slices shift sideways along the stack by up to {drift.max():.2f} mm "
                              f"(about {angle:.1f}° of gantry tilt{tag}), from {_names([ordered[i] for i in tilted])}: "
                              "the stack is sheared, not a box. Resample it to an untilted grid first "
                              "(e.g. Slicer's 'Acquisition Transform' on DICOM import).")
    return step


def check_series(folder: PathLike, series_uid: Optional[str] = None) -> DicomSeries:
    """Check a DICOM CT series from its headers and return its files in order and its grid.

    ``series_uid`` picks one series of a folder that holds several; without it such a folder is
    refused with the list of its series. Raises :class:`InputError` naming the slices at fault.
    """
    folder = Path(folder)
    started = time.perf_counter()
    try:
        return _checked(folder, _choose(folder, scan_folder(folder), series_uid), started)
    except InputError as error:
        broken = _unreadable_dicom(folder)
        if not broken:
            raise
        raise InputError(f"{broken[0]} is a DICOM file whose header cannot be read: it is probably cut short or "
                         f"corrupted{f' (as are {len(broken) - 1} more file(s) there)' if len(broken) > 1 else ''}, "
                         "so it was left out of the series, and then: " + str(error)) from None


def check_files(files: Sequence[PathLike]) -> DicomSeries:
    """:func:`check_series` for a list of files (e.g. a series from Slicer's DICOM database)."""
    started = time.perf_counter()
    paths = [Path(p) for p in files]
    if not paths:
        raise InputError("No DICOM files were given.")
    headers = [read_slice_header(p) for p in paths]
    unreadable = [p.name for p, h in zip(paths, headers) if h is None]
    if unreadable:
        raise InputError(f"{', '.join(unreadable[:SHOWN])} could not be read as DICOM images.")
    folder = paths[0].parent
    grouped: Dict[str, List[SliceHeader]] = {}
    for header in headers:
        if header is not None:  # always: unreadable files were refused above
            grouped.setdefault(header.series_uid, []).append(header)
    return _checked(folder, _choose(folder, grouped, None), started)


def _checked(folder: Path, headers: List[SliceHeader], started: float) -> DicomSeries:
    _check_uniform(folder, headers)
    orientation = np.asarray(headers[0].orientation)
    row, column = orientation[:3], orientation[3:]
    normal = np.cross(row, column)
    heights = np.asarray([np.asarray(h.position) @ normal for h in headers])
    order = np.argsort(heights, kind="stable")
    ordered = [headers[i] for i in order]
    row_mm, column_mm = ordered[0].pixel_spacing
    step = _check_stack(folder, ordered, heights[order], normal, min(row_mm, column_mm))
    geometry = Geometry(
        size=(ordered[0].columns, ordered[0].rows, len(ordered)),
        spacing=(column_mm, row_mm, step),
        origin=ordered[0].position,
        direction=tuple(np.column_stack([row, column, normal]).ravel()),
    )
    series = DicomSeries(
        folder=folder, series_uid=ordered[0].series_uid, study_uid=ordered[0].study_uid,
        frame_of_reference_uid=ordered[0].frame_of_reference_uid, description=ordered[0].description,
        files=[h.path for h in ordered], sop_instance_uids=[h.sop_instance_uid for h in ordered],
        geometry=geometry, check_seconds=0.0,
    )
    if series.missing_uids:
        series.warnings.append(f"{folder}: the files carry no {', '.join(series.missing_uids)} (anonymised?); "
                               "the CT can be read, but DICOM results cannot reference it.")
    series.check_seconds = time.perf_counter() - started
    return series


def _unreadable_slice(series: DicomSeries, error: RuntimeError) -> InputError:
    """The series reader failed: name the slice at fault (each read alone), not the folder."""
    expected = series.geometry.size[0] * series.geometry.size[1] * 2  # 16-bit CT: the usual minimum
    for path in series.files:
        reader = sitk.ImageFileReader()
        reader.SetImageIO("GDCMImageIO")
        reader.SetFileName(str(path))
        try:
            reader.Execute()
        except RuntimeError as single:
            last = str(single).strip().splitlines()[-1] if str(single).strip() else "unknown error"
            size = path.stat().st_size
            short = f" (the file is {size} bytes, less than its pixel data alone needs)" if size < expected else ""
            return InputError(f"{path}: the pixel data of this slice cannot be read ({last}){short}. The file is "
                              "probably cut short or corrupted; export the series again from the archive.")
    last = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown error"
    return _refuse(series.folder, f"its slices could not be read together ({last}).")


def read_series(series: DicomSeries) -> sitk.Image:
    """The voxels of a checked series (HU after each slice's rescale) on the grid its headers state."""
    reader = sitk.ImageSeriesReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileNames([str(p) for p in series.files])
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise _unreadable_slice(series, error) from None
    if image.GetDimension() != 3 or tuple(image.GetSize()) != series.geometry.size:
        raise _refuse(series.folder, f"the pixel data reads as {image.GetSize()}, not the "
                                     f"{series.geometry.size} the headers state.")
    return series.geometry.apply_to(image)
