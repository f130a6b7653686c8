"""Image I/O keeps geometry exactly, and the geometry check refuses every kind of mismatch."""

import numpy as np
import pytest
import SimpleITK as sitk

from TwinTrackLogic.errors import OutputError, GeometryMismatchError, InputError
from TwinTrackLogic.io import (Case, Geometry, check_geometry, find_cases, mhr_from_masks, read_geometry,
                               read_image, read_mask, write_image)

OBLIQUE = Geometry(
    size=(7, 6, 5), spacing=(0.8, 0.7, 2.5), origin=(-120.25, 33.5, -412.0),
    direction=tuple(np.array([[0.98480775, -0.17364818, 0.0],
                              [0.17101007, 0.96984631, 0.17364818],
                              [-0.03015369, -0.17101007, 0.98480775]]).ravel()),
)


def _ramp(geometry, dtype=np.float32):
    return np.arange(np.prod(geometry.shape), dtype=np.float64).reshape(geometry.shape).astype(dtype)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.uint8])
def test_round_trip_keeps_values_and_geometry(tmp_path, suffix, dtype):
    array = _ramp(OBLIQUE, dtype) % (100 if dtype == np.uint8 else 10_000)
    path = write_image(tmp_path / f"image{suffix}", array.astype(dtype), OBLIQUE)
    volume = read_image(path)
    assert volume.array.dtype == dtype
    assert np.array_equal(volume.array, array.astype(dtype))
    assert volume.geometry.size == OBLIQUE.size
    # NIfTI stores geometry as float32; NRRD and MHA keep it to full text precision.
    tolerance = 1e-4 if suffix.startswith(".nii") else 1e-9
    assert np.allclose(volume.geometry.spacing, OBLIQUE.spacing, atol=tolerance)
    assert np.allclose(volume.geometry.origin, OBLIQUE.origin, atol=tolerance * 1000)
    assert np.allclose(volume.geometry.direction, OBLIQUE.direction, atol=tolerance)
    assert volume.geometry.differences(OBLIQUE) == []


def test_physical_position_of_a_voxel_survives_the_round_trip(tmp_path):
    path = write_image(tmp_path / "image.nii.gz", _ramp(OBLIQUE), OBLIQUE)
    image = sitk.ReadImage(str(path))
    index = (6, 2, 4)
    expected = OBLIQUE.index_to_physical_matrix() @ np.array([*index, 1.0])
    assert np.allclose(image.TransformIndexToPhysicalPoint(index), expected[:3], atol=1e-3)


def test_reads_a_dicom_series_folder(tmp_path):
    geometry = Geometry((8, 6, 4), (0.75, 0.75, 3.0), (-50.0, -40.0, -300.0))
    array = (_ramp(geometry) - 100).astype(np.int16)
    image = geometry.apply_to(sitk.GetImageFromArray(array))
    folder = tmp_path / "dicom"
    folder.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for z in range(geometry.size[2]):
        slice_image = image[:, :, z]
        position = image.TransformIndexToPhysicalPoint((0, 0, z))
        for tag, value in [("0008|0060", "CT"), ("0020|000e", "1.2.826.0.1.3680043.2.1125.1"),
                           ("0020|0052", "1.2.826.0.1.3680043.2.1125.2"),
                           ("0020|0032", "\\".join(f"{v:.4f}" for v in position)),
                           ("0020|0037", "1\\0\\0\\0\\1\\0"), ("0020|0013", str(z + 1)),
                           ("0018|0050", "3.0")]:
            slice_image.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{z:03d}.dcm"))
        writer.Execute(slice_image)
    volume = read_image(folder)
    assert np.array_equal(volume.array, array)
    assert volume.geometry.differences(geometry) == []


@pytest.mark.parametrize("change, expected", [
    (dict(size=(7, 6, 4)), "size"),
    (dict(spacing=(0.8, 0.7, 3.0)), "spacing"),
    (dict(origin=(-120.25, 33.5, -410.0)), "origin"),
    (dict(direction=(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)), "direction"),
])
def test_geometry_check_names_the_file_and_the_mismatch(tmp_path, change, expected):
    other = Geometry(**{**OBLIQUE.__dict__, **change})
    path = write_image(tmp_path / "annotation_1.nii.gz", np.zeros(other.shape, np.uint8), other)
    with pytest.raises(GeometryMismatchError) as error:
        read_mask(path, OBLIQUE, reference_path=tmp_path / "image.nii.gz")
    message = str(error.value)
    assert "annotation_1.nii.gz" in message and "image.nii.gz" in message
    assert expected in message and "Resample" in message
    assert all(word not in message for word in {"size", "spacing", "origin", "direction"} - {expected})


def test_geometry_check_accepts_float32_rounding_only():
    nudged = Geometry(OBLIQUE.size, OBLIQUE.spacing, tuple(v + 1e-5 for v in OBLIQUE.origin), OBLIQUE.direction)
    check_geometry(OBLIQUE, nudged, "nudged.nii.gz")
    moved = Geometry(OBLIQUE.size, OBLIQUE.spacing, tuple(v + 0.01 for v in OBLIQUE.origin), OBLIQUE.direction)
    with pytest.raises(GeometryMismatchError):
        check_geometry(OBLIQUE, moved, "moved.nii.gz")


def test_mask_with_other_values_is_refused(tmp_path):
    labels = np.zeros(OBLIQUE.shape, np.uint8)
    labels[1, 1, 1] = 2
    path = write_image(tmp_path / "labels.nii.gz", labels, OBLIQUE)
    with pytest.raises(InputError, match=r"labels\.nii\.gz.*binary.*2"):
        read_mask(path, OBLIQUE)


@pytest.mark.parametrize("shape", [(5, 6), (2, 3, 4, 5)])
def test_non_3d_images_are_refused(tmp_path, shape):
    image = sitk.GetImageFromArray(np.zeros(shape, np.float32), isVector=False)
    sitk.WriteImage(image, str(tmp_path / "odd.nii.gz"))
    with pytest.raises(InputError, match=r"odd\.nii\.gz.*\dD image.*3D scalar"):
        read_image(tmp_path / "odd.nii.gz")


def test_not_an_image_and_missing_file(tmp_path):
    (tmp_path / "notes.nii.gz").write_text("this is not an image")
    with pytest.raises(InputError, match=r"notes\.nii\.gz could not be read as an image"):
        read_image(tmp_path / "notes.nii.gz")
    with pytest.raises(InputError, match="does not exist"):
        read_image(tmp_path / "missing.nii.gz")
    with pytest.raises(InputError, match="without a DICOM series"):
        read_image(tmp_path)


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    def failing_write(image, name, compress):
        with open(name, "wb") as handle:
            handle.write(b"half")
        raise RuntimeError("disk full")
    monkeypatch.setattr(sitk, "WriteImage", failing_write)
    # The writer's failure becomes an error for people, naming the file and its folder.
    with pytest.raises(OutputError, match=r"Could not write .*out\.nii\.gz.*disk full.*Free space in"):
        write_image(tmp_path / "out.nii.gz", np.zeros(OBLIQUE.shape, np.float32), OBLIQUE)
    assert list(tmp_path.iterdir()) == []


def test_mhr_counts_raters():
    masks = [np.array([1, 1, 0, 0], bool), np.array([1, 0, 0, 1], bool), np.array([1, 0, 0, 0], bool)]
    assert np.allclose(mhr_from_masks(masks), [1.0, 1 / 3, 0.0, 1 / 3])
    with pytest.raises(InputError):
        mhr_from_masks([])


def test_case_layout_sorts_annotations_numerically(tmp_path):
    geometry = Geometry((4, 4, 4), (1, 1, 1), (0, 0, 0))
    folder = tmp_path / "cohort" / "case_a"
    write_image(folder / "image.nii.gz", np.zeros(geometry.shape, np.int16), geometry)
    for number in (10, 2, 1, 3, 9, 4, 5, 8, 6, 7):
        write_image(folder / f"annotation_{number}.nii.gz", np.zeros(geometry.shape, np.uint8), geometry)
    write_image(folder / "pancreas.nii.gz", np.zeros(geometry.shape, np.uint8), geometry)
    case = Case.from_folder(folder)
    assert [p.name for p in case.annotations] == [f"annotation_{n}.nii.gz" for n in range(1, 11)]
    assert case.pancreas.name == "pancreas.nii.gz" and case.roi is None
    assert [c.name for c in find_cases(tmp_path / "cohort")] == ["case_a"]
    with pytest.raises(InputError, match="holds no case folders"):
        find_cases(folder)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_truncated_nifti_is_refused_not_zero_filled(tmp_path, suffix):
    # ITK itself would read these and fill the missing half with zeros.
    array = np.random.default_rng(0).random(OBLIQUE.shape).astype(np.float32)
    whole = write_image(tmp_path / f"whole{suffix}", array, OBLIQUE).read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    with pytest.raises(InputError, match=rf"cut{suffix.replace('.', '[.]')} is truncated or corrupted"):
        read_image(cut)
    assert np.array_equal(read_image(tmp_path / f"whole{suffix}").array, array)


def test_volume_over_the_memory_budget_is_refused_before_reading(tmp_path, monkeypatch):
    path = write_image(tmp_path / "ct.nii.gz", np.zeros(OBLIQUE.shape, np.int16), OBLIQUE)
    monkeypatch.setenv("TWINTRACK_MEMORY_BUDGET_MB", "0.001")
    with pytest.raises(InputError, match=r"ct\.nii\.gz is too large to process here.*GiB"):
        read_image(path)
    monkeypatch.setenv("TWINTRACK_MEMORY_BUDGET_MB", "100")
    assert read_image(path).array.shape == OBLIQUE.shape


def test_staged_outputs_appear_together_or_not_at_all(tmp_path):
    from TwinTrackLogic.io import StagedOutputs
    old = write_image(tmp_path / "prob.nii.gz", np.zeros(OBLIQUE.shape, np.float32), OBLIQUE)
    with pytest.raises(RuntimeError):
        with StagedOutputs() as outputs:
            outputs.image(tmp_path / "prob.nii.gz", np.ones(OBLIQUE.shape, np.float32), OBLIQUE)
            outputs.json(tmp_path / "report.json", {"a": 1})
            raise RuntimeError("cancelled half way")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prob.nii.gz"]
    assert read_image(old).array.max() == 0.0  # the earlier output is untouched
    with StagedOutputs() as outputs:
        outputs.image(tmp_path / "prob.nii.gz", np.ones(OBLIQUE.shape, np.float32), OBLIQUE)
        outputs.json(tmp_path / "report.json", {"a": 1})
        assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["prob.nii.gz"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prob.nii.gz", "report.json"]
    assert read_image(old).array.min() == 1.0


def test_outputs_get_the_usual_permissions(tmp_path):
    import os
    import stat
    umask = os.umask(0o022)
    try:
        path = write_image(tmp_path / "p.nii.gz", np.zeros(OBLIQUE.shape, np.float32), OBLIQUE)
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_read_geometry_reads_the_header_only(tmp_path):
    path = write_image(tmp_path / "image.mha", _ramp(OBLIQUE), OBLIQUE, compress=False)
    geometry = read_geometry(path)
    assert geometry == read_image(path).geometry
    path.write_bytes(path.read_bytes()[:-8])  # voxels cut short: reading them fails, the header does not
    with pytest.raises(InputError):
        read_image(path)
    assert read_geometry(path) == geometry
