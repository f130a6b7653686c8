"""Model bundles and two-stage ensemble inference on onnxruntime.

Modules, one idea each: ``bundle`` (the manifest, its checks and hashes; ``bundle_nnunet`` for
nnU-Net-mode stages), ``resample`` (CT <-> working grids), ``normalisation``
(stage input intensities), ``sliding_window`` (Gaussian-weighted windows,
mirroring), ``network`` (a verified ONNX stage on onnxruntime), ``ensemble``
(localiser -> region -> members -> mean).

Reading a bundle (``inference.bundle``) needs no ONNX Runtime: the Slicer module checks a bundle
before onnxruntime is installed, so this package loads ``ensemble`` (and onnxruntime) only when
``Ensemble`` or ``Prediction`` is first asked for.
"""

from importlib import import_module
from typing import Any

__all__ = ["Ensemble", "Prediction"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'TwinTrackLogic.inference' has no attribute {name!r}")
    return getattr(import_module(".ensemble", __name__), name)
