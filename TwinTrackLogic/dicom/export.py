"""The calibrated map and its agreement masks as DICOM objects that reference the source CT.

- **Parametric Map** (float32, native): the calibrated probability, quantity "Fractional
  probabilistic segmentation" (DCM 110854), unit UCUM "1", value range 0..1, Frame Anatomy
  (Pancreas). Frames run from the lowest slice up (smallest position along row x column): both
  Slicer's importer (dcmqi ``paramap2itkimage``) and OHIF's (``@cornerstonejs/adapters``
  ``ParametricMap``) put frame i at slice i from the lowest position and ignore each frame's
  position, so highdicom's top-down order would load upside down. By default (extent
  ``"series"``) the map has one frame per CT slice, because OHIF (3.13) reads nothing else: a map
  with fewer frames than the series fails there with "Invalid typed array length". Extent
  ``"slab"`` keeps only the contiguous slices where p > 0 (smaller; Slicer reads it, OHIF does not).
- **Segmentation** (BINARY, native: Slicer's importer reads no JPEG 2000 SEG, and highdicom
  writes BINARY only native or JPEG 2000): one segment per agreement level, p >= level, coded
  Morphologically Abnormal Structure / Neoplasm in the Pancreas. Not FRACTIONAL: Slicer and
  OHIF cannot display a fractional SEG, and 8 bits would round the calibrated floor to 0.
- Both name the algorithm: TwinTrack, its version, the model bundle and the calibrator.
"""

from __future__ import annotations

import dataclasses
import io
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .. import __version__
from ..errors import InputError
from ..io import Geometry, StagedOutputs, check_geometry
from ..io.dicom_series import DicomSeries, check_files
from ..review.colormaps import DEFAULT_COLOR_MAP, map_colors
from ..review.levels import DEFAULT_CONTOUR_LEVELS, check_level
from . import require
from .uids import apply_replacements, check_dataset_uids, check_series_uids, replacement_note

DEFAULT_LEVELS = DEFAULT_CONTOUR_LEVELS  # the SEG's segments: the contours the panel draws
PM_NAME = "probability_map.dcm"
SEG_NAME = "agreement_segmentation.dcm"
PM_SERIES_NUMBER = 901
SEG_SERIES_NUMBER = 902
PM_EXTENTS = ("series", "slab")  # one frame per CT slice (every viewer) | the slices where p > 0 (Slicer)
LO_MAX = 64  # characters in a DICOM Long String


@dataclass(frozen=True)
class Algorithm:
    """What made the map, as both objects state it."""

    bundle: str  # model bundle id, or what is known of the map's source
    calibrator: str  # calibrator description (method, raters, sha256 prefix), or "none"
    version: str = __version__
    note: str = ""  # what else the objects must say of how they were made (replaced UIDs)

    @classmethod
    def from_provenance(cls, provenance: Optional[Dict[str, Any]]) -> "Algorithm":
        """From a run's provenance record (None: nothing is known of the map's source)."""
        if not isinstance(provenance, dict):
            return cls(bundle="unknown bundle", calibrator="unknown (no provenance)")
        bundle = provenance.get("bundle")
        bundle_id = bundle.get("id") if isinstance(bundle, dict) else None
        calibrator = provenance.get("calibrator")
        if not isinstance(calibrator, dict):
            described = "none (raw ensemble probability)"
        else:
            parts = [str(calibrator.get("method") or "calibrator")]
            if calibrator.get("raters"):
                parts.append(f"{calibrator['raters']} raters")
            if calibrator.get("sha256"):
                parts.append(f"sha256:{str(calibrator['sha256'])[:12]}")
            described = " ".join(parts)
        return cls(bundle=str(bundle_id or "unknown bundle"), calibrator=described)

    def parameters(self) -> Dict[str, str]:
        return {"bundle": self.bundle[:LO_MAX], "calibrator": self.calibrator[:LO_MAX]}

    def description(self) -> str:
        return f"TwinTrack {self.version}, bundle {self.bundle}, calibrator {self.calibrator}{self.note}"


@dataclass
class Exported:
    """The files written and what they cost."""

    parametric_map: Path
    segmentation: Path
    seconds: Dict[str, float] = field(default_factory=dict)
    frames: Dict[str, int] = field(default_factory=dict)
    datasets: List[Any] = field(default_factory=list)  # the pydicom datasets, e.g. to send to a PACS
    report: Optional[Path] = None  # the involvement Structured Report (dicom/report.py), with a read-out

    @property
    def paths(self) -> List[Path]:
        return [self.parametric_map, self.segmentation] + ([self.report] if self.report is not None else [])


def level_label(level: float) -> str:
    return f"≥ {level * 100:g} % expected annotator agreement"


def _level_colour(level: float):
    """The segment's colour: the module's agreement colour map at that level."""
    import highdicom as hd

    rgb = map_colors(DEFAULT_COLOR_MAP)[int(round(level * 255))]
    return hd.color.CIELabColor.from_rgb(*(float(c) * 255.0 for c in rgb))


def check_probability(probability: np.ndarray, series: DicomSeries) -> np.ndarray:
    """The map as float32 on the series' grid, every value in the declared range 0..1."""
    probability = np.asarray(probability, dtype=np.float32)
    if probability.shape != series.geometry.shape:
        raise InputError(f"The probability map has shape {probability.shape} (z, y, x), not the CT series' "
                         f"{series.geometry.shape}. It must lie on the CT's grid.")
    outside = ~((probability >= 0.0) & (probability <= 1.0))  # NaN counts as outside
    if outside.any():
        first = tuple(int(i) for i in np.argwhere(outside)[0])
        raise InputError(f"The probability map holds {int(outside.sum())} value(s) outside 0..1 (or NaN), the "
                         f"first at voxel (z, y, x) = {first}; the DICOM objects declare 0..1, so nothing was "
                         "written. Pass a probability map, not logits or percentages.")
    return probability


def check_references(series: DicomSeries) -> None:
    """Refuse a series the objects could not reference (an anonymiser blanked its UIDs)."""
    if series.missing_uids:
        raise InputError(
            f"{series.folder}: the CT files carry no {', '.join(series.missing_uids)}, so DICOM results "
            "could not reference the study and series they belong to and a PACS would file them "
            "elsewhere. TwinTrack does not invent these UIDs; export the CT again from the archive "
            "with its UIDs (the probability can still be written as NIfTI with --out).")


def _source_datasets(series: DicomSeries):
    import pydicom

    return [pydicom.dcmread(path, stop_before_pixels=True) for path in series.files]


def _codes():
    from pydicom.sr.codedict import codes

    return codes


def _algorithm_sequence(algorithm: Algorithm, level: Optional[float] = None):
    import highdicom as hd

    parameters = algorithm.parameters()
    if level is not None:
        parameters["agreement level"] = f"p >= {level:g}"
    return hd.AlgorithmIdentificationSequence(
        name="TwinTrack", family=_codes().cid7162.ArtificialIntelligence, version=algorithm.version,
        source=algorithm.bundle[:LO_MAX], parameters=parameters)


def _equipment(algorithm: Algorithm):
    import highdicom as hd

    return [hd.ContributingEquipment(
        manufacturer="TwinTrack", purpose_of_reference=_codes().DCM.ProcessingEquipment,
        manufacturer_model_name=algorithm.bundle[:LO_MAX], software_versions=algorithm.version,
        contribution_description=algorithm.description()[:1024])]


def _frames(probability: np.ndarray, extent: str) -> slice:
    """The CT slices the map gets frames for: all of them, or the contiguous slab where p > 0
    (all slices when the map is empty)."""
    if extent not in PM_EXTENTS:
        raise InputError(f"The Parametric Map's extent must be one of {', '.join(PM_EXTENTS)}, not {extent!r}.")
    if extent == "series":
        return slice(0, len(probability))
    slices = np.flatnonzero(probability.reshape(len(probability), -1).max(axis=1) > 0)
    if not len(slices):
        return slice(0, len(probability))
    return slice(int(slices[0]), int(slices[-1]) + 1)


def _frames_ascending(pm) -> None:
    """Reorder a Parametric Map's frames from the lowest slice up, in place (see the module notes)."""
    shared = pm.SharedFunctionalGroupsSequence[0]
    orientation = np.asarray(shared.PlaneOrientationSequence[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    per_frame = list(pm.PerFrameFunctionalGroupsSequence)
    heights = [float(np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, dtype=float) @ normal)
               for item in per_frame]
    order = np.argsort(heights, kind="stable")
    if np.array_equal(order, np.arange(len(order))):
        return
    frames = np.frombuffer(pm.FloatPixelData, dtype="<f4").reshape(len(per_frame), -1)
    pm.FloatPixelData = frames[order].tobytes()
    pm.PerFrameFunctionalGroupsSequence = [per_frame[i] for i in order]


def parametric_map(series: DicomSeries, probability: np.ndarray, algorithm: Algorithm, sources=None,
                   extent: str = "series"):
    """The Parametric Map dataset of the calibrated probability (z, y, x on the series' grid), with
    a frame for every CT slice (``extent="series"``) or for the slab where p > 0 (``"slab"``)."""
    require()
    import highdicom as hd
    from pydicom.dataset import Dataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    check_references(series)
    probability = check_probability(probability, series)
    sources = sources or _source_datasets(series)
    codes = _codes()
    covered = _frames(probability, extent)
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="TT_MHR", lut_explanation="Expected fraction of expert annotators labelling tumour",
        unit=codes.UCUM.NoUnits, value_range=(0.0, 1.0), slope=1, intercept=0,
        quantity_definition=codes.DCM.FractionalProbabilisticSegmentation)
    pm = hd.pm.ParametricMap(
        source_images=sources[covered], pixel_array=np.ascontiguousarray(probability[covered]),
        series_instance_uid=generate_uid(prefix=None), series_number=PM_SERIES_NUMBER,
        sop_instance_uid=generate_uid(prefix=None), instance_number=1, manufacturer="TwinTrack",
        manufacturer_model_name=algorithm.bundle[:LO_MAX], software_versions=algorithm.version,
        device_serial_number=algorithm.version, contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping], derived_pixel_contrast="NONE",
        voi_lut_transformations=[hd.VOILUTTransformation(window_center=0.5, window_width=1.0)],
        content_label="TT_PROBABILITY", content_description="Calibrated tumour probability (MHR)",
        transfer_syntax_uid=ExplicitVRLittleEndian, contributing_equipment=_equipment(algorithm))
    anatomy = Dataset()
    anatomy.AnatomicRegionSequence = [hd.sr.CodedConcept.from_code(codes.SCT.Pancreas)]
    anatomy.FrameLaterality = "U"
    pm.SharedFunctionalGroupsSequence[0].FrameAnatomySequence = [anatomy]
    pm.ContentCreatorName = ""  # type 2: present, empty (no person made it)
    pm.SeriesDescription = "TwinTrack calibrated tumour probability"
    _frames_ascending(pm)
    return pm


def segmentation(series: DicomSeries, probability: np.ndarray, algorithm: Algorithm,
                 levels: Sequence[float] = DEFAULT_LEVELS, sources=None):
    """The BINARY Segmentation dataset: one segment per agreement level, p >= level."""
    require()
    import highdicom as hd
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    check_references(series)
    probability = check_probability(probability, series)
    levels = [check_level(level, "an agreement level") for level in levels]
    if not levels:
        raise InputError("Give at least one agreement level for the segmentation.")
    sources = sources or _source_datasets(series)
    codes = _codes()
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number, segment_label=level_label(level),
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Neoplasm, anatomic_regions=[codes.SCT.Pancreas],
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=_algorithm_sequence(algorithm, level),
            tracking_uid=generate_uid(prefix=None), tracking_id=f"TwinTrack agreement {level * 100:g} %",
            display_color=_level_colour(level))
        for number, level in enumerate(levels, start=1)]
    masks = np.stack([probability >= np.float32(level) for level in levels], axis=-1).astype(np.uint8)
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=masks, segmentation_type="BINARY",
        segment_descriptions=descriptions, series_instance_uid=generate_uid(prefix=None),
        series_number=SEG_SERIES_NUMBER, sop_instance_uid=generate_uid(prefix=None), instance_number=1,
        manufacturer="TwinTrack", manufacturer_model_name=algorithm.bundle[:LO_MAX],
        software_versions=algorithm.version, device_serial_number=algorithm.version,
        content_label="TT_AGREEMENT", content_description="Tumour at expected annotator agreement levels",
        transfer_syntax_uid=ExplicitVRLittleEndian, contributing_equipment=_equipment(algorithm))
    seg.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: the segment labels say "≥"
    seg.ContentCreatorName = ""
    seg.SeriesDescription = "TwinTrack tumour at annotator agreement levels"
    return seg


def _encoded(dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def export_results(series: DicomSeries, probability: np.ndarray, out_dir, *, provenance=None,
                   levels: Sequence[float] = DEFAULT_LEVELS, outputs: Optional[StagedOutputs] = None,
                   parametric_map_extent: str = "series", replace_invalid_uids: bool = False,
                   involvement: Optional[Dict[str, Any]] = None,
                   involvement_source: str = "the involvement read-out") -> Exported:
    """Write the Parametric Map and the SEG of ``probability`` for ``series`` into ``out_dir``, and
    with ``involvement`` (the read-out file's content) the Structured Report (:mod:`.report`).

    The files appear together or none does (staged and renamed, like every TwinTrack output);
    pass ``outputs`` to stage them with a caller's other outputs. Every UID is checked
    (:mod:`.uids`): a CT's invalid UID is refused, or with ``replace_invalid_uids`` replaced by a
    new one that the objects record.
    """
    require()
    check_references(series)
    replaced = check_series_uids(series, replace_invalid_uids)
    probability = check_probability(probability, series)
    algorithm = dataclasses.replace(Algorithm.from_provenance(provenance), note=replacement_note(replaced))
    out_dir = Path(out_dir)
    seconds: Dict[str, float] = {}
    started = time.perf_counter()
    sources = _source_datasets(series)
    apply_replacements(sources, series.files, replaced)
    seconds["read_headers"] = time.perf_counter() - started
    started = time.perf_counter()
    pm = parametric_map(series, probability, algorithm, sources, parametric_map_extent)
    pm_bytes = _encoded(pm)
    seconds["parametric_map"] = time.perf_counter() - started
    started = time.perf_counter()
    seg = segmentation(series, probability, algorithm, levels, sources)
    seg_bytes = _encoded(seg)
    seconds["segmentation"] = time.perf_counter() - started
    check_dataset_uids(pm, "Parametric Map")
    check_dataset_uids(seg, "Segmentation")
    datasets, report_bytes = [pm, seg], None
    if involvement is not None:
        from .report import SR_NAME, measurement_report

        started = time.perf_counter()
        datasets.append(measurement_report(series, probability, involvement, algorithm, sources, [pm, seg],
                                           involvement_source))
        check_dataset_uids(datasets[-1], "Structured Report")
        report_bytes = _encoded(datasets[-1])
        seconds["report"] = time.perf_counter() - started
    with (StagedOutputs() if outputs is None else nullcontext(outputs)) as staged:
        pm_path = staged.data(out_dir / PM_NAME, pm_bytes)
        seg_path = staged.data(out_dir / SEG_NAME, seg_bytes)
        report_path = staged.data(out_dir / SR_NAME, report_bytes) if report_bytes is not None else None
    return Exported(pm_path, seg_path, seconds,
                    {"parametric_map": int(pm.NumberOfFrames), "segmentation": int(seg.NumberOfFrames)}, datasets,
                    report_path)


def on_series_grid(probability: np.ndarray, geometry: Geometry, series: DicomSeries) -> np.ndarray:
    """``probability`` on ``geometry`` as an array on the series' grid.

    The same physical grid with its slices numbered the other way (a viewer that stacks a
    series top-down) is accepted and reversed; any other grid is refused.
    """
    if not series.geometry.differences(geometry):
        return probability
    size, spacing = geometry.size, geometry.spacing
    direction = geometry.direction_matrix
    top = np.asarray(geometry.origin) + (size[2] - 1) * spacing[2] * direction[:, 2]
    flipped = Geometry(size, spacing, tuple(top), tuple((direction * [1, 1, -1]).ravel()))
    if not series.geometry.differences(flipped):
        return probability[::-1]
    check_geometry(series.geometry, geometry, "the probability map", "of the DICOM series")
    return probability


def export_for_files(files: Sequence[Path], probability: np.ndarray, geometry: Geometry, out_dir, *,
                     provenance=None, levels: Sequence[float] = DEFAULT_LEVELS,
                     involvement: Optional[Dict[str, Any]] = None) -> Exported:
    """:func:`export_results` for a CT given as its files (e.g. from Slicer's DICOM database) and a
    map with its own geometry (e.g. a volume node's): what an "Export DICOM" button calls."""
    series = check_files(files)
    grid = on_series_grid(np.asarray(probability), geometry, series)
    if involvement is not None and series.geometry.differences(geometry):  # the map's slices were renumbered
        from .report import slices_reversed

        involvement = slices_reversed(involvement, len(grid))
    return export_results(series, grid, out_dir, provenance=provenance, levels=levels, involvement=involvement)
