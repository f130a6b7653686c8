"""TwinTrack core: calibrate a segmentation ensemble's tumour probability to the
mean human response (MHR), the fraction of expert annotators who label a voxel tumour.

This package never imports Slicer or Qt; the Slicer module and the command line
both build on it.

Array axis order everywhere is SimpleITK's: ``(z, y, x)``. Geometry (size,
spacing, origin, direction) is in SimpleITK's ``(x, y, z)`` order, in LPS
millimetres.
"""

__version__ = "0.1.0"
