"""DICOM objects out: the calibrated map as a Parametric Map, the agreement masks as a SEG,
a CT series from a volume (phantoms, tests, demos), and a DICOMweb client.

Needs the optional extra ``pip install "twintrack[dicom]"`` (highdicom, pydicom,
dicomweb-client); :func:`require` says so when it is missing. DICOM *input* is in the core
(:mod:`TwinTrackLogic.io.dicom_series`) and needs none of it.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import List

from ..errors import TwinTrackError

# What the writers were tested with (pyproject's `dicom` extra pins the same).
REQUIRED = {"highdicom": "0.28.2", "pydicom": "3.0.2"}


class DicomExtraMissing(TwinTrackError):
    """The optional DICOM packages are not installed."""


def require() -> None:
    """Refuse, with the command that fixes it, when the DICOM extra is not installed."""
    try:
        import highdicom  # noqa: F401
        import pydicom  # noqa: F401
    except ImportError as error:
        raise DicomExtraMissing(
            f"Writing DICOM needs the optional packages highdicom and pydicom ({error.name} is missing). "
            'Install them with: pip install "twintrack[dicom]"') from None


def _version_tuple(text: str):
    return tuple(int(part) for part in text.split(".")[:3] if part.isdigit())


def missing_packages() -> List[str]:
    """The pip requirements to install before writing DICOM (empty when ready), read from the
    installed distributions' metadata without importing them: for a host application (Slicer
    bundles an older highdicom) to ask the user's consent and ``pip install`` them."""
    importlib.invalidate_caches()  # a pip install a moment ago must count
    needed = []
    for name, version in REQUIRED.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            needed.append(f"{name}=={version}")
            continue
        if _version_tuple(installed) < _version_tuple(version):
            needed.append(f"{name}=={version}")
    return needed
