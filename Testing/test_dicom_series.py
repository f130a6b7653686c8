"""DICOM CT series are checked from their headers before a voxel is trusted.

Every malformed series is built from the real scanner series in shared/data/real_ct_dicom
(Siemens, JPEG 2000 pixel data, 20 slices 2 mm apart) by editing headers with pydicom in a
temporary folder; the pixel data stays as the scanner wrote it.
"""

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from TwinTrackCLI import main
from TwinTrackLogic.errors import InputError
from TwinTrackLogic.io import Case, read_geometry, read_image
from TwinTrackLogic.io.dicom_series import check_series

pydicom = pytest.importorskip("pydicom")
from dicom_helpers import REAL_CT, real_slices, with_uids, write  # noqa: E402

pytestmark = pytest.mark.skipif(not REAL_CT.is_dir(), reason="the real CT series is not on this machine")


def refused(folder: Path, *fragments: str) -> str:
    with pytest.raises(InputError) as caught:
        read_image(folder)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_the_real_series_reads_with_the_geometry_its_headers_state():
    datasets = real_slices()
    image = read_image(REAL_CT)
    geometry = image.geometry
    assert geometry.size == (512, 512, 20)
    assert geometry.spacing == (0.9765625, 0.9765625, 2.0)
    assert geometry.origin == tuple(float(v) for v in datasets[0].ImagePositionPatient)
    assert geometry.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    # Voxels in HU, slice k = the k-th position from the feet: compare one slice read on its own.
    top = sitk.ReadImage(datasets[-1].filename)
    np.testing.assert_array_equal(image.array[-1], sitk.GetArrayFromImage(top)[0])
    assert read_geometry(REAL_CT) == geometry


def test_anonymised_uids_are_read_but_reported():
    series = check_series(REAL_CT)
    assert series.missing_uids == ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"]
    assert "cannot reference it" in series.warnings[0]
    assert series.check_seconds > 0


def test_shuffled_files_and_instance_numbers_give_the_same_volume(tmp_path):
    datasets = real_slices()
    reference = read_image(write(tmp_path / "good", real_slices()))
    order = np.random.default_rng(3).permutation(len(datasets))
    shuffled = [datasets[i] for i in order]
    for number, ds in enumerate(shuffled):
        ds.InstanceNumber = number + 1
    volume = read_image(write(tmp_path / "shuffled", shuffled))
    assert volume.geometry == reference.geometry
    np.testing.assert_array_equal(volume.array, reference.array)


def test_a_missing_slice_is_refused_naming_its_neighbours(tmp_path):
    datasets = real_slices()
    del datasets[7]
    folder = write(tmp_path / "missing", datasets)
    message = refused(folder, "not evenly spaced", "4.000 mm between slice006.dcm", "and slice007.dcm",
                      "about 1 slice(s) missing")
    # ITK alone would have read it onto a uniform grid: this is what the check prevents.
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    assert reader.Execute().GetSize()[2] == 19, message


def test_three_missing_slices_are_counted(tmp_path):
    datasets = real_slices()
    del datasets[5:8]
    refused(write(tmp_path / "gap", datasets), "8.000 mm", "about 3 slice(s) missing")


def test_a_duplicated_position_is_refused(tmp_path):
    datasets = real_slices()
    copy = pydicom.dcmread(datasets[10].filename)
    copy.AcquisitionNumber = 2
    datasets.insert(11, copy)
    refused(write(tmp_path / "duplicate", datasets), "share a position", "slice010.dcm (InstanceNumber", "and slice011.dcm")


def test_non_uniform_spacing_is_refused(tmp_path):
    datasets = real_slices()
    for ds in datasets[10:]:
        ds.ImagePositionPatient[2] = float(ds.ImagePositionPatient[2]) + 0.5
    refused(write(tmp_path / "uneven", datasets), "not evenly spaced", "2.500 mm between slice009.dcm")


def test_gantry_tilt_is_refused(tmp_path):
    datasets = real_slices()
    shear = np.tan(np.radians(10.0))
    for k, ds in enumerate(datasets):
        ds.ImagePositionPatient[1] = float(ds.ImagePositionPatient[1]) + k * 2.0 * shear
        ds.GantryDetectorTilt = 10
    refused(write(tmp_path / "tilt", datasets), "gantry tilt", "GantryDetectorTilt 10", "sheared")


def test_a_slice_of_another_orientation_is_refused_by_name(tmp_path):
    datasets = real_slices()
    datasets[4].ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    refused(write(tmp_path / "turned", datasets), "another ImageOrientationPatient", "slice004.dcm")


def test_two_frames_of_reference_are_refused(tmp_path):
    datasets = real_slices()
    for ds in datasets[12:]:
        ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.10.1.99"
    refused(write(tmp_path / "frames", datasets), "2 frames of reference", "1.2.826.0.1.3680043.10.1.99",
            "slice012.dcm")


def test_a_missing_position_is_refused_by_name(tmp_path):
    datasets = real_slices()
    del datasets[3].ImagePositionPatient
    refused(write(tmp_path / "noposition", datasets), "1 of 20 file(s) lack ImagePositionPatient", "slice003.dcm")


def test_a_non_ct_series_is_refused(tmp_path):
    datasets = real_slices()
    for ds in datasets:
        ds.Modality = "MR"
    refused(write(tmp_path / "mr", datasets), "not single-frame CT", "MR")


def test_two_series_are_listed_and_one_is_chosen_by_uid(tmp_path, capsys):
    datasets = with_uids(real_slices())
    odd = "1.2.826.0.1.3680043.10.1.77"
    for ds in datasets[1::2]:
        ds.SeriesInstanceUID = odd
        ds.SeriesDescription = "second reconstruction"
    folder = write(tmp_path / "two", datasets)
    message = refused(folder, "2 DICOM series", "--series UID", odd, "1.2.826.0.1.3680043.10.1.1",
                      "10 file(s)", "second reconstruction", "CT Body 3.0")
    chosen = read_image(folder, series_uid=odd)
    assert chosen.geometry.size == (512, 512, 10)
    assert chosen.geometry.spacing[2] == 4.0
    assert chosen.geometry.origin[2] == float(datasets[1].ImagePositionPatient[2])
    with pytest.raises(InputError, match="no series with SeriesInstanceUID 9.9"):
        read_image(folder, series_uid="9.9")
    # The command line prints the list and exits 2, without a traceback.
    assert main(["predict", "--image", str(folder), "--out", str(tmp_path / "p.nii.gz")]) == 2
    err = capsys.readouterr().err
    assert odd in err and "Traceback" not in err and message.splitlines()[0] in err


def test_non_dicom_files_in_the_folder_are_ignored(tmp_path):
    folder = write(tmp_path / "withreadme", real_slices())
    (folder / "README.txt").write_text("exported by the archive\n")
    assert read_image(folder).geometry.size == (512, 512, 20)


def test_a_case_folder_may_hold_its_ct_as_an_image_dicom_folder(tmp_path):
    case_folder = tmp_path / "case_000"
    write(case_folder / "image", real_slices())
    case = Case.from_folder(case_folder)
    assert case.image == case_folder / "image"
    assert read_geometry(case.image).size == (512, 512, 20)


@pytest.mark.slow  # over ~4 s: left out of the fast loop
def test_predict_reads_the_series_that_series_names(tmp_path):
    datasets = with_uids(real_slices())
    chosen = "1.2.826.0.1.3680043.10.1.78"
    for ds in datasets[:10]:
        ds.SeriesInstanceUID = chosen
    folder = write(tmp_path / "two", datasets)
    out = tmp_path / "p.nii.gz"
    assert main(["predict", "--image", str(folder), "--series", chosen, "--no-calibration", "--out", str(out)]) == 0
    written = read_image(out)
    assert written.geometry.size == (512, 512, 10)
    assert written.geometry.origin[2] == float(datasets[0].ImagePositionPatient[2])


def test_a_localiser_in_the_series_is_refused_by_name(tmp_path):
    datasets = real_slices()
    datasets[0].ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    refused(write(tmp_path / "scout", datasets), "localiser", "slice000.dcm")


def test_a_series_without_a_frame_of_reference_is_refused(tmp_path):
    datasets = real_slices()
    for ds in datasets:
        del ds.FrameOfReferenceUID
    refused(write(tmp_path / "noframe", datasets), "no FrameOfReferenceUID")


def test_positions_rounded_to_a_tenth_of_a_millimetre_are_accepted_at_their_true_spacing(tmp_path):
    datasets = real_slices()
    z0 = float(datasets[0].ImagePositionPatient[2])
    for k, ds in enumerate(datasets):
        ds.ImagePositionPatient[2] = round(z0 + k * 0.625, 1)  # 0.6, 0.7, 0.6 ... apart, as scanners write
    geometry = read_image(write(tmp_path / "rounded", datasets)).geometry
    assert abs(geometry.spacing[2] - 0.625) < 0.002
    true = z0 + 0.625 * np.arange(len(datasets))
    placed = geometry.origin[2] + geometry.spacing[2] * np.arange(len(datasets))
    assert np.abs(placed - true).max() <= 0.05  # within the rounding of the written positions


def test_a_drifting_spacing_is_refused(tmp_path):
    datasets = real_slices()
    z0 = float(datasets[0].ImagePositionPatient[2])
    gaps = [1.95] * 10 + [2.04] * 9  # each gap within rounding of the median, the stack 0.5 mm off
    for ds, height in zip(datasets, z0 + np.concatenate([[0.0], np.cumsum(gaps)])):
        ds.ImagePositionPatient[2] = float(height)
    refused(write(tmp_path / "drift", datasets), "drifts along the stack", "off an even")
