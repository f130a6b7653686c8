"""Nothing lost, nothing silently wrong: verified writes, outputs that never overwrite inputs,
signals that unwind, non-finite values that are found, one naming rule for case files.

The command-line behaviour of each class is in the bad-input corpus
(Testing/bad_inputs/corpus_writes.py); these tests pin the helpers underneath.
"""

import json
import os
import signal
import zlib
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from bundle_helpers import identity_bundle

from TwinTrackCLI import main
from TwinTrackLogic.errors import InputError, OutputError
from TwinTrackLogic.io import Geometry, StagedOutputs, Volume, find_cases, read_image, write_image
from TwinTrackLogic.io.finite import ct_with_finite_values, non_finite
from TwinTrackLogic.io.images import image_stem, image_suffix, is_nifti
from TwinTrackLogic.io.layout import Case
from TwinTrackLogic.io.paths import check_outputs, input_paths, output_paths
from TwinTrackLogic.io.verify import CRC_CHUNK, adler32_of, crc32_of, image_file_problem
from TwinTrackLogic.phantom import write_cohort
from TwinTrackLogic.pipeline import run_case
from TwinTrackLogic.signals import Terminated, signals_unwind

GRID = Geometry((24, 20, 12), (1.5, 1.5, 3.0), (-20.0, 14.0, -300.0))


# --- verified writes --------------------------------------------------------

def test_check_values_skip_zero_chunks_and_still_equal_zlibs():
    data = np.zeros(4 * CRC_CHUNK + 1234, np.uint8)
    data[CRC_CHUNK + 17] = 5  # chunk 1 not zero, chunks 0, 2 and 3 zero, a ragged tail
    data[-3:] = 200
    for prefix in (b"", b"n+1\0" * 88):
        assert crc32_of(prefix, memoryview(data)) == zlib.crc32(prefix + data.tobytes())
        assert adler32_of(prefix, memoryview(data)) == zlib.adler32(prefix + data.tobytes())


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
@pytest.mark.parametrize("compress", [True, False])
def test_every_format_and_type_we_write_passes_its_own_check(tmp_path, suffix, compress):
    rng = np.random.default_rng(0)
    for array in (rng.random(GRID.shape).astype(np.float32), rng.random(GRID.shape) > 0.5,
                  rng.integers(-1000, 1000, GRID.shape).astype(np.int16), np.zeros(GRID.shape, np.uint8)):
        path = write_image(tmp_path / f"x{suffix}", array, GRID, compress=compress)
        written = array.astype(np.uint8) if array.dtype == bool else array
        assert image_file_problem(path, written) is None
        assert np.array_equal(read_image(path).array, written)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_a_cut_off_file_is_found_and_a_complete_one_with_other_voxels_is_not_refused(tmp_path, suffix):
    array = np.random.default_rng(1).random(GRID.shape).astype(np.float32)
    path = write_image(tmp_path / f"x{suffix}", array, GRID)
    whole = path.read_bytes()
    # A complete file whose voxels differ from the array (the trailer does not match): the full check
    # decides, and the file is complete, so it is not refused.
    assert image_file_problem(path, array[::-1].copy()) is None
    path.write_bytes(whole[: len(whole) - 100])
    assert image_file_problem(path, array) is not None


def test_a_short_write_that_does_not_raise_is_refused_and_the_old_output_stays(tmp_path, monkeypatch):
    old = np.full(GRID.shape, 0.25, np.float32)
    target = write_image(tmp_path / "p.nii.gz", old, GRID)
    real_write = sitk.WriteImage

    def short_write(image, name, compress):  # ITK's NIfTI writer on a full disk: prints, does not raise
        real_write(image, name, compress)
        Path(name).write_bytes(Path(name).read_bytes()[:3000])

    monkeypatch.setattr(sitk, "WriteImage", short_write)
    with pytest.raises(OutputError, match=r"Could not write .*p\.nii\.gz.*Free space in"):
        with StagedOutputs() as outputs:
            outputs.image(tmp_path / "p.nii.gz", np.random.default_rng(2).random(GRID.shape).astype(np.float32),
                          GRID)
    monkeypatch.setattr(sitk, "WriteImage", real_write)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.nii.gz"]
    assert np.array_equal(read_image(target).array, old)


def test_two_file_formats_are_refused_with_the_single_file_one_to_use(tmp_path):
    for suffix, single in ((".mhd", ".mha"), (".nhdr", ".nrrd"), (".MHD", ".mha")):
        with pytest.raises(OutputError, match=rf"Use \{single}"):
            write_image(tmp_path / f"x{suffix}", np.zeros(GRID.shape, np.float32), GRID)
    assert list(tmp_path.iterdir()) == []


def test_an_upper_case_name_is_written_in_its_format(tmp_path):
    path = write_image(tmp_path / "P.NII.GZ", np.ones(GRID.shape, np.float32), GRID)
    assert path.read_bytes()[:2] == b"\x1f\x8b" and read_image(path).array.min() == 1.0


# --- outputs never overwrite inputs ----------------------------------------

def test_outputs_may_replace_their_own_earlier_files(tmp_path):
    (tmp_path / "ct.nii.gz").write_bytes(b"ct")
    (tmp_path / "p.nii.gz").write_bytes(b"an old output")
    check_outputs(output_paths(("--out", tmp_path / "p.nii.gz", "image"), ("--mask-out", None, "image")),
                  input_paths(("--image", tmp_path / "ct.nii.gz"), ("--calibrator", None)))


def test_nothing_is_written_inside_a_sealed_input_folder(tmp_path):
    series = tmp_path / "series"
    series.mkdir()
    (series / "slice_001.dcm").write_bytes(b"DICM")
    with pytest.raises(OutputError, match=r"--out .* lies inside the input folder --image .*a DICOM series"):
        check_outputs(output_paths(("--out", series / "p.nii.gz", "image")),
                      input_paths(("--image", series), sealed={"--image": "a DICOM series"}))


def test_predict_refuses_an_output_inside_its_dicom_folder_before_reading_it(tmp_path, capsys):
    series = tmp_path / "series"
    series.mkdir()
    (series / "not_really.dcm").write_bytes(b"x")
    code = main(["predict", "--image", str(series), "--out", str(series / "p.nii.gz"), "--no-calibration"])
    assert code == 2 and "lies inside the input folder --image" in capsys.readouterr().err
    assert sorted(p.name for p in series.iterdir()) == ["not_really.dcm"]


# --- signals ----------------------------------------------------------------

def test_sigterm_unwinds_a_staged_write_and_restores_the_handler(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated) as caught:
        with signals_unwind():
            with StagedOutputs() as outputs:
                outputs.image(tmp_path / "p.nii.gz", np.zeros(GRID.shape, np.float32), GRID)
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(1000):  # the handler runs between bytecodes
                    pass
    assert caught.value.exit_code == 143 and not isinstance(caught.value, Exception)
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is before


# --- non-finite values ---------------------------------------------------------

def test_non_finite_reports_the_count_and_the_first_voxel():
    array = np.zeros((3, 4, 5), np.float32)
    array[2, 1, 0], array[1, 3, 4] = np.inf, np.nan
    assert non_finite(array) == (2, (1, 3, 4))
    assert non_finite(np.zeros(3, np.int16)) is None


def test_a_ct_with_nan_outside_its_field_of_view_is_patched_with_a_warning(tmp_path, capsys):
    ct = np.random.default_rng(5).normal(40, 20, GRID.shape).astype(np.float32)
    ct[:, :2, :] = np.nan  # a stripe outside the field of view
    sitk.WriteImage(GRID.apply_to(sitk.GetImageFromArray(ct)), str(tmp_path / "ct.nrrd"))
    bundle = identity_bundle(tmp_path / "bundle", spacing=GRID.spacing, patch=(8, 8, 8))
    assert main(["predict", "--image", str(tmp_path / "ct.nrrd"), "--bundle", str(bundle), "--no-calibration",
                 "--out", str(tmp_path / "p.nii.gz")]) == 0
    captured = capsys.readouterr()
    printed = captured.out + captured.err  # the terminal, wherever the warning goes
    stripe = 12 * 2 * 24
    assert f"warning: {tmp_path / 'ct.nrrd'} has {stripe} NaN or infinite voxel(s), the first at (z, y, x) = " \
           "(0, 0, 0)" in printed
    lowest = float(np.nanmin(ct))
    assert f"set to {lowest:g} HU" in printed
    provenance = json.loads((tmp_path / "p.provenance.json").read_text())
    assert any(f"{stripe} NaN or infinite" in warning for warning in provenance["warnings"])
    probability = read_image(tmp_path / "p.nii.gz").array
    # The identity member is sigmoid(CT): the patched voxels read as the lowest HU, not as NaN or 0.
    assert np.isfinite(probability).all()
    assert np.allclose(probability[:, :2, :], 1 / (1 + np.exp(-lowest)), atol=1e-6)


def test_a_finite_ct_is_passed_on_as_it_is():
    volume = Volume(np.zeros(GRID.shape, np.float32), GRID)
    assert ct_with_finite_values(volume) == (volume, None)


def test_a_calibrator_that_produces_nan_stops_the_run():
    class Broken:
        raters = 5

        def transform(self, p):
            return np.full(p.shape, np.nan, np.float32)

    raw = np.full(GRID.shape, 0.4, np.float32)
    with pytest.raises(InputError, match=r"calibrated probability holds \d+ NaN or infinite voxel\(s\), the first "
                                         r"at \(z, y, x\) = \(0, 0, 0\)"):
        run_case(Volume(None, GRID), raw=raw, calibrator=Broken())


# --- one naming rule for the files of a case -------------------------------------

def test_image_suffixes_are_matched_in_any_case():
    assert image_suffix("CT.NII.GZ") == ".nii.gz" and image_stem("Annotation_1.NRRD") == "annotation_1"
    assert is_nifti("IMAGE.NII") and not is_nifti("image.nrrd") and image_suffix(".nii.gz") is None
    assert image_suffix("notes.txt") is None


def test_a_case_finds_its_files_by_the_naming_rule_in_any_case(tmp_path):
    folder = tmp_path / "case_a"
    write_image(folder / "IMAGE.NII.GZ", np.zeros(GRID.shape, np.int16), GRID)
    for number in (1, 2):
        write_image(folder / f"Annotation_{number}.nrrd", np.zeros(GRID.shape, np.uint8), GRID)
    write_image(folder / "PROBABILITY.nii.gz", np.zeros(GRID.shape, np.float32), GRID)
    case = Case.from_folder(folder)
    assert case.image.name == "IMAGE.NII.GZ" and case.raters == 2
    assert case.file("probability.nii.gz").name == "PROBABILITY.nii.gz"


def test_a_case_without_a_ct_is_reported_by_a_cohort_run_not_dropped(tmp_path, capsys):
    write_cohort(tmp_path / "cohort", 2, raters=3, seed=4)
    broken = tmp_path / "cohort" / "case_001"
    (broken / "image.nii.gz").rename(broken / "image.png")
    cases = find_cases(tmp_path / "cohort")
    assert [case.name for case in cases] == ["case_000", "case_001"]
    assert cases[0].problem is None and "has no image file" in cases[1].problem
    code = main(["calibrate", "--cohort", str(tmp_path / "cohort"), "--out", str(tmp_path / "cal.json"),
                 "--bundle", str(Path(__file__).resolve().parents[1] / "Resources" / "DemoBundle")])
    printed = capsys.readouterr().out
    assert code == 1 and "Fitted on: 1 of 2 cases" in printed
    assert "case_001:" in printed and "has no image file" in printed


def test_a_demo_step_stopped_by_a_signal_stops_the_demo_with_the_same_code(monkeypatch, capsys):
    import TwinTrackCLI as cli
    from TwinTrackCLI import demo

    for code, expected in ((143, Terminated), (129, Terminated), (130, KeyboardInterrupt)):
        monkeypatch.setattr(cli, "main", lambda argv, code=code: code)
        with pytest.raises(expected) as caught:
            demo._step(["phantom", "--out", "x"])
        if expected is Terminated:
            assert caught.value.exit_code == code


def test_a_signal_during_the_renames_waits_until_every_output_is_published(tmp_path, monkeypatch):
    import TwinTrackLogic.io.outputs as outputs_module

    real_replace = os.replace
    calls = []

    def replace_then_signal(source, target):
        calls.append(target)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives between the first and the second rename
        real_replace(source, target)

    monkeypatch.setattr(outputs_module.os, "replace", replace_then_signal)
    with pytest.raises(Terminated):
        with signals_unwind():
            with StagedOutputs() as outputs:
                outputs.json(tmp_path / "a.json", {"a": 1})
                outputs.json(tmp_path / "b.json", {"b": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json"]
