"""DICOM out never writes a UID DICOM forbids (issue 24): the rule, the refusal, the replacement
the user asks for, and dciodvfy on what is written."""

import pytest

from dicom_helpers import dciodvfy_problems, phantom_ct
from TwinTrackCLI import main
from TwinTrackLogic.dicom.uids import MAX_LENGTH, check_dataset_uids, new_uid, uid_problem
from TwinTrackLogic.errors import InputError
from TwinTrackLogic.io import write_image

pydicom = pytest.importorskip("pydicom")
pytest.importorskip("highdicom")


@pytest.mark.parametrize("value", ["1.2.840.10008.5.1.4.1.1.2", "0", "2.25.0", "1.0.3", "1." + "2" * 62])
def test_valid_uids_pass(value):
    assert uid_problem(value) is None


@pytest.mark.parametrize("value, said", [
    ("1." + "2" * 63, "65 characters"),
    ("1.2.840.abc", "'a', 'b', 'c'"),
    ("1.2.03", "'03' starts with 0"),
    ("1..2", "empty component"),
    ("1.2.", "empty component"),
    ("1.2 .3", "' '"),
    ("1.2.٣", "'٣'"),  # an Arabic-Indic digit: a digit to Python, not to DICOM
    ("", "empty"),
])
def test_invalid_uids_are_named_with_the_reason(value, said):
    assert said in uid_problem(value)


def test_made_uids_are_valid_and_distinct():
    made = {new_uid() for _ in range(200)}
    assert len(made) == 200 and all(uid_problem(uid) is None and len(uid) <= MAX_LENGTH for uid in made)


def test_a_bad_uid_deep_in_a_sequence_is_refused_with_its_path():
    from pydicom.dataset import Dataset

    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3.04"
    dataset = Dataset()
    dataset.SOPInstanceUID = "1.2.3"
    dataset.ReferencedSeriesSequence = [Dataset()]
    dataset.ReferencedSeriesSequence[0].ReferencedInstanceSequence = [item]
    with pytest.raises(InputError, match=r"ReferencedSeriesSequence\[0\]\.ReferencedInstanceSequence\[0\]\."
                                         r"ReferencedSOPInstanceUID \(0008,1155\) = '1\.2\.3\.04'"):
        check_dataset_uids(dataset, "Segmentation")


def _ct_with_bad_study_uid(tmp_path, bad):
    case, probability = phantom_ct(0, tmp_path / "ct")
    for path in sorted((tmp_path / "ct").glob("*.dcm")):
        dataset = pydicom.dcmread(path)
        dataset.StudyInstanceUID = bad
        dataset.save_as(path, enforce_file_format=True)
    write_image(tmp_path / "prob.nii.gz", probability, case.geometry)


def test_replacing_an_invalid_study_uid_is_recorded_and_validates(tmp_path, capsys):
    bad = "1.2.840.113619.2.55.3.604688119.969.1268071029.AB"  # letters, as some anonymisers write
    _ct_with_bad_study_uid(tmp_path, bad)
    command = ["export-dicom", "--image", str(tmp_path / "ct"), "--probability", str(tmp_path / "prob.nii.gz"),
               "--out", str(tmp_path / "out"), "--levels", "50"]
    assert main(command) == 2
    assert "StudyInstanceUID (0020,000D)" in capsys.readouterr().err and not (tmp_path / "out").exists()
    assert main(command + ["--replace-invalid-uids"]) == 0
    for name in ("probability_map.dcm", "agreement_segmentation.dcm"):
        written = pydicom.dcmread(tmp_path / "out" / name)
        assert written.StudyInstanceUID != bad and uid_problem(written.StudyInstanceUID) is None
        notes = [str(item.get("ContributionDescription", "")) for item in written.ContributingEquipmentSequence]
        assert any("--replace-invalid-uids" in note and bad in note for note in notes), notes
        assert dciodvfy_problems(tmp_path / "out" / name) == [], name
    # The CT itself is left as it was.
    assert pydicom.dcmread(sorted((tmp_path / "ct").glob("*.dcm"))[0]).StudyInstanceUID == bad
