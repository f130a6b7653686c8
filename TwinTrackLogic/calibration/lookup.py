"""Fast, exact evaluation of a piecewise-linear function of p in [0, 1].

The isotonic calibrator is piecewise linear through its knots. A binary
search per voxel (``np.interp``, scikit-learn's ``interp1d``) costs about
log2(knots) dependent steps per voxel. Here [0, 1] is cut into the fine bins
of :mod:`.binning` (cells) and each cell remembers how many knots lie before
it and where the (at most few) knots inside it are, so a voxel's segment is
found from its cell (a multiply or a bit shift), one table read and one
comparison per knot in its cell, and then the value with three table reads.
Knots fitted on statistics with the same layout lie one per cell at most,
since a bin's mean lies in the bin.

Comparisons are made against the knots rounded to float32 (the precision of
the maps), consistently with the cell of each knot, so the segment found is
exactly the one ``np.searchsorted`` would find on those float32 knots. The
tables are built on the first input of ``TABLE_MIN_VOXELS`` or more; a
smaller input (cross-validation scores thousands of small ones) uses that
``np.searchsorted`` directly, which finds the same segments.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .binning import ProbabilityBins

LOOKUP_BINS = 1 << 18  # the default statistics resolution, so fitted knots lie one per cell
MAX_KNOTS_PER_CELL = 8  # more than this (hand-made files only): fall back to a binary search
TABLE_MIN_VOXELS = 1 << 16  # below this, building the tables costs more than the binary search


class PiecewiseLinear:
    """f(p) = linear interpolation through (x, y); constant beyond the end knots.

    x: strictly increasing knots in [0, 1]; y: values at the knots. Evaluated
    in float32 on float32 input.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, layout: Optional[ProbabilityBins] = None) -> None:
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        self.layout = layout or ProbabilityBins(LOOKUP_BINS)
        self.cells = self.layout.size
        knots32 = x.astype(np.float32)
        # Segment s (0..n) holds p with exactly s knots <= p: s = 0 and s = n are
        # the flat ends; segment s in between runs from knot s-1 to knot s.
        n = x.size
        slope = np.zeros(n + 1)
        if n > 1:
            slope[1:n] = np.diff(y) / np.diff(x)
        self.base_x = np.concatenate([x[:1], x]).astype(np.float32)
        self.base_y = np.concatenate([y[:1], y]).astype(np.float32)
        self.slope = slope.astype(np.float32)
        self.knots32 = knots32
        self._tables_built = False
        self.thresholds: Optional[np.ndarray] = None

    def _build_tables(self) -> None:
        n, knots32 = self.knots32.size, self.knots32
        knot_cells = self.layout.index(knots32)
        self.knots_before = np.searchsorted(knot_cells, np.arange(self.cells), side="left")
        rank = np.arange(n) - self.knots_before[knot_cells]
        layers = int(rank.max()) + 1 if n else 0
        if layers > MAX_KNOTS_PER_CELL:
            self.thresholds = None
        else:
            thresholds = np.full((layers, self.cells), np.inf, dtype=np.float32)
            thresholds[rank, knot_cells] = knots32
            self.thresholds = thresholds
        self._tables_built = True

    def __call__(self, p: np.ndarray) -> np.ndarray:
        """f at every value of the 1-D float32 array ``p`` (float32, same length)."""
        p = np.asarray(p, dtype=np.float32)
        if not self._tables_built and p.size >= TABLE_MIN_VOXELS:
            self._build_tables()
        if self.thresholds is None:
            segment = np.searchsorted(self.knots32, p, side="right")
        else:
            cell = self.layout.index(p)
            segment = np.take(self.knots_before, cell)
            for layer in self.thresholds:
                segment += p >= np.take(layer, cell)
        # np.take is markedly faster than fancy indexing for these table reads.
        value = p - np.take(self.base_x, segment)
        value *= np.take(self.slope, segment)
        value += np.take(self.base_y, segment)
        return value
