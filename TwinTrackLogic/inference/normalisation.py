"""Intensity normalisation of a stage's input, as stored in the bundle manifest.

Schemes (``normalisation.scheme``):

- ``ct``: clip to the stored ``clip`` = [low, high] (HU; nnU-Net's 0.5 and
  99.5 foreground percentiles) and z-score with the stored ``mean`` and ``std``
  (HU) of the clipped training foreground, as nnU-Net's CTNormalization.
- ``zscore``: z-score with this image's own mean and standard deviation.
- ``none``: pass the intensities through unchanged.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np


def normalise(array: np.ndarray, settings: Mapping) -> np.ndarray:
    """A float32 copy of ``array`` normalised per ``settings`` (validated by the bundle)."""
    scheme = settings["scheme"]
    values = np.array(array, dtype=np.float32)
    if scheme == "ct":
        low, high = settings["clip"]
        np.clip(values, low, high, out=values)
        values -= np.float32(settings["mean"])
        values /= np.float32(max(float(settings["std"]), 1e-8))
    elif scheme == "zscore":
        values -= np.float32(values.mean())
        values /= np.float32(max(float(values.std()), 1e-8))
    return values


def ct_statistics(foreground_hu: np.ndarray) -> dict:
    """The ``ct`` scheme's stored statistics from training foreground intensities (HU)."""
    low, high = np.percentile(foreground_hu, [0.5, 99.5])
    clipped = np.clip(foreground_hu.astype(np.float64), low, high)
    return {"scheme": "ct", "clip": [float(low), float(high)],
            "mean": float(clipped.mean()), "std": float(clipped.std())}
