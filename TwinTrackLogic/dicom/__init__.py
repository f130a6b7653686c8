"""DICOM objects out: the calibrated map as a Parametric Map, the agreement masks as a SEG,
a CT series from a volume (phantoms, tests, demos), and a DICOMweb client.

Needs the optional extra ``pip install "twintrack[dicom]"`` (highdicom, pydicom,
dicomweb-client); :func:`require` says so when it is missing. DICOM *input* is in the core
(:mod:`TwinTrackLogic.io.dicom_series`) and needs none of it.
"""

from __future__ import annotations

from ..errors import TwinTrackError


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
