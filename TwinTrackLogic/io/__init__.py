"""Images in and out, geometry checks, and the case/cohort folder layout.

One idea per module:

- :mod:`.geometry`: the :class:`Geometry` of a voxel grid, :class:`Volume`, the one geometry check;
- :mod:`.images`: the one image reader (NIfTI, NRRD, MHA, DICOM series folders);
- :mod:`.nifti`: the NIfTI completeness check;
- :mod:`.budget`: the memory budget and the header-size check;
- :mod:`.outputs`: atomic outputs (:class:`StagedOutputs`, JSON);
- :mod:`.layout`: case and cohort folders.

Arrays are in SimpleITK's ``(z, y, x)`` order; geometry in ``(x, y, z)``, LPS mm.
"""

# The MHR lives in its own module (it is domain logic, not I/O); re-exported here for old imports.
from ..raters import mhr_from_masks, rater_counts
from .budget import WORKING_BYTES_PER_VOXEL, memory_budget_bytes
from .geometry import Geometry, PathLike, Volume, check_geometry, fmt
from .images import IMAGE_SUFFIXES, read_geometry, read_image, read_mask, read_on_grid, read_sitk
from .layout import Case, find_cases
from .outputs import StagedOutputs, write_bytes_atomic, write_image, write_json

__all__ = [
    "WORKING_BYTES_PER_VOXEL", "memory_budget_bytes", "Geometry", "PathLike", "Volume", "check_geometry",
    "fmt", "IMAGE_SUFFIXES", "read_geometry", "read_image", "read_mask", "read_on_grid", "read_sitk",
    "Case", "find_cases", "StagedOutputs", "write_bytes_atomic", "write_image", "write_json",
    "mhr_from_masks", "rater_counts",
]
