"""MRML volume <-> core Volume: the same physical points, whatever the grid."""

import numpy as np
import pytest
import SimpleITK as sitk

from scene_fixtures import mrml  # noqa: F401  (fixture)

from TwinTrackLib import volumes  # noqa: E402
from TwinTrackLogic.errors import InputError
from TwinTrackLogic.io import Geometry, Volume, write_image


def _rotation(degrees_z: float, degrees_x: float) -> np.ndarray:
    z, x = np.deg2rad(degrees_z), np.deg2rad(degrees_x)
    rz = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
    return rz @ rx


GRIDS = {
    "identity": Geometry((9, 7, 5), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)),
    "flipped-anisotropic": Geometry((9, 7, 5), (0.6, 0.9, 3.5), (120.5, 80.25, -300.0),
                                    (-1, 0, 0, 0, -1, 0, 0, 0, 1)),
    "flipped-z": Geometry((9, 7, 5), (0.8, 0.8, 2.5), (-10.0, 5.0, 40.0), (1, 0, 0, 0, 1, 0, 0, 0, -1)),
    "oblique": Geometry((9, 7, 5), (0.7, 1.3, 3.1), (10.0, -20.0, 30.0),
                        tuple(_rotation(25.0, -12.0).reshape(-1))),
    "oblique-flipped": Geometry((9, 7, 5), (2.6, 2.6, 4.0), (-124.4, 145.4, -491.7),
                                tuple((_rotation(-40.0, 8.0) @ np.diag([-1, 1, -1])).reshape(-1))),
}


def _ramp(geometry: Geometry) -> np.ndarray:
    return np.arange(np.prod(geometry.shape), dtype=np.int16).reshape(geometry.shape)


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_round_trip_keeps_voxels_and_grid(mrml, name):
    geometry = GRIDS[name]
    array = _ramp(geometry)
    node = volumes.add_volume(mrml.scene, name, Volume(array, geometry))
    back = volumes.volume_from_node(node)
    assert back.geometry.differences(geometry) == []
    assert np.array_equal(back.array, array)


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_every_voxel_lands_on_the_same_physical_point(mrml, name):
    """Slicer's IJK-to-RAS equals SimpleITK's index-to-LPS with R, A negated."""
    geometry = GRIDS[name]
    node = volumes.add_volume(mrml.scene, name, Volume(_ramp(geometry), geometry))
    image = geometry.apply_to(sitk.Image(*geometry.size, sitk.sitkInt16))
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    for index in [(0, 0, 0), (8, 0, 0), (0, 6, 0), (0, 0, 4), (8, 6, 4), (3, 2, 1)]:
        ras = matrix.MultiplyPoint((*index, 1.0))[:3]
        lps = image.TransformIndexToPhysicalPoint(index)
        assert np.allclose(ras, (-lps[0], -lps[1], lps[2]), atol=1e-9), index


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_a_file_loaded_by_slicers_reader_matches_the_core_reader(mrml, tmp_path, suffix):
    """Slicer's own volume reader (the archetype storage node) and the core's
    SimpleITK reader agree on voxels and physical grid for an oblique, flipped,
    anisotropic file."""
    geometry = GRIDS["oblique-flipped"]
    array = _ramp(geometry)
    path = write_image(tmp_path / f"ct{suffix}", array, geometry)
    node = mrml.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "loaded")
    storage = mrml.scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(node)
    loaded = volumes.volume_from_node(node)
    assert loaded.geometry.differences(geometry) == []
    assert np.array_equal(loaded.array, array)


def test_outputs_follow_the_ct_parent_transform(mrml):
    geometry = GRIDS["oblique"]
    ct = volumes.add_volume(mrml.scene, "ct", Volume(_ramp(geometry), geometry))
    transform = mrml.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    ct.SetAndObserveTransformNodeID(transform.GetID())
    output = volumes.add_scalar_volume(mrml.scene, "p", np.zeros(geometry.shape, np.float32), geometry, like=ct)
    assert output.GetTransformNodeID() == transform.GetID()


def test_non_scalar_input_is_refused_with_a_message(mrml):
    label = mrml.scene.AddNewNodeByClass("vtkMRMLModelNode", "not a volume")
    with pytest.raises(InputError, match="scalar volume"):
        volumes.volume_from_node(label)
    with pytest.raises(InputError, match="scalar volume"):
        volumes.volume_from_node(None)
    empty = mrml.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(InputError, match="holds no voxels"):
        volumes.volume_from_node(empty)
