"""Histogram binning: the mean MHR per bin of p.

``bins`` (15) bins, equal-width (``strategy="uniform"``) or equal-mass
(``"quantile"``). Bin edges are moved to the nearest fine-bin edge at or
above, so the per-bin means are exact. An empty bin keeps p (its centre).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..errors import InputError
from .calibrators import Calibrator, Option, Provenance, refuse_options
from .fileformat import FileProblem
from .statistics import CalibrationStatistics

STRATEGIES = ("uniform", "quantile")


class HistogramBinningCalibrator(Calibrator):
    """Mean MHR per bin of p: edges[0] = 0 < ... < edges[-1] = 1, one value per bin."""

    method = "histogram"
    options = (Option("bins", int, 15, "number of bins over p"),
               Option("strategy", str, "uniform", "uniform: equal-width bins; quantile: equal voxel counts",
                      STRATEGIES))

    def __init__(self, edges: np.ndarray, values: np.ndarray, provenance: Optional[Provenance] = None) -> None:
        super().__init__(provenance)
        self.edges = np.asarray(edges, dtype=np.float64)
        self.values = np.asarray(values, dtype=np.float64)
        self._inner_edges32 = self.edges[1:-1].astype(np.float32)
        self._values32 = self.values.astype(np.float32)

    @classmethod
    def fit(cls, statistics: CalibrationStatistics, provenance: Optional[Provenance] = None, bins: int = 15,
            strategy: str = "uniform", **options: Any) -> "HistogramBinningCalibrator":
        refuse_options(cls, options)
        lower_edges = statistics.layout.lower_edges()
        fine = lower_edges.size
        bins = int(bins)
        if not 1 <= bins <= 10_000:
            raise InputError(f"Histogram binning needs 1 to 10000 bins, not {bins}.")
        # Edges at fine-bin boundaries (fine-bin numbers): per-bin sums are then exact.
        if strategy == "uniform":
            inner = np.searchsorted(lower_edges, np.arange(1, bins) / bins, side="left")
        elif strategy == "quantile":
            cumulative = np.cumsum(statistics.counts)
            targets = cumulative[-1] * np.arange(1, bins) / bins
            inner = np.searchsorted(cumulative, targets, side="left") + 1
        else:
            raise InputError(f"Unknown histogram strategy {strategy!r}; use 'uniform' or 'quantile'.")
        boundaries = np.r_[0, np.clip(inner, 1, fine - 1), fine]
        edges = np.r_[lower_edges, 1.0][boundaries]
        # Unreachable fine bins share an edge with their neighbour: keep one of each edge.
        keep = np.r_[True, np.diff(edges) > 0]
        boundaries, edges = boundaries[keep], edges[keep]
        if edges[-1] != 1.0:
            boundaries, edges = np.r_[boundaries[:-1], fine], np.r_[edges[:-1], 1.0]
        coarse = np.searchsorted(boundaries[1:-1], np.arange(fine), side="right")
        count = np.bincount(coarse, weights=statistics.counts, minlength=boundaries.size - 1)
        mhr = np.bincount(coarse, weights=statistics.sum_mhr, minlength=boundaries.size - 1)
        centres = (edges[:-1] + edges[1:]) / 2
        # An empty bin has no evidence: leave p unchanged there (its centre).
        values = np.where(count > 0, mhr / np.maximum(count, 1), centres)
        return cls(edges, np.clip(values, 0.0, 1.0), provenance)

    def _transform_chunk(self, p: np.ndarray) -> np.ndarray:
        return self._values32[np.searchsorted(self._inner_edges32, p, side="right")]

    def parameters(self) -> dict:
        return {"edges": self.edges.tolist(), "values": self.values.tolist()}

    @classmethod
    def _from_parameters(cls, parameters: dict, problem: FileProblem,
                         provenance: Provenance) -> "HistogramBinningCalibrator":
        edge_list = problem.numbers(problem.key(parameters, "edges", "parameters"), "parameters.edges",
                                    0.0, 1.0, min_length=2)
        values = problem.numbers(problem.key(parameters, "values", "parameters"), "parameters.values", 0.0, 1.0)
        if len(values) != len(edge_list) - 1:
            raise problem.error(f"{len(edge_list)} edges need {len(edge_list) - 1} values, not {len(values)}")
        edges = np.asarray(edge_list, dtype=np.float64)
        if edges[0] != 0.0 or edges[-1] != 1.0 or np.any(np.diff(edges) <= 0):
            raise problem.error("'parameters.edges' must increase strictly from 0 to 1")
        return cls(edges, np.asarray(values, dtype=np.float64), provenance)

    def describe(self) -> str:
        return f"histogram binning calibrator with {self.values.size} bins"
