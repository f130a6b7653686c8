"""TwinTrack core: calibrate a segmentation ensemble's tumour probability to the
mean human response (MHR), the fraction of expert annotators who label a voxel tumour.

This package is the bottom layer: it never imports Slicer, Qt, VTK or a front end
(the command line ``TwinTrackCLI``, the Slicer module, the browser review
``TwinTrackWeb``, the nnU-Net importer ``TwinTrackNNUNet`` are all built on it).

Read the subpackages in the order the data flows:

- ``io``: images and geometry in and out, verified outputs, the case/cohort layout;
- ``phantom``: synthetic multi-rater CT cohorts (tests, demo, sample data);
- ``inference``: model bundles and the two-stage ONNX Runtime ensemble;
- ``calibration``: calibrators, their statistics, cross-validation, the file format;
- ``pipeline``: ``run_case``, the one path from a CT to calibrated outputs;
- ``review``: agreement levels, the volume curve, read-outs, colour maps, previews;
- ``evaluation``: the challenge's metrics and the MHR metrics, the cohort report;
- ``cohort``: many cases, in-process or on Dask; ``worker``: long work off the UI;
- ``dicom``: Parametric Map and SEG out, DICOMweb.

What ``from TwinTrackLogic import ...`` offers is listed in ``__all__``; the names load
lazily, so ``import TwinTrackLogic`` stays cheap (the worker child, ``twintrack --help``).

Array axis order everywhere is SimpleITK's: ``(z, y, x)``. Geometry (size,
spacing, origin, direction) is in SimpleITK's ``(x, y, z)`` order, in LPS
millimetres.
"""

from importlib import import_module
from typing import Any, Dict

__version__ = "0.1.0"

# The public surface: name -> the module that defines it (relative to this package).
_PUBLIC: Dict[str, str] = {
    "run_case": "pipeline", "CaseResult": "pipeline", "resolve_calibrator": "pipeline",
    "Volume": "io", "Geometry": "io", "read_image": "io", "write_image": "io", "Case": "io", "find_cases": "io",
    "mhr_from_masks": "io",
    "Bundle": "inference.bundle", "load_bundle": "inference.bundle", "default_bundle_dir": "inference.bundle",
    "Ensemble": "inference",
    "load_calibrator": "calibration", "fit_cohort": "calibration",
    "AgreementCurve": "review.agreement",
    "InputError": "errors", "TwinTrackError": "errors", "Cancelled": "errors",
    "CancelToken": "progress",
}
__all__ = sorted(_PUBLIC) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'TwinTrackLogic' has no attribute {name!r}")
    value = getattr(import_module(f".{_PUBLIC[name]}", __name__), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
