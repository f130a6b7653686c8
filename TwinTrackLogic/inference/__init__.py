"""Model bundles and two-stage ensemble inference on onnxruntime.

Modules, one idea each: ``bundle`` (the manifest, its checks and hashes; ``bundle_nnunet`` for
nnU-Net-mode stages), ``resample`` (CT <-> working grids), ``normalisation``
(stage input intensities), ``sliding_window`` (Gaussian-weighted windows,
mirroring), ``network`` (a verified ONNX stage on onnxruntime), ``ensemble``
(localiser -> region -> members -> mean).
"""

from .ensemble import Ensemble, Prediction

__all__ = ["Ensemble", "Prediction"]
