"""The vascular-involvement read-out and the expected tumour volume as a DICOM Structured Report.

A Comprehensive 3D SR holding a TID 1500 Measurement Report (highdicom), written next to the
Parametric Map and the SEG (:mod:`.export`) and referencing the CT series (its evidence lists every
slice, its Image Library the slices the measurements name) and both objects. One measurement group (TID 1501) per vessel of the read-out
(docs/involvement.md), and one for the tumour:

- per vessel and agreement level: the contact angle (UCUM ``deg``) and the NCCN-style category
  (no contact / abutment / encasement); the contact share and the encasement share as fractions
  0..1 (UCUM ``1``; with a calibrator fitted to K raters, k/K: "k of K experts"). Each angle with
  contact is inferred from a point on the CT slice of maximum contact, given twice: in image
  coordinates on that slice's CT instance (SCOORD) and in patient coordinates in the CT's Frame of
  Reference (SCOORD3D); the angle also names that CT instance;
- the tumour: the expected volume (sum of the calibrated map, mL; the mean of the annotators'
  volumes when the map is calibrated), the volumes at >= 90 % and >= 10 % agreement (the interval
  the review panel reads out), K, and whether the map is calibrated; it references the
  Parametric Map and the SEG instances it summarises.

Where DICOM has a code (SCT: volume, mean, the vessels, the pancreas, neoplasm; UCUM: units) it
is used; TwinTrack's own quantities (an angle at an agreement level, the shares, the categories)
are in the private coding scheme ``99TWINTRACK`` (docs/howto-dicom.md lists every code).

Why a point on every group, and why twice: OHIF's (3.13) SR loader reads every measurement group's
first SCOORD/SCOORD3D and would fail on a group without one (read in its source), and on a stack of
CT images it draws and jumps to a point given as SCOORD, not as SCOORD3D alone (run in OHIF;
docs/howto-dicom.md). So a vessel without contact at any level, and the tumour, carry the tumour's
centre: the in-plane centre of the calibrated map on the slice where it sums highest. The point
of a contact is the centre of the tumour drawn at that level on the slice of maximum contact: the
read-out file names the slice, not where in it the vessel is.

Research and review support, not a medical device: the report says so in its series
description and its equipment description.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError
from ..involvement import FORMAT, VERSION
from ..io.dicom_series import DicomSeries
from ..review.agreement import AgreementCurve
from ..vessels import VESSEL_LABELS
from . import require

SR_NAME = "involvement_report.dcm"
SR_SERIES_NUMBER = 903
PRIVATE_SCHEME = "99TWINTRACK"
PRIVATE_SCHEME_NAME = "TwinTrack vascular involvement read-out (docs/howto-dicom.md)"
CATEGORIES = {"no contact": ("TT-NOCONTACT", "No contact"),
              "abutment": ("TT-ABUTMENT", "Abutment (<= 180 deg)"),
              "encasement": ("TT-ENCASEMENT", "Encasement (> 180 deg)")}
INTERVAL_LEVELS = (0.9, 0.1)  # the agreement interval of the expected volume, narrow end first
RESEARCH_NOTE = "Research and review support, not a medical device, not for diagnosis on its own."
VOLUME_DECIMALS = 3  # mL: a microlitre, far below a voxel


def _private(value: str, meaning: str):
    from pydicom.sr.coding import Code

    return Code(value, PRIVATE_SCHEME, meaning)


def _ucum(value: str, meaning: str):
    from pydicom.sr.coding import Code

    return Code(value, "UCUM", meaning)


def _percent(level: float) -> str:
    return f"{100.0 * level:.4g}"


def angle_code(level: float):
    """The concept of the contact angle at ``level`` (0.2 -> TT-ANGLE-20)."""
    return _private(f"TT-ANGLE-{_percent(level)}", f"Contact angle at >= {_percent(level)} % agreement")


def category_code(level: float):
    return _private(f"TT-CAT-{_percent(level)}", f"Involvement category at >= {_percent(level)} % agreement")


def volume_code(level: float):
    return _private(f"TT-VOL-{_percent(level)}", f"Tumour volume at >= {_percent(level)} % agreement")


CONTACT_SHARE = ("TT-CONTACTSHARE", "Share of annotators drawing contact")
ENCASEMENT_SHARE = ("TT-ENCASESHARE", "Share of annotators drawing encasement")
RATERS = ("TT-RATERS", "Annotators in the calibration panel")
SCALE = ("TT-SCALE", "Probability scale")
CALIBRATED = ("TT-CALIBRATED", "Calibrated to expert annotator agreement")
RAW = ("TT-RAW", "Raw ensemble probability, not calibrated")
CONTACT_FINDING = ("TT-CONTACT", "Tumour contact with vessel")


def vessel_codes() -> Dict[str, Any]:
    """SNOMED CT codes of the CURVAS-PDACVI vessels (the aorta label is the abdominal aorta)."""
    from pydicom.sr.codedict import codes

    return {"portal vein": codes.SCT.PortalVein, "SMV": codes.SCT.SuperiorMesentericVein,
            "aorta": codes.SCT.AbdominalAorta, "celiac trunk": codes.SCT.CeliacAxis,
            "SMA": codes.SCT.SuperiorMesentericArtery}


# --- the read-out file, checked -----------------------------------------------------------


def check_readout(readout: Any, source: str, slices: int) -> Dict[str, Any]:
    """The involvement read-out (the content of ``OUT.involvement.json``), refused naming ``source``
    unless it is one this version wrote for a CT of ``slices`` axial slices."""
    def refuse(problem: str) -> InputError:
        return InputError(f"{source} is not a vascular-involvement read-out TwinTrack can report: {problem}. "
                          "Give the OUT.involvement.json that `twintrack predict` wrote next to this map, or "
                          "recompute it with --vessels FILE.")

    if not isinstance(readout, dict) or readout.get("format") != FORMAT:
        raise refuse(f'its "format" is not "{FORMAT}"')
    if readout.get("version") != VERSION:
        raise refuse(f'it has version {readout.get("version")!r}, this TwinTrack reads version {VERSION}')
    levels = readout.get("levels")
    if not isinstance(levels, list) or not levels or not all(_is_number(v) and 0 < v <= 1 for v in levels):
        raise refuse('"levels" must be agreement levels in (0, 1]')
    raters = readout.get("raters")
    if not isinstance(raters, int) or isinstance(raters, bool) or raters < 0:
        raise refuse('"raters" must be a whole number >= 0')
    vessels = readout.get("vascular_involvement")
    if not isinstance(vessels, dict):
        raise refuse('"vascular_involvement" is missing')
    for name, entry in vessels.items():
        if name not in VESSEL_LABELS:
            raise refuse(f"it names a vessel {name!r} (known: {', '.join(VESSEL_LABELS)})")
        _check_vessel(entry, name, levels, slices, refuse)
    return readout


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


def _check_vessel(entry: Any, name: str, levels: List[float], slices: int, refuse) -> None:
    if not isinstance(entry, dict):
        raise refuse(f"the entry of the {name} is not an object")
    if entry.get("levels", levels) != levels:
        raise refuse(f"the {name}'s levels differ from the read-out's")
    for key in ("contact_deg", "max_slice", "category"):
        if not isinstance(entry.get(key), list) or len(entry[key]) != len(levels):
            raise refuse(f'the {name}\'s "{key}" must list one value per level ({len(levels)})')
    if not all(_is_number(angle) and 0 <= angle <= 360 for angle in entry["contact_deg"]):
        raise refuse(f"the {name}'s contact angles must be degrees in 0..360")
    if not all(category in CATEGORIES for category in entry["category"]):
        raise refuse(f"the {name}'s categories must be one of {', '.join(CATEGORIES)}")
    for angle, where in zip(entry["contact_deg"], entry["max_slice"]):
        placed = isinstance(where, int) and not isinstance(where, bool) and 0 <= where < slices
        if (angle > 0) != placed or (angle == 0 and where is not None):
            raise refuse(f"the {name}'s slice of maximum contact {where!r} does not fit its angle {angle} on a CT "
                         f"of {slices} slices")
    for key in ("contact_share", "encasement_share"):
        if not _is_number(entry.get(key)) or not 0 <= entry[key] <= 1:
            raise refuse(f'the {name}\'s "{key}" must be a share in 0..1')


def slices_reversed(readout: Any, slices: int) -> Any:
    """A copy of ``readout`` whose slice numbers count from the other end of a ``slices``-slice CT (its map
    was stacked top-down); anything that is not a read-out is returned as it is, for the check to refuse."""
    if not isinstance(readout, dict) or not isinstance(readout.get("vascular_involvement"), dict):
        return readout
    vessels = {}
    for name, entry in readout["vascular_involvement"].items():
        if isinstance(entry, dict) and isinstance(entry.get("max_slice"), list):
            entry = {**entry, "max_slice": [slices - 1 - where if isinstance(where, int) else where
                                            for where in entry["max_slice"]]}
        vessels[name] = entry
    return {**readout, "vascular_involvement": vessels}


# --- where the points go -----------------------------------------------------------------


Spot = Tuple[int, float, float]  # a point as a voxel index (z, y, x) of the CT grid; z whole: on a slice


def contact_spot(probability: np.ndarray, level: float, z: int, vessel: str) -> Spot:
    """The centre of the tumour at ``level`` on slice ``z`` (where the read-out found the largest contact)."""
    ys, xs = np.nonzero(probability[z] >= np.float32(level))
    if not len(ys):
        raise InputError(f"The involvement read-out puts the {vessel}'s largest contact at >= {_percent(level)} % "
                         f"agreement on slice {z}, but the probability map has no tumour at that level there: the "
                         "read-out was made from another map. Recompute it with --vessels FILE.")
    return z, float(ys.mean()), float(xs.mean())


def tumour_centre(probability: np.ndarray) -> Optional[Spot]:
    """The in-plane centre of the map on the slice where it sums highest; None when the map is empty."""
    per_slice = probability.reshape(len(probability), -1).sum(axis=1, dtype=np.float64)
    if not per_slice.any():
        return None
    z = int(np.argmax(per_slice))
    weights = probability[z].astype(np.float64)
    ys, xs = np.indices(weights.shape)
    total = weights.sum()
    return z, float((ys * weights).sum() / total), float((xs * weights).sum() / total)


# --- the report ----------------------------------------------------------------------------


def _points(series: DicomSeries, sources, spot: Spot) -> list:
    """The spot twice: in image coordinates on its CT slice (SCOORD: what OHIF places and jumps to on a
    stack of images) and in patient coordinates in the CT's Frame of Reference (SCOORD3D)."""
    import highdicom as hd

    z, y, x = spot
    on_slice = hd.sr.SourceImageForRegion(referenced_sop_class_uid=sources[z].SOPClassUID,
                                          referenced_sop_instance_uid=series.sop_instance_uids[z])
    patient = (series.geometry.index_to_physical_matrix() @ np.array([x, y, float(z), 1.0]))[:3]
    return [hd.sr.CoordinatesForMeasurement(graphic_type=hd.sr.GraphicTypeValues.POINT,
                                            # DICOM image coordinates: a pixel's centre is at +0.5
                                            graphic_data=np.array([[x + 0.5, y + 0.5]]), source_image=on_slice),
            hd.sr.CoordinatesForMeasurement3D(graphic_type=hd.sr.GraphicTypeValues3D.POINT,
                                              graphic_data=np.array([patient]),
                                              frame_of_reference_uid=series.frame_of_reference_uid)]


def _slice_image(series: DicomSeries, sources, z: int):
    import highdicom as hd

    return hd.sr.SourceImageForMeasurement(referenced_sop_class_uid=sources[z].SOPClassUID,
                                           referenced_sop_instance_uid=series.sop_instance_uids[z])


def _algorithm(algorithm):
    import highdicom as hd

    parameters = [f"{key}: {value}" for key, value in algorithm.parameters().items()]
    return hd.sr.AlgorithmIdentification(name="TwinTrack", version=algorithm.version, parameters=parameters)


def _tracking(identifier: str):
    import highdicom as hd
    from pydicom.uid import generate_uid

    return hd.sr.TrackingIdentifier(uid=generate_uid(prefix=None), identifier=identifier)


def _fraction(code: Tuple[str, str], value: float):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    return hd.sr.Measurement(name=_private(*code), value=float(value), unit=codes.UCUM.NoUnits)


def _vessel_group(name: str, entry: Dict[str, Any], levels: Sequence[float], series, sources, probability,
                  algorithm, centre):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    measurements, evaluations = [], []
    for level, angle, where, category in zip(levels, entry["contact_deg"], entry["max_slice"], entry["category"]):
        located = where is not None
        measurements.append(hd.sr.Measurement(
            name=angle_code(level), value=float(angle), unit=codes.UCUM.Degree,
            referenced_images=[_slice_image(series, sources, where)] if located else None,
            referenced_coordinates=_points(series, sources, contact_spot(probability, level, where, name))
            if located else None))
        evaluations.append(hd.sr.QualitativeEvaluation(name=category_code(level),
                                                       value=_private(*CATEGORIES[category])))
    if centre is not None and not any(where is not None for where in entry["max_slice"]):
        # No contact at any level: OHIF needs a point; the lowest level's 0 deg was read off this tumour.
        measurements[0] = hd.sr.Measurement(
            name=angle_code(levels[0]), value=float(entry["contact_deg"][0]), unit=codes.UCUM.Degree,
            referenced_coordinates=_points(series, sources, centre))
    measurements.append(_fraction(CONTACT_SHARE, entry["contact_share"]))
    measurements.append(_fraction(ENCASEMENT_SHARE, entry["encasement_share"]))
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(f"TwinTrack involvement {name}"),
        finding_type=_private(*CONTACT_FINDING), finding_sites=[hd.sr.FindingSite(vessel_codes()[name])],
        algorithm_id=_algorithm(algorithm), measurements=measurements, qualitative_evaluations=evaluations)


def _tumour_group(readout, series, sources, probability, algorithm, centre, derived):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    curve = AgreementCurve(probability, series.geometry.voxel_volume_ml)
    millilitre = _ucum("mL", "milliliter")
    measurements = [hd.sr.Measurement(
        name=codes.SCT.Volume, value=round(curve.expected_volume_ml, VOLUME_DECIMALS), unit=millilitre,
        derivation=codes.SCT.Mean, referenced_coordinates=_points(series, sources, centre) if centre else None)]
    measurements += [hd.sr.Measurement(name=volume_code(level), value=round(curve.volume_ml(level), VOLUME_DECIMALS),
                                       unit=millilitre) for level in INTERVAL_LEVELS]
    if readout["raters"] > 0:
        measurements.append(hd.sr.Measurement(name=_private(*RATERS), value=readout["raters"],
                                              unit=_ucum("{annotators}", "annotators")))
    scale = CALIBRATED if readout.get("probability") == "calibrated" else RAW
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking("TwinTrack tumour"), finding_type=codes.SCT.Neoplasm,
        finding_sites=[hd.sr.FindingSite(codes.SCT.Pancreas)], algorithm_id=_algorithm(algorithm),
        measurements=measurements,
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(name=_private(*SCALE), value=_private(*scale))],
        source_images=[hd.sr.SourceImageForMeasurementGroup(referenced_sop_class_uid=item.SOPClassUID,
                                                            referenced_sop_instance_uid=item.SOPInstanceUID)
                       for item in derived])


def measurement_report(series: DicomSeries, probability: np.ndarray, readout: Dict[str, Any], algorithm,
                       sources, derived: Sequence[Any], source: str = "the involvement read-out"):
    """The Comprehensive 3D SR of ``readout`` (checked with :func:`check_readout`) and the expected
    volume of ``probability`` (float32 (z, y, x) on the series' grid, checked by the caller), for the
    CT headers ``sources`` (array order) and the ``derived`` objects it summarises (the Parametric
    Map and the SEG datasets)."""
    require()
    import highdicom as hd
    from pydicom.dataset import Dataset
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    from .export import LO_MAX, _equipment

    readout = check_readout(readout, source, len(probability))
    levels = [float(level) for level in readout["levels"]]
    centre = tumour_centre(probability)
    groups = [_tumour_group(readout, series, sources, probability, algorithm, centre, derived)]
    groups += [_vessel_group(name, readout["vascular_involvement"][name], levels, series, sources, probability,
                             algorithm, centre)
               for name in VESSEL_LABELS if name in readout["vascular_involvement"]]
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=generate_uid(prefix=None, entropy_srcs=["TwinTrack", algorithm.version, algorithm.bundle]),
        name="TwinTrack", manufacturer_name="TwinTrack", model_name=algorithm.bundle[:LO_MAX])
    context = hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=codes.DCM.Device, observer_identifying_attributes=device))
    # The Image Library lists the CT slices the measurements name (one entry per slice of the series
    # would cost seconds and say nothing more: the evidence lists the whole series).
    named = sorted({where for entry in readout["vascular_involvement"].values() for where in entry["max_slice"]
                    if where is not None})
    content = hd.sr.MeasurementReport(observation_context=context,
                                      procedure_reported=codes.cid100.CTUnspecifiedBodyRegion,
                                      imaging_measurements=groups, referenced_images=[sources[z] for z in named])
    equipment = _equipment(algorithm)
    equipment[0].ContributionDescription = f"{algorithm.description()}. {RESEARCH_NOTE}"[:1024]
    report = hd.sr.Comprehensive3DSR(
        evidence=[*sources, *derived], content=content[0], series_instance_uid=generate_uid(prefix=None),
        series_number=SR_SERIES_NUMBER, sop_instance_uid=generate_uid(prefix=None), instance_number=1,
        manufacturer="TwinTrack", is_complete=True, is_final=False, is_verified=False,
        series_description="TwinTrack vascular involvement (research)", contributing_equipment=equipment)
    scheme = Dataset()
    scheme.CodingSchemeDesignator = PRIVATE_SCHEME
    scheme.CodingSchemeName = PRIVATE_SCHEME_NAME
    scheme.CodingSchemeResponsibleOrganization = "TwinTrack"
    report.CodingSchemeIdentificationSequence = [scheme]
    report.SpecificCharacterSet = "ISO_IR 192"
    return report
