"""Two-stage ensemble inference on onnxruntime.

Modules, one idea each: ``resample`` (CT <-> working grids), ``normalisation``
(stage input intensities), ``sliding_window`` (Gaussian-weighted windows,
mirroring), ``network`` (a verified ONNX stage on onnxruntime), ``ensemble``
(localiser -> region -> members -> mean).
"""

from .ensemble import Ensemble, Prediction

__all__ = ["Ensemble", "Prediction"]
