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

from TwinTrackLogic.io import Volume, write_image
from TwinTrackLogic.phantom import PhantomCase, generate_case

from .volumes import add_volume

SAMPLE_NAME = "TwinTrackPhantom"
CATEGORY = "TwinTrack"
PHANTOM_CASE_INDEX = 1
PHANTOM_RATERS = 5
PHANTOM_SEED = 0
# Abdominal soft-tissue window (HU).
CT_WINDOW, CT_LEVEL = 400.0, 40.0


def phantom_case(index: int = PHANTOM_CASE_INDEX) -> PhantomCase:
    return generate_case(index, raters=PHANTOM_RATERS, seed=PHANTOM_SEED, size="small")


def add_ct(scene, case: PhantomCase, name: str = SAMPLE_NAME):
    """The phantom's CT as a scalar volume with an abdominal window."""
    return add_ct_volume(scene, Volume(case.image, case.geometry), name)


def add_ct_volume(scene, volume: Volume, name: str):
    """A CT (HU) as a scalar volume with an abdominal soft-tissue window."""
    node = add_volume(scene, name, volume)
    display = node.GetDisplayNode()
    display.AutoWindowLevelOff()
    display.SetWindowLevel(CT_WINDOW, CT_LEVEL)
    return node


def load_demo_phantom(scene):
    """Generate the demo phantom CT and add it to ``scene``; returns the node."""
    return add_ct(scene, phantom_case())


def write_demo_phantom(path) -> Path:
    """Write the demo phantom CT (NRRD or NIfTI by suffix), atomically."""
    case = phantom_case()
    return write_image(Path(path), case.image, case.geometry)
