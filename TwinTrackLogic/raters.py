"""Counting raters: the mean human response (MHR) from K binary rater masks."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .errors import InputError


def rater_counts(masks: Sequence[np.ndarray]) -> np.ndarray:
    """How many of the K rater masks mark each voxel (uint8, uint16 from 256 raters)."""
    if len(masks) == 0:
        raise InputError("No annotations were given; the MHR needs at least one rater mask.")
    counts = np.zeros(masks[0].shape, dtype=np.uint8 if len(masks) < 256 else np.uint16)
    for mask in masks:
        counts += mask.astype(bool)
    return counts


def mhr_from_masks(masks: Sequence[np.ndarray]) -> np.ndarray:
    """Mean human response: the fraction of the K rater masks that mark each voxel.

    Values are exactly in {0, 1/K, ..., 1} (float32). Memory: one uint8 count map.

    Examples
    --------
    >>> import numpy as np
    >>> masks = [np.array([1, 1, 0]), np.array([1, 0, 0]), np.array([1, 1, 1]), np.array([1, 0, 0])]
    >>> mhr_from_masks(masks).tolist()
    [1.0, 0.5, 0.25]
    """
    return rater_counts(masks).astype(np.float32) / np.float32(len(masks))


# --- case / cohort layout -------------------------------------------------
