"""The demo phantom as sample data: one click, a CT in the scene.

There is no download server: the phantom CT is generated locally by
TwinTrackLogic.phantom (about half a second for the small size), which is
deterministic, so every user gets the same volume. The Sample Data button
generates it straight into the scene; for Sample Data's file-based API the
module also writes it once into Slicer's cache (:func:`write_demo_phantom`). Case 1 has a flipped
(LPS-axis-reversed) direction, so the demo also exercises the RAS/LPS
conversion.
"""

from __future__ import annotations

from pathlib import Path

# Imported lazily, inside the functions: Slicer imports this module at every startup to register
# the sample, and SimpleITK plus scipy.ndimage would cost it about 0.4 s.

SAMPLE_NAME = "TwinTrackPhantom"
CATEGORY = "TwinTrack"
PHANTOM_CASE_INDEX = 1
PHANTOM_RATERS = 5
PHANTOM_SEED = 0
# Abdominal soft-tissue window (HU).
CT_WINDOW, CT_LEVEL = 400.0, 40.0


def phantom_case(index: int = PHANTOM_CASE_INDEX):
    """The demo case (a :class:`~TwinTrackLogic.phantom.PhantomCase`)."""
    from TwinTrackLogic.phantom import generate_case

    return generate_case(index, raters=PHANTOM_RATERS, seed=PHANTOM_SEED, size="small")


def add_ct(scene, case, name: str = SAMPLE_NAME):
    """The phantom's CT as a scalar volume with an abdominal window."""
    from TwinTrackLogic import Volume

    return add_ct_volume(scene, Volume(case.image, case.geometry), name)


def add_ct_volume(scene, volume, name: str):
    """A CT (a core Volume in HU) as a scalar volume with an abdominal soft-tissue window."""
    from .volumes import add_volume

    node = add_volume(scene, name, volume)
    display = node.GetDisplayNode()
    display.AutoWindowLevelOff()
    display.SetWindowLevel(CT_WINDOW, CT_LEVEL)
    return node


def add_vessels(scene, case, like=None, name: str = f"{SAMPLE_NAME} vessels"):
    """The phantom's vessels as a labelmap volume with the CURVAS labels (1 portal vein ... 5 SMA),
    as a user loading its ``vessels.nii.gz`` gets it; under ``like``'s transform."""
    from .volumes import add_scalar_volume

    return add_scalar_volume(scene, name, case.vessels, case.geometry, like=like,
                             node_class="vtkMRMLLabelMapVolumeNode")


def load_demo_phantom(scene):
    """Generate the demo phantom CT and add it to ``scene``; returns the node."""
    return add_ct(scene, phantom_case())


def write_demo_phantom(path) -> Path:
    """Write the demo phantom CT (NRRD or NIfTI by suffix), atomically."""
    from TwinTrackLogic import write_image

    case = phantom_case()
    return write_image(Path(path), case.image, case.geometry)
