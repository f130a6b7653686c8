"""The vascular-involvement read-out as a DICOM Structured Report (TID 1500, dicom/report.py): valid
for dciodvfy, every number equal to the read-out file's and to the map's, the references to the CT,
the SEG and the map, each contact point on the CT slice the read-out names (checked against the CT
files' own headers), on identity, flipped and oblique CTs; written by export-dicom and predict, and
stored and read back through Orthanc."""

import json
from pathlib import Path

import numpy as np
import pytest

from dicom_helpers import dciodvfy_problems, phantom_ct
from TwinTrackCLI import main
from TwinTrackLogic.errors import InputError
from TwinTrackLogic.involvement import read_involvement
from TwinTrackLogic.io import write_image
from TwinTrackLogic.io.dicom_series import check_series
from TwinTrackLogic.io.outputs import file_record

pydicom = pytest.importorskip("pydicom")
hd = pytest.importorskip("highdicom")
from TwinTrackLogic.dicom.export import PM_NAME, SEG_NAME, export_results  # noqa: E402
from TwinTrackLogic.dicom.report import PRIVATE_SCHEME, SR_NAME  # noqa: E402

pytestmark = pytest.mark.dicom

PROVENANCE = {"bundle": {"id": "twintrack-demo-3"},
              "calibrator": {"method": "isotonic", "raters": 5, "sha256": "0123456789abcdef"}}
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
CATEGORY_CODES = {"no contact": "TT-NOCONTACT", "abutment": "TT-ABUTMENT", "encasement": "TT-ENCASEMENT"}
VESSEL_SCT = {"portal vein": "32764006", "SMV": "90771006", "aorta": "7832008", "celiac trunk": "57850000",
              "SMA": "42258001"}
# dicom3tools knows the registered coding schemes only: a private one, declared in the
# Coding Scheme Identification Sequence as PS3.3 C.12.1.1.4 asks, is "unrecognized" to it.
PRIVATE_SCHEME_WARNING = f"Warning - Unrecognized defined term <{PRIVATE_SCHEME}> for value 1 of attribute <Coding Scheme Designator>"


# --- reading the tree back, independently of the writer -------------------------------------


def children(item):
    return list(getattr(item, "ContentSequence", None) or [])


def concept(item):
    return item.ConceptNameCodeSequence[0].CodeValue


def groups(report):
    """Measurement groups by Tracking Identifier text."""
    (measurements,) = [item for item in children(report) if concept(item) == "126010"]  # Imaging Measurements
    found = {}
    for group in children(measurements):
        assert concept(group) == "125007"  # Measurement Group
        (tracking,) = [item for item in children(group) if concept(item) == "112039"]
        found[tracking.TextValue] = group
    return found


def numbers(group):
    """NUM items by concept code: (value, unit code, the item)."""
    return {concept(item): (float(item.MeasuredValueSequence[0].NumericValue),
                            item.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue, item)
            for item in children(group) if item.ValueType == "NUM"}


def coded(group):
    return {concept(item): item.ConceptCodeSequence[0].CodeValue for item in children(group)
            if item.ValueType == "CODE"}


def points(item):
    return [child for child in children(item) if child.ValueType == "SCOORD3D"]


def image_points(item):
    """(column, row, SOP instance of the image) of each SCOORD under ``item``."""
    return [(*child.GraphicData, children(child)[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
            for child in children(item) if child.ValueType == "SCOORD"]


def percent(level):
    return f"{100 * level:.4g}"


def ct_index(dataset, point):
    """(row, column, distance from the slice's plane in mm) of an LPS point, from the CT file's own header."""
    position = np.asarray(dataset.ImagePositionPatient, float)
    orientation = np.asarray(dataset.ImageOrientationPatient, float)
    row_cosine, column_cosine = orientation[:3], orientation[3:]
    offset = np.asarray(point, float) - position
    spacing = np.asarray(dataset.PixelSpacing, float)
    return (offset @ column_cosine / spacing[0], offset @ row_cosine / spacing[1],
            offset @ np.cross(row_cosine, column_cosine))


# --- one export per phantom orientation -----------------------------------------------------


@pytest.fixture(scope="module", params=[0, 1, 2], ids=["identity", "flipped", "oblique"])
def reported(request, tmp_path_factory):
    base = tmp_path_factory.mktemp(f"sr{request.param}")
    case, probability = phantom_ct(request.param, base / "ct")
    series = check_series(base / "ct")
    readout = json.loads(json.dumps(read_involvement(probability, case.vessels, raters=5).to_json()))
    result = export_results(series, probability, base / "out", provenance=PROVENANCE, involvement=readout)
    return probability, series, readout, result


def test_involvement_sr_validates_in_dciodvfy(reported):
    *_, result = reported
    assert result.report == result.paths[2] and result.report.name == SR_NAME
    problems = dciodvfy_problems(result.report)
    assert problems and set(problems) == {PRIVATE_SCHEME_WARNING}, sorted(set(problems))


def test_involvement_sr_numbers_equal_the_readout(reported):
    _, series, readout, result = reported
    report = pydicom.dcmread(result.report)
    assert report.SOPClassUID == COMPREHENSIVE_3D_SR and concept(report) == "126000"  # Imaging Measurement Report
    found = groups(report)
    vessels = readout["vascular_involvement"]
    assert set(found) == {"TwinTrack tumour"} | {f"TwinTrack involvement {name}" for name in vessels}
    assert any(angle > 0 for entry in vessels.values() for angle in entry["contact_deg"])  # the case has contact
    for name, entry in vessels.items():
        group = found[f"TwinTrack involvement {name}"]
        sites = [item for item in children(group) if concept(item) == "363698007"]  # Finding Site
        assert sites[0].ConceptCodeSequence[0].CodeValue == VESSEL_SCT[name]
        values, categories = numbers(group), coded(group)
        for level, angle, category in zip(readout["levels"], entry["contact_deg"], entry["category"]):
            assert values[f"TT-ANGLE-{percent(level)}"][:2] == (angle, "deg")
            assert categories[f"TT-CAT-{percent(level)}"] == CATEGORY_CODES[category]
        assert values["TT-CONTACTSHARE"][:2] == (entry["contact_share"], "1")
        assert values["TT-ENCASESHARE"][:2] == (entry["encasement_share"], "1")
    tumour = numbers(found["TwinTrack tumour"])
    assert tumour["TT-RATERS"][0] == readout["raters"] == 5
    assert coded(found["TwinTrack tumour"])["TT-SCALE"] == "TT-CALIBRATED"


def test_involvement_sr_volume_and_interval_equal_the_maps(reported):
    probability, series, _, result = reported
    values = numbers(groups(pydicom.dcmread(result.report))["TwinTrack tumour"])
    voxel_ml = float(np.prod(series.geometry.spacing)) / 1000.0
    p = probability.astype(np.float64)
    expected = {"118565006": p.sum() * voxel_ml,  # SCT Volume, derivation Mean
                "TT-VOL-90": np.count_nonzero(p >= 0.9) * voxel_ml, "TT-VOL-10": np.count_nonzero(p >= 0.1) * voxel_ml}
    for code, volume in expected.items():
        value, unit, _ = values[code]
        assert unit == "mL" and abs(value - volume) <= 0.0005 + 1e-9, (code, value, volume)
    assert expected["TT-VOL-90"] < expected["118565006"] < expected["TT-VOL-10"]
    derivation = [item for item in children(values["118565006"][2]) if concept(item) == "121401"]
    assert derivation[0].ConceptCodeSequence[0].CodeValue == "373098007"  # Mean


def test_involvement_sr_references_the_ct_the_seg_and_the_map(reported):
    _, series, _, result = reported
    report = pydicom.dcmread(result.report)
    seg, pm = pydicom.dcmread(result.segmentation), pydicom.dcmread(result.parametric_map)
    assert report.StudyInstanceUID == series.study_uid and report.PatientID == seg.PatientID
    (study,) = report.CurrentRequestedProcedureEvidenceSequence
    evidence = {item.SeriesInstanceUID: {ref.ReferencedSOPInstanceUID for ref in item.ReferencedSOPSequence}
                for item in study.ReferencedSeriesSequence}
    assert evidence[series.series_uid] == set(series.sop_instance_uids)
    assert evidence[seg.SeriesInstanceUID] == {seg.SOPInstanceUID}
    assert evidence[pm.SeriesInstanceUID] == {pm.SOPInstanceUID}
    sources = {item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
               for item in children(groups(report)["TwinTrack tumour"]) if item.ValueType == "IMAGE"}
    assert sources == {seg.SOPInstanceUID, pm.SOPInstanceUID}
    uids = [report.SOPInstanceUID, report.SeriesInstanceUID] + [
        item.UID for group in groups(report).values() for item in children(group) if item.ValueType == "UIDREF"]
    assert all(pydicom.uid.UID(uid).is_valid for uid in uids) and len(set(uids)) == len(uids)
    equipment = [item for item in report.ContributingEquipmentSequence if item.Manufacturer == "TwinTrack"
                 and item.PurposeOfReferenceCodeSequence[0].CodeValue == "109102"]  # Processing Equipment
    assert "isotonic 5 raters sha256:0123456789ab" in equipment[0].ContributionDescription
    assert "not a medical device" in equipment[0].ContributionDescription


def test_involvement_sr_contact_points_lie_on_the_ct_slice_of_maximum_contact(reported):
    probability, series, readout, result = reported
    found = groups(pydicom.dcmread(result.report))
    checked = 0
    for name, entry in readout["vascular_involvement"].items():
        values = numbers(found[f"TwinTrack involvement {name}"])
        for level, where in zip(readout["levels"], entry["max_slice"]):
            item = values[f"TT-ANGLE-{percent(level)}"][2]
            if where is None:
                continue
            ct = pydicom.dcmread(series.files[where], stop_before_pixels=True)
            (image,) = [child for child in children(item) if child.ValueType == "IMAGE"]
            assert image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == ct.SOPInstanceUID
            (point,) = points(item)
            assert point.GraphicType == "POINT" and point.ReferencedFrameOfReferenceUID == ct.FrameOfReferenceUID
            row, column, height = ct_index(ct, point.GraphicData)
            assert abs(height) < 1e-3, (name, level, height)
            ys, xs = np.nonzero(probability[where] >= np.float32(level))  # the tumour at that level there
            np.testing.assert_allclose((row, column), (ys.mean(), xs.mean()), atol=1e-3)
            # The same point in image coordinates on that slice (a pixel's centre is at +0.5).
            ((image_column, image_row, instance),) = image_points(item)
            assert instance == ct.SOPInstanceUID
            np.testing.assert_allclose((image_row, image_column), (row + 0.5, column + 0.5), atol=1e-3)
            checked += 1
    assert checked >= 3


def test_involvement_sr_gives_ohif_a_point_in_every_group(reported):
    """OHIF 3.13 reads the first SCOORD/SCOORD3D of every measurement group (and each group's tracking
    identifier and UID) and fails to load an SR where one has none, and places (and jumps to) a
    point on a stack of images from its SCOORD: a vessel without contact and the tumour carry the
    tumour's centre, on the slice where the map sums highest."""
    probability, series, readout, result = reported
    report = pydicom.dcmread(result.report)
    heaviest = int(np.argmax(probability.reshape(len(probability), -1).sum(axis=1)))
    centre_slice = pydicom.dcmread(series.files[heaviest], stop_before_pixels=True)
    for name, group in groups(report).items():
        located = [point for item in children(group) if item.ValueType == "NUM" for point in points(item)]
        on_images = [point for item in children(group) if item.ValueType == "NUM" for point in image_points(item)]
        assert located and len(on_images) == len(located), name
        for item in children(group):  # OHIF takes a measurement's first coordinates: those on the image
            kinds = [child.ValueType for child in children(item) if child.ValueType in ("SCOORD", "SCOORD3D")]
            assert kinds in ([], ["SCOORD", "SCOORD3D"]), kinds
        assert {item.ValueType for item in children(group)} >= {"UIDREF", "TEXT"}
        vessel = name.removeprefix("TwinTrack involvement ")
        if name == "TwinTrack tumour" or not any(readout["vascular_involvement"][vessel]["contact_deg"]):
            assert len(located) == 1 and abs(ct_index(centre_slice, located[0].GraphicData)[2]) < 1e-3, name


def test_involvement_sr_of_an_uncalibrated_map_says_so_and_has_no_panel(tmp_path):
    """Without a calibrator the read-out's levels are tenths of the raw probability and K is unknown."""
    case, probability = phantom_ct(0, tmp_path / "ct")
    series = check_series(tmp_path / "ct")
    readout = read_involvement(probability, case.vessels, raters=5, is_calibrated=False).to_json()
    result = export_results(series, probability, tmp_path / "out", involvement=readout)
    found = groups(pydicom.dcmread(result.report))
    tumour = found["TwinTrack tumour"]
    assert coded(tumour)["TT-SCALE"] == "TT-RAW" and "TT-RATERS" not in numbers(tumour)
    angles = {code for code in numbers(found["TwinTrack involvement SMV"]) if code.startswith("TT-ANGLE")}
    assert angles == {f"TT-ANGLE-{10 * k}" for k in range(1, 11)}
    assert readout_angles(readout)["SMV"] == {code: value for code, (value, _, _) in
                                              numbers(found["TwinTrack involvement SMV"]).items() if code in angles}


def test_involvement_sr_of_an_empty_map_validates_without_points(tmp_path):
    """No tumour at all: every angle 0, volumes 0, nowhere to point (OHIF cannot place such a report)."""
    case, probability = phantom_ct(0, tmp_path / "ct")
    series = check_series(tmp_path / "ct")
    empty = np.zeros_like(probability)
    readout = read_involvement(empty, case.vessels, raters=5).to_json()
    result = export_results(series, empty, tmp_path / "out", involvement=readout)
    assert set(dciodvfy_problems(result.report)) == {PRIVATE_SCHEME_WARNING}
    found = groups(pydicom.dcmread(result.report))
    assert numbers(found["TwinTrack tumour"])["118565006"][0] == 0.0
    assert not [point for group in found.values() for item in children(group) for point in points(item)]


def test_involvement_readout_of_another_map_or_malformed_is_refused_and_nothing_written(tmp_path):
    case, probability = phantom_ct(0, tmp_path / "ct")
    series = check_series(tmp_path / "ct")
    readout = read_involvement(probability, case.vessels, raters=5).to_json()
    touching = next(name for name, entry in readout["vascular_involvement"].items() if entry["max_slice"][0] is not None)
    elsewhere = json.loads(json.dumps(readout))
    elsewhere["vascular_involvement"][touching]["max_slice"][0] = 0  # the map has no tumour on the first slice
    with pytest.raises(InputError, match="made from another map"):
        export_results(series, probability, tmp_path / "out", involvement=elsewhere)
    for broken, problem in (({**readout, "format": "other"}, "format"), ({**readout, "version": 2}, "version"),
                            ({**readout, "vascular_involvement": {"IVC": {}}}, "IVC")):
        with pytest.raises(InputError, match=problem):
            export_results(series, probability, tmp_path / "out", involvement=broken, involvement_source="x.json")
    assert not (tmp_path / "out").exists()


def test_involvement_export_for_files_renumbers_a_readout_stacked_top_down(tmp_path):
    """What Slicer's Export DICOM calls with a map (and its read-out) on a grid stacked the other way."""
    from TwinTrackLogic.dicom.export import export_for_files
    from TwinTrackLogic.io import Geometry

    case, probability = phantom_ct(2, tmp_path / "ct")
    g = case.geometry
    direction = g.direction_matrix
    top = np.asarray(g.origin) + (g.size[2] - 1) * g.spacing[2] * direction[:, 2]
    top_down = Geometry(g.size, g.spacing, tuple(top), tuple((direction * [1, 1, -1]).ravel()))
    readout = read_involvement(probability[::-1], case.vessels[::-1], raters=5).to_json()
    result = export_for_files(sorted((tmp_path / "ct").iterdir()), probability[::-1], top_down, tmp_path / "out",
                              involvement=readout)
    series = check_series(tmp_path / "ct")
    sma = numbers(groups(pydicom.dcmread(result.report))["TwinTrack involvement SMA"])
    where = readout["vascular_involvement"]["SMA"]["max_slice"][0]
    (image,) = [c for c in children(sma[f"TT-ANGLE-{percent(readout['levels'][0])}"][2]) if c.ValueType == "IMAGE"]
    assert image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == series.sop_instance_uids[len(probability) - 1 - where]


# --- the command line -----------------------------------------------------------------------


def sr_angles(path: Path):
    found = groups(pydicom.dcmread(path))
    return {name.removeprefix("TwinTrack involvement "): {code: value for code, (value, _, _) in numbers(group).items()
                                                          if code.startswith("TT-ANGLE")}
            for name, group in found.items() if name != "TwinTrack tumour"}


def readout_angles(readout):
    return {name: {f"TT-ANGLE-{percent(level)}": angle for level, angle in zip(readout["levels"], entry["contact_deg"])}
            for name, entry in readout["vascular_involvement"].items()}


def test_export_dicom_writes_the_involvement_sr_from_the_readout_or_vessels_and_none_without(tmp_path, capsys):
    case, probability = phantom_ct(1, tmp_path / "ct")
    write_image(tmp_path / "prob.nii.gz", probability, case.geometry)
    write_image(tmp_path / "vessels.nii.gz", case.vessels, case.geometry)
    # A sidecar as predict writes it: it records the sha256 of the map it describes (export-dicom checks it).
    prob = str(tmp_path / "prob.nii.gz")
    (tmp_path / "prob.provenance.json").write_text(json.dumps(
        {**PROVENANCE, "outputs": {"probability": prob}, "output_files": {prob: file_record(prob)}}))
    common = ["export-dicom", "--image", str(tmp_path / "ct"), "--probability", str(tmp_path / "prob.nii.gz")]
    # Without a read-out: the two objects, no SR, said once.
    assert main([*common, "--out", str(tmp_path / "none")]) == 0
    out = capsys.readouterr().out
    assert out.count("no Structured Report") == 1 and "prob.involvement.json" in out
    assert sorted(p.name for p in (tmp_path / "none").iterdir()) == sorted([PM_NAME, SEG_NAME])
    # Recomputed from --vessels, with K from the provenance.
    assert main([*common, "--vessels", str(tmp_path / "vessels.nii.gz"), "--out", str(tmp_path / "recomputed")]) == 0
    assert "no Structured Report" not in capsys.readouterr().out
    expected = read_involvement(probability, case.vessels, raters=5).to_json()
    assert sr_angles(tmp_path / "recomputed" / SR_NAME) == readout_angles(expected)
    # From the read-out next to the map (here edited, so it cannot pass for the recomputed one).
    edited = json.loads(json.dumps(expected))
    touching = next(n for n, e in edited["vascular_involvement"].items() if e["contact_deg"][0] > 0)
    edited["vascular_involvement"][touching]["contact_deg"][0] = 123.45
    (tmp_path / "prob.involvement.json").write_text(json.dumps(edited))
    assert main([*common, "--out", str(tmp_path / "beside")]) == 0
    assert sr_angles(tmp_path / "beside" / SR_NAME) == readout_angles(edited)
    # A read-out that is not one is refused, naming the file; nothing is written.
    (tmp_path / "prob.involvement.json").write_text(json.dumps({"format": "something else"}))
    assert main([*common, "--out", str(tmp_path / "refused")]) == 2
    assert "prob.involvement.json is not a vascular-involvement read-out" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()


@pytest.mark.slow
def test_predict_dicom_out_with_vessels_writes_the_involvement_sr(tmp_path):
    case, _ = phantom_ct(0, tmp_path / "ct")
    write_image(tmp_path / "vessels.nii.gz", case.vessels, case.geometry)
    assert main(["predict", "--image", str(tmp_path / "ct"), "--dicom-out", str(tmp_path / "dicom"),
                 "--vessels", str(tmp_path / "vessels.nii.gz")]) == 0
    readout = json.loads((tmp_path / "dicom" / "involvement.json").read_text())
    assert sr_angles(tmp_path / "dicom" / SR_NAME) == readout_angles(readout)
    provenance = json.loads((tmp_path / "dicom" / "provenance.json").read_text())
    assert sorted(provenance["outputs"]["dicom"]) == sorted(str(tmp_path / "dicom" / n) for n in (PM_NAME, SEG_NAME, SR_NAME))
    assert set(dciodvfy_problems(tmp_path / "dicom" / SR_NAME)) == {PRIVATE_SCHEME_WARNING}


@pytest.mark.slow
@pytest.mark.pacs
def test_involvement_sr_is_stored_in_orthanc_and_reads_back(tmp_path, monkeypatch):
    pytest.importorskip("dicomweb_client")
    from orthanc_server import PASSWORD, USER, orthanc
    from TwinTrackLogic.dicom.web import PASSWORD_VARIABLE, USER_VARIABLE, Pacs

    case, _ = phantom_ct(2, tmp_path / "ct")
    write_image(tmp_path / "vessels.nii.gz", case.vessels, case.geometry)
    monkeypatch.setenv(USER_VARIABLE, USER)
    monkeypatch.setenv(PASSWORD_VARIABLE, PASSWORD)
    with orthanc(tmp_path / "orthanc") as url:
        series = check_series(tmp_path / "ct")
        pacs = Pacs(url)
        pacs.store([pydicom.dcmread(p) for p in series.files], series.study_uid)
        assert main(["predict", "--dicomweb", url, "--study", series.study_uid, "--series", series.series_uid,
                     "--send", "--out", str(tmp_path / "local.nii.gz"), "--vessels", str(tmp_path / "vessels.nii.gz")]) == 0
        stored = [(item["00080060"]["Value"][0], item["0020000E"]["Value"][0])
                  for item in pacs._client.search_for_series(series.study_uid)]
        assert len(stored) == 4, stored  # the CT, the map, the SEG and the SR
        (report_series,) = [uid for modality, uid in stored if modality == "SR"]
        (report,) = pacs._client.retrieve_series(series.study_uid, report_series)
    report.save_as(tmp_path / "stored_sr.dcm", enforce_file_format=True)
    readout = json.loads((tmp_path / "local.involvement.json").read_text())
    assert report.SOPClassUID == COMPREHENSIVE_3D_SR and report.StudyInstanceUID == series.study_uid
    assert sr_angles(tmp_path / "stored_sr.dcm") == readout_angles(readout)
    assert set(dciodvfy_problems(tmp_path / "stored_sr.dcm")) == {PRIVATE_SCHEME_WARNING}


# --- in OHIF ----------------------------------------------------------------------------------

SR_MEASUREMENTS = """(uid) => {
    const set = window.services.displaySetService.getDisplaySetByUID(uid);
    if (!set || !set.isLoaded || !set.measurements || set.measurements.some(m => !m.loaded)) return null;
    return set.measurements.map(m => ({id: m.TrackingIdentifier, displaySet: m.displaySetInstanceUID,
                                       labels: m.labels.map(l => l.label + ': ' + l.value)}));
}"""
CURRENT_INSTANCE = """() => {
    const viewport = window.cornerstone.getRenderingEngines()[0].getViewports()[0];
    return viewport.getCurrentImageId().match(/instances\\/([0-9.]+)\\//)[1];
}"""


def _ohif_or_skip():
    """Testing/ohif_harness.py with playwright, chromium and OHIF's app; CI has them all (a local run
    without them skips, saying why)."""
    from dicom_helpers import IN_CI

    def missing(reason):
        if IN_CI:
            pytest.fail(f"{reason}; .ci/run installs it", pytrace=False)
        pytest.skip(reason)

    try:
        from playwright import sync_api
    except ImportError:
        missing("the OHIF check needs playwright (pip install -e '.[review]')")
    import ohif_harness as harness

    if not harness.chromium_path():
        missing("no chromium (apt-get install -y chromium)")
    if harness.ohif_dist() is None:
        missing(f"OHIF's prebuilt app is not in .cache/ohif/ (npm pack @ohif/app@{harness.OHIF_VERSION}; see .ci/run)")
    return harness, sync_api


@pytest.mark.slow
@pytest.mark.pacs
@pytest.mark.browser
def test_involvement_sr_in_ohif_is_listed_loads_and_jumps_to_each_point(tmp_path):
    """OHIF 3.13.2 over Orthanc: the study browser lists the report, opening it attaches every group to
    the CT without a console error, each contact's box reads the angles, and the viewport's arrows
    jump to the CT instance of each group's first point (on the flipped phantom: the portal vein's
    and the SMV's contact slices, the tumour's centre for the others)."""
    harness, sync_api = _ohif_or_skip()
    from orthanc_server import PASSWORD, USER, orthanc
    from TwinTrackLogic.dicom.web import Pacs

    case, probability = phantom_ct(1, tmp_path / "ct")
    series = check_series(tmp_path / "ct")
    readout = read_involvement(probability, case.vessels, raters=5).to_json()
    result = export_results(series, probability, tmp_path / "out", provenance=PROVENANCE, involvement=readout)
    report = pydicom.dcmread(result.report)
    expected_slices = {}  # tracking identifier -> the CT instance of the group's first point
    for name, group in groups(report).items():
        first = next(point for item in children(group) if item.ValueType == "NUM" for point in image_points(item))
        expected_slices[name] = first[2]
    contact = {name: entry for name, entry in readout["vascular_involvement"].items() if entry["contact_deg"][0] > 0}
    assert len(set(expected_slices.values())) >= 3 and contact  # the arrows must go somewhere different
    (tmp_path / "pacs.json").write_text(json.dumps({"username": USER, "password": PASSWORD}))
    (tmp_path / "pacs.json").chmod(0o600)  # a credentials file must be private (dicom/web.py refuses others)
    with orthanc(tmp_path / "orthanc") as url:
        Pacs(url, tmp_path / "pacs.json").store([pydicom.dcmread(p) for p in series.files] + result.datasets,
                                                series.study_uid)
        viewer = harness.ViewerServer(harness.ohif_dist(), url, USER, PASSWORD)
        problems: list = []
        try:
            with sync_api.sync_playwright() as playwright:
                browser = harness.launch_browser(playwright)
                page = harness.new_context(browser).new_page()  # the harness's context: first-visit tour off
                page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
                page.on("pageerror", lambda error: problems.append(str(error)))
                try:
                    sets = harness.open_study(page, viewer, series.study_uid, objects=4)
                    assert sorted(sets) == ["CT", "PMAP", "SEG", "SR"]
                    listed = page.locator(f"[id='thumbnail-{sets['SR']}']")
                    assert "TwinTrack vascular invo" in listed.inner_text()
                    harness.open_display_set(page, sets["SR"])
                    measurements = harness.wait_for(page, SR_MEASUREMENTS, sets["SR"], problems,
                                                    what="loading the involvement SR")
                    assert {m["id"] for m in measurements} == set(expected_slices)
                    assert {m["displaySet"] for m in measurements} == {sets["CT"]}
                    labels = {m["id"]: m["labels"] for m in measurements}
                    for name, entry in contact.items():
                        first = f"Contact angle at >= {percent(readout['levels'][0])} % agreement: "
                        assert labels[f"TwinTrack involvement {name}"][0] == f"{first}{entry['contact_deg'][0]:.2f} deg"
                    visited = set()
                    for _ in measurements:
                        page.locator("[data-cy=viewport-action-arrows-right]").first.click()
                        page.wait_for_timeout(2000)  # the jump renders; two groups may share a slice
                        visited.add(page.evaluate(CURRENT_INSTANCE))
                    assert visited == set(expected_slices.values())
                except Exception:
                    page.screenshot(path=str(tmp_path / "ohif.png"))
                    raise
                finally:
                    browser.close()
        finally:
            viewer.stop()
    assert problems == []
    assert [r for r in viewer.requests if r[2] >= 400] == []
