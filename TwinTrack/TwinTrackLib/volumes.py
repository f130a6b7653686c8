"""MRML scalar volumes <-> the core's :class:`~TwinTrackLogic.io.Volume`.

Slicer places voxels with an IJK-to-RAS matrix; the core (SimpleITK) with
spacing, origin and direction in LPS. The two differ only by the sign of the
first two physical axes, so a volume goes through the core and comes back on
exactly the same physical points, whatever its direction (flipped, oblique)
or spacing. Arrays are (z, y, x) = (k, j, i) in both worlds.
"""

from __future__ import annotations

import numpy as np
import vtk
from slicer.util import arrayFromVolume, updateVolumeFromArray

from TwinTrackLogic import Geometry, InputError, Volume

# RAS = LPS_TO_RAS @ LPS (and its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def vtk_matrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    """A 4x4 numpy array as a vtkMatrix4x4."""
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def ijk_to_ras(geometry: Geometry) -> np.ndarray:
    """4x4 IJK-to-RAS matrix of a core geometry."""
    return LPS_TO_RAS @ geometry.index_to_physical_matrix()


def node_ijk_to_ras(node) -> np.ndarray:
    """4x4 IJK-to-RAS matrix of a volume node (its own, not its parent transforms')."""
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def geometry_from_node(node) -> Geometry:
    """The core geometry (LPS) of an MRML volume node's voxel grid."""
    image = node.GetImageData()
    if image is None:
        raise InputError(f"The volume '{node.GetName()}' holds no voxels. Load a CT volume first.")
    ijk_to_lps = LPS_TO_RAS @ node_ijk_to_ras(node)
    axes = ijk_to_lps[:3, :3]
    spacing = np.linalg.norm(axes, axis=0)
    direction = axes / spacing
    return Geometry(image.GetDimensions(), tuple(spacing), tuple(ijk_to_lps[:3, 3]),
                    tuple(direction.reshape(-1)))


def volume_from_node(node, dtype=None) -> Volume:
    """A copy of a scalar volume node's voxels with its geometry, for the core."""
    if node is None or not node.IsA("vtkMRMLScalarVolumeNode"):
        raise InputError("Select a scalar volume (a CT in Hounsfield units) as input.")
    if node.GetImageData() is not None and node.GetImageData().GetNumberOfScalarComponents() != 1:
        raise InputError(f"The volume '{node.GetName()}' has several components per voxel; "
                         "TwinTrack needs a single-channel CT.")
    geometry = geometry_from_node(node)
    array = np.array(arrayFromVolume(node), dtype=dtype, copy=True)
    return Volume(array, geometry)


def set_node_geometry(node, geometry: Geometry) -> None:
    """Place ``node``'s voxels on ``geometry`` (spacing, origin, direction)."""
    node.SetIJKToRASMatrix(vtk_matrix(ijk_to_ras(geometry)))


def update_node_from_array(node, array: np.ndarray, geometry: Geometry) -> None:
    """Replace a volume node's voxels with ``array`` (z, y, x) on ``geometry``."""
    if tuple(array.shape) != geometry.shape:
        raise ValueError(f"array shape {array.shape} does not match the grid {geometry.shape}")
    updateVolumeFromArray(node, array)
    set_node_geometry(node, geometry)


def add_scalar_volume(scene, name: str, array: np.ndarray, geometry: Geometry,
                      like=None, node_class: str = "vtkMRMLScalarVolumeNode"):
    """A new volume node with ``array`` on ``geometry``, under ``like``'s transform.

    Outputs share the input CT's grid, so they must also share any parent
    transform the CT is under to land on the same physical points.
    """
    node = scene.AddNewNodeByClass(node_class, name)
    update_node_from_array(node, array, geometry)
    if like is not None and like.GetTransformNodeID():
        node.SetAndObserveTransformNodeID(like.GetTransformNodeID())
    node.CreateDefaultDisplayNodes()
    return node


def add_volume(scene, name: str, volume: Volume, like=None):
    """Shortcut: a scalar volume node from a core :class:`Volume`."""
    return add_scalar_volume(scene, name, volume.array, volume.geometry, like=like)

