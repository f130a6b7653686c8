"""The calibrated map as a DICOM Parametric Map and the agreement masks as a binary SEG, checked
by outside tools: dciodvfy (dicom3tools) validates every object, dcmqi's converters (the code
Slicer's DICOM importer runs) read them back onto the CT's grid, on identity, flipped and
oblique CTs."""

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from dicom_helpers import dciodvfy_problems, dcmqi, on_ct_grid, phantom_ct
from TwinTrackCLI import main
from TwinTrackLogic.errors import InputError
from TwinTrackLogic.io import write_image
from TwinTrackLogic.io.dicom_series import check_series
from TwinTrackLogic.io.outputs import file_record

pydicom = pytest.importorskip("pydicom")
hd = pytest.importorskip("highdicom")
from TwinTrackLogic.dicom.export import DEFAULT_LEVELS, PM_NAME, SEG_NAME, export_results, level_label  # noqa: E402
from TwinTrackLogic.dicom.report import SR_NAME  # noqa: E402

PROVENANCE = {"bundle": {"id": "twintrack-demo-3"},
              "calibrator": {"method": "isotonic", "raters": 5, "sha256": "0123456789abcdef"}}


def twintrack_equipment(dataset):
    """The processing-equipment item TwinTrack wrote (highdicom adds the CT's scanner and itself)."""
    (item,) = [e for e in dataset.ContributingEquipmentSequence if e.Manufacturer == "TwinTrack"
               and e.PurposeOfReferenceCodeSequence[0].CodeValue == "109102"]
    return item


@pytest.fixture(scope="module", params=[0, 1, 2], ids=["identity", "flipped", "oblique"])
def exported(request, tmp_path_factory):
    base = tmp_path_factory.mktemp(f"case{request.param}")
    case, probability = phantom_ct(request.param, base / "ct")
    series = check_series(base / "ct")
    result = export_results(series, probability, base / "out", provenance=PROVENANCE)
    return case, probability, series, result, base


def test_every_object_validates_without_errors_or_warnings(exported):
    *_, result, _ = exported
    for path in result.paths:
        assert dciodvfy_problems(path) == [], path.name


def test_the_map_reads_back_in_dcmqi_float32_exact_and_right_side_up(exported):
    case, probability, series, result, base = exported
    meta = dcmqi("paramap2itkimage", result.parametric_map, base / "pm")
    image = sitk.ReadImage(str(base / "pm" / "pmap.nrrd"))
    assert image.GetPixelID() == sitk.sitkFloat32
    placed = on_ct_grid(image, series.geometry)
    np.testing.assert_array_equal(placed, probability)
    assert meta["QuantityValueCode"]["CodeValue"] == "110854"
    assert meta["MeasurementUnitsCode"]["CodeValue"] == "1"


def test_the_map_has_one_frame_per_ct_slice_each_referencing_its_slice(exported):
    """What OHIF's importer needs (Testing/test_ohif.py loads it there): frame i is CT slice i."""
    _, probability, series, result, _ = exported
    pm = pydicom.dcmread(result.parametric_map)
    assert result.frames["parametric_map"] == pm.NumberOfFrames == len(probability) == len(series.files)
    referenced = [frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
                  for frame in pm.PerFrameFunctionalGroupsSequence]
    assert referenced == series.sop_instance_uids


def slab_of(probability):
    nonzero = np.flatnonzero(probability.reshape(len(probability), -1).max(axis=1) > 0)
    return slice(nonzero[0], nonzero[-1] + 1)


@pytest.mark.parametrize("index", [1, 2], ids=["flipped", "oblique"])
def test_the_slab_map_covers_only_the_slices_with_probability_and_reads_back_in_dcmqi(index, tmp_path):
    _, probability = phantom_ct(index, tmp_path / "ct")
    series = check_series(tmp_path / "ct")
    result = export_results(series, probability, tmp_path / "out", parametric_map_extent="slab")
    slab = slab_of(probability)
    assert result.frames["parametric_map"] == slab.stop - slab.start < len(probability)
    assert dciodvfy_problems(result.parametric_map) == []
    dcmqi("paramap2itkimage", result.parametric_map, tmp_path / "pm")
    placed = on_ct_grid(sitk.ReadImage(str(tmp_path / "pm" / "pmap.nrrd")), series.geometry)
    np.testing.assert_array_equal(placed, probability)
    full = export_results(series, probability, tmp_path / "full").parametric_map
    assert result.parametric_map.stat().st_size < 0.6 * full.stat().st_size
    with pytest.raises(InputError, match="extent must be one of series, slab"):
        export_results(series, probability, tmp_path / "bad", parametric_map_extent="cropped")
    assert not (tmp_path / "bad").exists()


def test_slices_numbered_head_to_feet_keep_the_series_order_lowest_along_row_cross_column(tmp_path):
    """"Lowest" is along row x column (the series' own order), not along the patient's z: with
    IOP (1, 0, 0, 0, -1, 0) the normal points to the feet, and frame 0 is the most cranial slice."""
    from TwinTrackLogic.dicom.ct_series import write_ct_series
    from TwinTrackLogic.io import Geometry, Volume

    case, probability = phantom_ct(0, tmp_path / "phantom")
    g = case.geometry
    direction = np.diag([1.0, -1.0, -1.0])  # right-handed: rows +x, columns -y, slices -z
    feet_first = Geometry(g.size, g.spacing, g.origin, tuple(direction.ravel()))
    write_ct_series(Volume(case.image, feet_first), tmp_path / "ct")
    series = check_series(tmp_path / "ct")
    assert series.geometry.differences(feet_first) == []
    result = export_results(series, probability, tmp_path / "out")
    pm = pydicom.dcmread(result.parametric_map)
    heights = [float(f.PlanePositionSequence[0].ImagePositionPatient[2]) for f in pm.PerFrameFunctionalGroupsSequence]
    assert np.all(np.diff(heights) < 0)  # head first in patient z, lowest first along row x column
    dcmqi("paramap2itkimage", result.parametric_map, tmp_path / "pm")
    np.testing.assert_array_equal(on_ct_grid(sitk.ReadImage(str(tmp_path / "pm" / "pmap.nrrd")), series.geometry),
                                  probability)


def test_the_masks_read_back_in_dcmqi_voxel_exact_with_their_levels(exported):
    _, probability, series, result, base = exported
    meta = dcmqi("segimage2itkimage", result.segmentation, base / "seg", "--mergeSegments")
    files = sorted((base / "seg").glob("*.nrrd"), key=lambda p: int(p.stem))
    assert len(files) == len(DEFAULT_LEVELS)  # nested masks overlap: one file per segment
    labels = [segment["SegmentLabel"] for group in meta["segmentAttributes"] for segment in group]
    assert labels == [level_label(level) for level in DEFAULT_LEVELS]
    assert labels[1] == "≥ 50 % expected annotator agreement"
    for path, level in zip(files, DEFAULT_LEVELS):
        placed = on_ct_grid(sitk.ReadImage(str(path)), series.geometry) > 0
        assert np.count_nonzero(placed != (probability >= np.float32(level))) == 0, level
        assert placed.any()


def test_the_objects_carry_codes_algorithm_and_references(exported):
    _, probability, series, result, _ = exported
    pm = pydicom.dcmread(result.parametric_map)
    seg = pydicom.dcmread(result.segmentation)
    for dataset in (pm, seg):
        assert dataset.StudyInstanceUID == series.study_uid
        assert dataset.FrameOfReferenceUID == series.frame_of_reference_uid
        referenced = dataset.ReferencedSeriesSequence[0]
        assert referenced.SeriesInstanceUID == series.series_uid
        assert {item.ReferencedSOPInstanceUID for item in referenced.ReferencedInstanceSequence} <= set(
            series.sop_instance_uids)
        equipment = twintrack_equipment(dataset)
        assert equipment.ManufacturerModelName == "twintrack-demo-3"
        assert "isotonic 5 raters sha256:0123456789ab" in equipment.ContributionDescription
    # Parametric Map: quantity, unit, range, Frame Anatomy, frames from the lowest slice up.
    mapping = pm.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    assert mapping.QuantityDefinitionSequence[0].ConceptCodeSequence[0].CodeValue == "110854"
    assert mapping.MeasurementUnitsCodeSequence[0].CodeValue == "1"
    assert (mapping.DoubleFloatRealWorldValueFirstValueMapped, mapping.DoubleFloatRealWorldValueLastValueMapped) == (0, 1)
    anatomy = pm.SharedFunctionalGroupsSequence[0].FrameAnatomySequence[0]
    assert anatomy.AnatomicRegionSequence[0].CodeValue == "15776009" and anatomy.FrameLaterality == "U"
    normal = np.cross(*np.reshape(series.geometry.direction, (3, 3)).T[:2])
    heights = [np.asarray(f.PlanePositionSequence[0].ImagePositionPatient, float) @ normal
               for f in pm.PerFrameFunctionalGroupsSequence]
    assert np.all(np.diff(heights) > 0)
    assert pm.BitsAllocated == 32 and pm.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    # SEG: binary, uncompressed, coded Neoplasm in the pancreas, one algorithm per segment.
    assert seg.SegmentationType == "BINARY"
    assert seg.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    for segment, level in zip(seg.SegmentSequence, DEFAULT_LEVELS):
        assert segment.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
        assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == "108369006"
        assert segment.AnatomicRegionSequence[0].CodeValue == "15776009"
        algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
        assert algorithm.AlgorithmName == "TwinTrack" and algorithm.AlgorithmSource == "twintrack-demo-3"
        assert f"p >= {level:g}" in algorithm.AlgorithmParameters
        assert "calibrator" in algorithm.AlgorithmParameters


def test_highdicom_reads_the_map_back_exactly(exported):
    _, probability, series, result, _ = exported
    pm = hd.pm.ParametricMap.from_dataset(pydicom.dcmread(result.parametric_map))
    frames = pm.pixel_array  # frames in file order: lowest slice first
    np.testing.assert_array_equal(frames, probability)
    assert frames.max() == 1.0  # p = 1 stays 1 (no wrap-around at a declared maximum)


def test_values_outside_zero_to_one_are_refused_and_nothing_is_written(tmp_path):
    _, probability = phantom_ct(0, tmp_path / "ct")
    series = check_series(tmp_path / "ct")
    for bad in (1.0001, np.nan, -0.1):
        broken = probability.copy()
        broken[5, 40, 40] = bad
        with pytest.raises(InputError, match="outside 0..1"):
            export_results(series, broken, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_empty_map_writes_every_frame_and_validates(tmp_path):
    _, probability = phantom_ct(0, tmp_path / "ct")
    series = check_series(tmp_path / "ct")
    result = export_results(series, np.zeros_like(probability), tmp_path / "out")
    assert result.frames["parametric_map"] == len(probability)
    for path in result.paths:
        assert dciodvfy_problems(path) == []


def test_export_dicom_command_writes_both_objects_from_a_map_and_its_provenance(tmp_path, capsys):
    case, probability = phantom_ct(2, tmp_path / "ct")
    write_image(tmp_path / "prob.nii.gz", probability, case.geometry)
    # The sidecar records its map's sha256 (export-dicom checks that it describes this map).
    prob = str(tmp_path / "prob.nii.gz")
    (tmp_path / "prob.provenance.json").write_text(json.dumps(
        {**PROVENANCE, "outputs": {"probability": prob}, "output_files": {prob: file_record(prob)}}))
    assert main(["export-dicom", "--image", str(tmp_path / "ct"), "--probability", str(tmp_path / "prob.nii.gz"),
                 "--out", str(tmp_path / "out"), "--levels", "50", "--parametric-map-extent", "slab"]) == 0
    seg = pydicom.dcmread(tmp_path / "out" / SEG_NAME)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["≥ 50 % expected annotator agreement"]
    assert twintrack_equipment(seg).ManufacturerModelName == "twintrack-demo-3"
    slab = slab_of(probability)
    assert pydicom.dcmread(tmp_path / "out" / PM_NAME).NumberOfFrames == slab.stop - slab.start
    # A map on another grid is refused with the geometry check's message.
    write_image(tmp_path / "other.nii.gz", probability[1:], case.geometry.__class__(
        (*case.geometry.size[:2], case.geometry.size[2] - 1), case.geometry.spacing, case.geometry.origin,
        case.geometry.direction))
    assert main(["export-dicom", "--image", str(tmp_path / "ct"), "--probability", str(tmp_path / "other.nii.gz"),
                 "--out", str(tmp_path / "out2")]) == 2
    assert "same voxel grid" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()


def test_predict_writes_dicom_objects_for_a_dicom_ct(tmp_path):
    case, _ = phantom_ct(0, tmp_path / "ct")
    assert main(["predict", "--image", str(tmp_path / "ct"), "--dicom-out", str(tmp_path / "dicom")]) == 0
    provenance = json.loads((tmp_path / "dicom" / "provenance.json").read_text())
    series = check_series(tmp_path / "ct")
    record = provenance["inputs"]["dicom_series"]
    assert (record["study"], record["series"], record["slices"]) == (series.study_uid, series.series_uid, 48)
    assert 0 < record["header_check_s"] < 10
    pm = pydicom.dcmread(tmp_path / "dicom" / PM_NAME)
    seg = pydicom.dcmread(tmp_path / "dicom" / SEG_NAME)
    assert twintrack_equipment(pm).ManufacturerModelName == provenance["bundle"]["id"]
    assert pm.NumberOfFrames == 48  # the default extent: every CT slice
    assert provenance["calibrator"]["sha256"][:12] in seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[
        0].AlgorithmParameters
    # The demo bundle's vessel stage gives a read-out, so the involvement report is written too
    # (it is checked, dciodvfy included, in Testing/test_dicom_sr.py).
    assert sorted(provenance["outputs"]["dicom"]) == sorted(str(tmp_path / "dicom" / n)
                                                           for n in (PM_NAME, SEG_NAME, SR_NAME))
    for path in (tmp_path / "dicom" / PM_NAME, tmp_path / "dicom" / SEG_NAME):
        assert dciodvfy_problems(path) == []


def test_predict_refuses_dicom_out_for_a_nifti_ct_before_running(tmp_path, capsys):
    case, _ = phantom_ct(0, tmp_path / "ct")
    write_image(tmp_path / "ct.nii.gz", case.image, case.geometry)
    assert main(["predict", "--image", str(tmp_path / "ct.nii.gz"), "--dicom-out", str(tmp_path / "d")]) == 2
    assert "must be a DICOM series folder" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_the_anonymised_real_series_is_refused_for_export_with_the_reason(tmp_path):
    from dicom_helpers import REAL_CT

    if not REAL_CT.is_dir():
        pytest.skip("the real CT series is not on this machine")
    series = check_series(REAL_CT)
    with pytest.raises(InputError, match="carry no StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID"):
        export_results(series, np.zeros(series.geometry.shape, np.float32), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_real_series_with_its_uids_exports_and_reads_back_in_dcmqi(tmp_path):
    from dicom_helpers import REAL_CT, real_slices, with_uids, write

    if not REAL_CT.is_dir():
        pytest.skip("the real CT series is not on this machine")
    folder = write(tmp_path / "ct", with_uids(real_slices()))
    series = check_series(folder)
    zz, yy, xx = np.meshgrid(*(np.arange(n) for n in series.geometry.shape), indexing="ij")
    probability = np.clip(1.0 - np.hypot(yy - 300, xx - 260) / 60.0, 0, 1).astype(np.float32)
    probability[:4] = 0
    probability *= (zz + 1) / len(probability)  # rises to the head: upside down would not match
    result = export_results(series, probability, tmp_path / "out", provenance=PROVENANCE)
    # No errors; the only warnings are the source's own (anonymised PatientID/StudyID, a vendor code).
    inherited = {line for line in dciodvfy_problems(series.files[0]) if line.startswith("Warning")}
    for path in result.paths:
        problems = dciodvfy_problems(path)
        assert not [line for line in problems if line.startswith("Error")], problems
        assert set(problems) <= inherited, problems
    dcmqi("paramap2itkimage", result.parametric_map, tmp_path / "pm")
    placed = on_ct_grid(sitk.ReadImage(str(tmp_path / "pm" / "pmap.nrrd")), series.geometry)
    np.testing.assert_array_equal(placed, probability)
    dcmqi("segimage2itkimage", result.segmentation, tmp_path / "seg", "--mergeSegments")
    middle = on_ct_grid(sitk.ReadImage(str(tmp_path / "seg" / "2.nrrd")), series.geometry) > 0
    np.testing.assert_array_equal(middle, probability >= np.float32(0.5))


def test_a_phantom_cohort_with_dicom_cts_reads_its_masks_on_the_dicom_grid(tmp_path):
    from TwinTrackLogic.io import find_cases, read_geometry
    from TwinTrackLogic.phantom import generate_case

    assert main(["phantom", "--out", str(tmp_path / "cohort"), "--cases", "3", "--dicom"]) == 0
    cases = find_cases(tmp_path / "cohort")
    for index, case in enumerate(cases):
        assert case.image == case.folder / "image" and not (case.folder / "image.nii.gz").exists()
        geometry = read_geometry(case.image)
        assert geometry.differences(generate_case(index).geometry) == []  # identity, flipped, oblique
        masks = case.read_annotations(geometry)  # refused unless the NIfTI masks lie on the DICOM grid
        assert len(masks) == 5 and any(mask.any() for mask in masks)
    # The same phantom gets the same UIDs (writing it again makes no new study); another seed other ones.
    first = check_series(cases[0].image)
    assert main(["phantom", "--out", str(tmp_path / "again"), "--cases", "1", "--dicom"]) == 0
    assert main(["phantom", "--out", str(tmp_path / "other"), "--cases", "1", "--dicom", "--seed", "1"]) == 0
    again, other = (check_series(tmp_path / name / "case_000" / "image") for name in ("again", "other"))
    assert (again.study_uid, again.series_uid, again.sop_instance_uids) == (
        first.study_uid, first.series_uid, first.sop_instance_uids)
    assert other.study_uid != first.study_uid and other.series_uid != first.series_uid


def test_export_for_files_accepts_a_map_stacked_top_down_and_refuses_another_grid(tmp_path):
    """What Slicer's "Export DICOM" calls: the CT as database files (any order), the map with its node's grid."""
    from TwinTrackLogic.dicom.export import export_for_files
    from TwinTrackLogic.errors import GeometryMismatchError
    from TwinTrackLogic.io import Geometry

    case, probability = phantom_ct(2, tmp_path / "ct")
    files = sorted((tmp_path / "ct").iterdir(), reverse=True)
    g = case.geometry
    direction = g.direction_matrix
    top = np.asarray(g.origin) + (g.size[2] - 1) * g.spacing[2] * direction[:, 2]
    top_down = Geometry(g.size, g.spacing, tuple(top), tuple((direction * [1, 1, -1]).ravel()))
    result = export_for_files(files, probability[::-1], top_down, tmp_path / "out", provenance=PROVENANCE)
    pm = hd.pm.ParametricMap.from_dataset(pydicom.dcmread(result.parametric_map))
    np.testing.assert_array_equal(pm.pixel_array, probability)
    shifted = Geometry(g.size, g.spacing, tuple(np.asarray(g.origin) + 1.0), g.direction)
    with pytest.raises(GeometryMismatchError, match="origin"):
        export_for_files(files, probability, shifted, tmp_path / "out2")


def test_predict_refuses_dicom_out_for_the_anonymised_series_before_running(tmp_path, capsys):
    from dicom_helpers import REAL_CT

    if not REAL_CT.is_dir():
        pytest.skip("the real CT series is not on this machine")
    assert main(["predict", "--image", str(REAL_CT), "--dicom-out", str(tmp_path / "d"), "--levels", "50"]) == 2
    err = capsys.readouterr().err
    assert "carry no StudyInstanceUID" in err and "does not invent these UIDs" in err and "%" not in err
    assert not (tmp_path / "d").exists()
    assert main(["predict", "--image", str(REAL_CT), "--dicom-out", str(tmp_path / "d"), "--levels", "50,x"]) == 2
    assert "--levels takes a percentage of annotators, like 50, not 'x'" in capsys.readouterr().err
    assert main(["predict", "--image", str(REAL_CT), "--dicom-out", str(tmp_path / "d"), "--levels", "0.5"]) == 2
    assert "0.5 looks like a fraction: write 50" in capsys.readouterr().err


def test_the_algorithm_named_follows_the_provenance():
    from TwinTrackLogic.dicom.export import Algorithm

    assert Algorithm.from_provenance(PROVENANCE).calibrator == "isotonic 5 raters sha256:0123456789ab"
    assert Algorithm.from_provenance({"bundle": {"id": "b"}, "calibrator": None}).calibrator.startswith("none")
    unknown = Algorithm.from_provenance(None)
    assert (unknown.bundle, unknown.calibrator) == ("unknown bundle", "unknown (no provenance)")
    odd = Algorithm.from_provenance({"bundle": "not a record", "calibrator": 3})  # a hand-edited sidecar
    assert odd.bundle == "unknown bundle" and odd.calibrator.startswith("none")


def test_missing_packages_names_what_a_host_must_install(monkeypatch):
    import TwinTrackLogic.dicom as dicom

    assert dicom.missing_packages() == []  # this environment has the extra
    versions = {"highdicom": "0.27.0"}  # as bundled with Slicer 5.12

    def version(name):
        if name in versions:
            return versions[name]
        raise dicom.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(dicom.metadata, "version", version)
    assert dicom.missing_packages() == ["highdicom==0.28.2", "pydicom==3.0.2"]


def test_the_dicom_extra_pins_what_the_writers_require():
    import tomllib

    import TwinTrackLogic.dicom as dicom

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    extra = project["project"]["optional-dependencies"]["dicom"]
    for name, version in dicom.REQUIRED.items():
        assert f"{name}=={version}" in extra
