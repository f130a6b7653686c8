"""A round trip through a real PACS: Orthanc with DICOMweb on a loopback port, started by the test.

`twintrack predict --dicomweb URL --study UID --series UID --send` fetches the CT (WADO-RS), runs
the pipeline and stores the Parametric Map and the SEG into the CT's study (STOW-RS): the study
then holds three series, the CT, the map and the SEG. The objects read back from Orthanc land on
the CT's grid. A refused upload, wrong credentials and an
unreachable server end with a clear message and leave nothing behind.
"""

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from dicom_helpers import dcmqi, on_ct_grid, phantom_ct
from orthanc_server import PASSWORD, READER, USER, free_port, orthanc
from TwinTrackCLI import main
from TwinTrackLogic.io import read_image
from TwinTrackLogic.io.dicom_series import check_series

pydicom = pytest.importorskip("pydicom")
pytest.importorskip("dicomweb_client")
from TwinTrackLogic.dicom.web import PASSWORD_VARIABLE, USER_VARIABLE, DicomWebError, Pacs  # noqa: E402

PARAMETRIC_MAP_STORAGE = "1.2.840.10008.5.1.4.1.1.30"
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
COMPREHENSIVE_3D_SR_STORAGE = "1.2.840.10008.5.1.4.1.1.88.34"


def upload_ct(url: str, folder: Path, credentials: Path):
    series = check_series(folder)
    Pacs(url, credentials).store([pydicom.dcmread(p) for p in series.files], series.study_uid)
    return series


@pytest.fixture
def credentials(tmp_path):
    path = tmp_path / "pacs.json"
    path.write_text(json.dumps({"username": USER, "password": PASSWORD}))
    path.chmod(0o600)  # a credentials file others can read is refused
    return path


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """The temporary folder TwinTrack's scratch files go to, to check that none stays."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def predict(url, series, *extra):
    return main(["predict", "--dicomweb", url, "--study", series.study_uid, "--series", series.series_uid, *extra])


def test_results_go_back_into_the_study_and_read_back_onto_the_ct(tmp_path, credentials, scratch, monkeypatch):
    phantom_ct(2, tmp_path / "ct")  # oblique
    with orthanc(tmp_path / "orthanc") as url:
        series = upload_ct(url, tmp_path / "ct", credentials)
        monkeypatch.setenv(USER_VARIABLE, USER)
        monkeypatch.setenv(PASSWORD_VARIABLE, PASSWORD)
        assert predict(url, series, "--send", "--out", str(tmp_path / "local.nii.gz")) == 0
        assert list(scratch.iterdir()) == []  # the fetched CT and the sent objects are gone
        pacs = Pacs(url, credentials)
        found = pacs._client.search_for_series(series.study_uid)
        assert len(found) == 4  # the CT, the map, the SEG and (the demo bundle finds vessels) the involvement report
        results = {}
        for item in found:
            uid = item["0020000E"]["Value"][0]
            if uid == series.series_uid:
                continue
            (dataset,) = pacs._client.retrieve_series(series.study_uid, uid)
            assert dataset.StudyInstanceUID == series.study_uid
            evidence = dataset.get("CurrentRequestedProcedureEvidenceSequence")  # an SR's references
            referenced = ([s.SeriesInstanceUID for item in evidence for s in item.ReferencedSeriesSequence]
                          if evidence else [dataset.ReferencedSeriesSequence[0].SeriesInstanceUID])
            assert series.series_uid in referenced
            results[dataset.SOPClassUID] = tmp_path / f"{dataset.Modality}.dcm"
            dataset.save_as(results[dataset.SOPClassUID], enforce_file_format=True)
        assert set(results) == {PARAMETRIC_MAP_STORAGE, SEGMENTATION_STORAGE, COMPREHENSIVE_3D_SR_STORAGE}
    # The map covers every CT slice, as OHIF needs (Testing/test_ohif.py opens such a study in OHIF).
    assert pydicom.dcmread(results[PARAMETRIC_MAP_STORAGE]).NumberOfFrames == len(series.files)
    local = read_image(tmp_path / "local.nii.gz").array
    dcmqi("paramap2itkimage", results[PARAMETRIC_MAP_STORAGE], tmp_path / "pm")
    placed = on_ct_grid(sitk.ReadImage(str(tmp_path / "pm" / "pmap.nrrd")), series.geometry)
    np.testing.assert_array_equal(placed, local)
    dcmqi("segimage2itkimage", results[SEGMENTATION_STORAGE], tmp_path / "seg", "--mergeSegments")
    majority = on_ct_grid(sitk.ReadImage(str(tmp_path / "seg" / "2.nrrd")), series.geometry) > 0
    np.testing.assert_array_equal(majority, local >= np.float32(0.5))
    assert majority.any()


def test_a_refused_upload_ends_with_a_message_and_no_local_output(tmp_path, credentials, scratch, monkeypatch, capsys):
    phantom_ct(0, tmp_path / "ct")
    with orthanc(tmp_path / "orthanc") as url:
        series = upload_ct(url, tmp_path / "ct", credentials)
        monkeypatch.setenv(USER_VARIABLE, READER)  # may fetch the CT, may not store
        monkeypatch.setenv(PASSWORD_VARIABLE, PASSWORD)
        code = predict(url, series, "--send", "--out", str(tmp_path / "local.nii.gz"),
                       "--dicom-out", str(tmp_path / "dicom"))
    err = capsys.readouterr().err
    assert code == 2 and "Storing the results" in err and "HTTP 403" in err and "Traceback" not in err, err
    assert not (tmp_path / "local.nii.gz").exists()
    assert not (tmp_path / "dicom").exists()
    assert list(scratch.iterdir()) == []


def test_wrong_credentials_are_named_as_the_problem(tmp_path, credentials, scratch, monkeypatch, capsys):
    phantom_ct(0, tmp_path / "ct")
    with orthanc(tmp_path / "orthanc") as url:
        series = upload_ct(url, tmp_path / "ct", credentials)
        monkeypatch.setenv(USER_VARIABLE, USER)
        monkeypatch.setenv(PASSWORD_VARIABLE, "wrong")
        assert predict(url, series, "--send") == 2
    err = capsys.readouterr().err
    assert "HTTP 401" in err and "credentials" in err and "wrong" not in err, err
    assert list(scratch.iterdir()) == []


def test_an_unreachable_server_ends_with_a_message_and_no_debris(tmp_path, scratch, capsys):
    url = f"http://127.0.0.1:{free_port()}/dicom-web"  # nothing listens there
    code = main(["predict", "--dicomweb", url, "--study", "1.2.3", "--series", "1.2.3.4", "--send",
                 "--out", str(tmp_path / "local.nii.gz")])
    err = capsys.readouterr().err
    assert code == 2 and "could not reach" in err and url in err and "Traceback" not in err, err
    assert list(scratch.iterdir()) == [] and not (tmp_path / "local.nii.gz").exists()


def test_credentials_are_never_taken_from_the_command_line(capsys):
    assert main(["predict", "--dicomweb", "http://me:pw@127.0.0.1:1/dicom-web", "--study", "1", "--series", "2",
                 "--send"]) == 2
    assert "Do not put credentials in the --dicomweb address" in capsys.readouterr().err
    assert main(["predict", "--image", "x", "--send"]) == 2
    assert "--send and --study go with --dicomweb" in capsys.readouterr().err


def test_a_partly_refused_store_names_what_was_refused(monkeypatch):
    """A STOW-RS answer listing failed instances (HTTP 202) is an error, not a success."""
    from pydicom.dataset import Dataset

    pacs = Pacs("http://127.0.0.1:1/dicom-web")
    failed, stored = Dataset(), Dataset()
    failed.FailureReason = 0xA700  # out of resources
    answer = Dataset()
    answer.FailedSOPSequence, answer.ReferencedSOPSequence = [failed], [stored]
    monkeypatch.setattr(pacs._client, "store_instances", lambda datasets, study_instance_uid: answer)
    with pytest.raises(DicomWebError, match="refused 1 of 2 object"):
        pacs.store([Dataset(), Dataset()], "1.2.3")
