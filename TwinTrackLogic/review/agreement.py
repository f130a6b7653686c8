"""Volume against agreement level, from one cumulative histogram.

What the threshold slider reads out: for a level t, the volume (mL) where the
calibrated probability is at least t, i.e. where at least a fraction t of the
annotators are expected to label tumour. The histogram is computed once per
result; every read-out after that is a lookup, so a slider never recomputes
anything heavy.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

DEFAULT_BINS = 1000  # levels are exact at multiples of 1/1000 (0.1 % steps)


class AgreementCurve:
    """Volume at or above each agreement level of a probability map in [0, 1].

    probability: array of any shape, values in [0, 1]; voxel_volume_ml: mL per
    voxel; mask: optional bool array restricting the voxels counted.

    Examples
    --------
    >>> import numpy as np
    >>> curve = AgreementCurve(np.array([0.1, 0.5, 0.6, 0.9], np.float32), voxel_volume_ml=0.5)
    >>> curve.volume_ml(0.5)  # three voxels at p >= 0.5, 0.5 mL each
    1.5
    >>> curve.volume_ml(0.95)
    0.0
    """

    def __init__(self, probability: np.ndarray, voxel_volume_ml: float,
                 mask: Optional[np.ndarray] = None, bins: int = DEFAULT_BINS) -> None:
        values = probability[mask] if mask is not None else probability
        self.bins = int(bins)
        self.voxel_volume_ml = float(voxel_volume_ml)
        self.edges = np.linspace(0.0, 1.0, self.bins + 1)
        counts = np.zeros(self.bins + 1, dtype=np.int64)
        sums = 0.0
        # Chunked so a full-size map never needs a second full-size temporary.
        flat = values.reshape(-1)
        for start in range(0, flat.size, 1 << 22):
            chunk = flat[start:start + (1 << 22)]
            index = np.floor(chunk.astype(np.float64) * self.bins).astype(np.int64)
            counts += np.bincount(np.clip(index, 0, self.bins), minlength=self.bins + 1)
            sums += float(chunk.sum(dtype=np.float64))
        # Bin k holds k/bins <= p < (k+1)/bins (bin `bins` holds p == 1), so the voxels at or
        # above edge k are those in bins k..bins. Exact for float32 maps: no float32 value lies
        # close enough to k/bins for the float64 product to round across the edge.
        self.voxels_at_or_above = np.cumsum(counts[::-1])[::-1]
        self.expected_volume_ml = sums * self.voxel_volume_ml

    def _edge(self, level: float) -> int:
        """Index of the first edge at or above ``level``."""
        return int(np.clip(np.ceil(float(level) * self.bins - 1e-9), 0, self.bins))

    def volume_ml(self, level: float) -> float:
        """Volume (mL) where p >= level (exact when level is a multiple of 1/bins)."""
        return float(self.voxels_at_or_above[self._edge(level)]) * self.voxel_volume_ml

    def band_volume_ml(self, low: float, high: float) -> float:
        """Volume (mL) where low <= p < high: the ambiguous band between two levels."""
        return max(self.volume_ml(low) - self.volume_ml(high), 0.0)

    def curve(self, levels: Optional[np.ndarray] = None):
        """(levels, volumes in mL) for plotting; 101 levels (0 %, 1 %, ... 100 %) by default."""
        levels = np.linspace(0.0, 1.0, 101) if levels is None else np.asarray(levels, dtype=float)
        return levels, np.array([self.volume_ml(level) for level in levels])
