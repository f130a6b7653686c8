"""Calibrators: map an ensemble's tumour probability p to the expected MHR.

All methods share one small interface: ``fit_calibrator(statistics, method)``
fits from :class:`~.statistics.CalibrationStatistics`, ``transform(p)`` maps a
probability map of any shape to calibrated float32 values in [0, 1] (in
chunks: the output is the only full-size allocation), and ``to_dict`` /
``from_dict`` / ``save`` / :func:`load_calibrator` go to and from the JSON file
described in :mod:`.fileformat`.

Methods (``METHODS``):

- ``isotonic`` (default, the TwinTrack paper's choice): weighted isotonic
  regression (``scipy.optimize.isotonic_regression``, pool adjacent violators)
  on the fine histogram's bins, each bin placed at its real mean p and
  weighted by its voxel count. That is the exact isotonic fit of the voxels
  after pooling each bin. The result is *piecewise linear* between the knots
  and flat beyond the end knots, like scikit-learn's IsotonicRegression, which
  interpolates linearly between the unique x: a step function would jump at
  arbitrary points inside the steep parts of the fit and bias the values there
  by up to half a step. Knots inside a constant block are dropped.
- ``histogram``: histogram binning, mean MHR per bin of p; ``bins`` (15) bins,
  equal-width (``strategy="uniform"``) or equal-mass (``"quantile"``). Bin
  edges are moved to the nearest fine-bin edge at or above, so the per-bin
  means are exact.
- ``platt``: sigmoid(a logit(p) + b); ``temperature``: sigmoid(logit(p) / T);
  ``beta`` (Kull et al. 2017): sigmoid(a ln p - b ln(1 - p) + c), a, b >= 0.
  These are fitted by weighted cross-entropy with the MHR as soft target on
  the fine histogram's bins (bin mean p, bin mean MHR, weight = voxel count)
  rather than on every voxel: that keeps fitting streaming and constant in
  memory, and with bins 3.8e-6 wide it differs from the per-voxel fit only by
  the spread of p inside a bin.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Dict, Optional, Type

import numpy as np
from scipy import optimize
from scipy.special import expit

from .. import __version__
from ..errors import InputError
from ..io import write_json
from .fileformat import CALIBRATOR_FORMAT, CALIBRATOR_VERSION, FileProblem, check_structure, read_json
from .lookup import PiecewiseLinear
from .statistics import CalibrationStatistics, _check_unit_interval

# Small enough that a chunk's temporaries stay in the CPU cache (measured fastest).
TRANSFORM_CHUNK_VOXELS = 1 << 16
LOGIT_EPS = 1e-6  # p is clipped to [eps, 1 - eps] before a logit or log (float32 resolves 1 - 1e-6)


class Calibrator:
    """Base class: provenance, chunked transform, JSON. Subclasses set ``method``."""

    method = ""

    def __init__(self) -> None:
        self.raters = 0  # raters per case of the fitting data (0: unknown)
        self.cases = 0
        self.voxels = 0
        self.region = ""
        self.probability_source = ""
        self.software_version = __version__
        self.created = ""

    # --- applying -------------------------------------------------------
    def transform(self, p: np.ndarray, source: Optional[str] = None) -> np.ndarray:
        """Calibrated values (float32, same shape as ``p``, in [0, 1]).

        p: tumour probability in [0, 1], any shape. Processed in chunks of 65,536
        voxels, so the output is the only full-size allocation (a non-contiguous
        input is copied once first).
        """
        p = np.asarray(p)
        if p.dtype.kind not in "fiu":
            raise InputError(f"{source or 'The probability map'} holds {p.dtype} values; it must be numeric.")
        calibrated = np.empty(p.shape, dtype=np.float32)
        flat_in = np.ascontiguousarray(p).reshape(-1)
        flat_out = calibrated.reshape(-1)
        for start in range(0, flat_in.size, TRANSFORM_CHUNK_VOXELS):
            chunk = flat_in[start:start + TRANSFORM_CHUNK_VOXELS]
            _check_unit_interval(chunk, "the probability", source or "the probability map")
            values = self._transform_chunk(chunk.astype(np.float32, copy=False))
            np.minimum(np.maximum(values, 0.0, out=values), 1.0,
                       out=flat_out[start:start + TRANSFORM_CHUNK_VOXELS])
        return calibrated

    __call__ = transform

    def _transform_chunk(self, p: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # --- file -------------------------------------------------------------
    def parameters(self) -> dict:
        raise NotImplementedError

    @classmethod
    def _from_parameters(cls, parameters: dict, problem: FileProblem) -> "Calibrator":
        raise NotImplementedError

    def to_dict(self) -> dict:
        return {
            "format": CALIBRATOR_FORMAT,
            "version": CALIBRATOR_VERSION,
            "method": self.method,
            "parameters": self.parameters(),
            "fitting": {
                "region": self.region,
                "cases": self.cases,
                "voxels": self.voxels,
                "raters": self.raters,
                "probability_source": self.probability_source,
            },
            "software_version": self.software_version,
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, data: dict, source=None) -> "Calibrator":
        """Rebuild a calibrator from :meth:`to_dict`'s output, checking every field.

        source: the file name (or other origin) named in error messages.
        """
        problem = FileProblem(source)
        if problem.key(data, "format") != CALIBRATOR_FORMAT:
            raise problem.error(f"'format' is {data['format']!r}, not {CALIBRATOR_FORMAT!r}")
        version = problem.key(data, "version")
        if version != CALIBRATOR_VERSION or isinstance(version, bool):
            raise problem.error(f"it has version {version!r}; this TwinTrack ({__version__}) reads "
                                f"version {CALIBRATOR_VERSION}. Update TwinTrack or refit the calibrator")
        check_structure(data, source)
        method = problem.key(data, "method")
        if not isinstance(method, str) or method not in METHODS:
            raise problem.error(f"unknown method {method!r} (known: {', '.join(METHODS)})")
        if cls is not Calibrator and method != cls.method:
            raise problem.error(f"it holds a {method} calibrator, not {cls.method}")
        parameters = problem.key(data, "parameters")
        if not isinstance(parameters, dict):
            raise problem.error("'parameters' must be a JSON object")
        calibrator = METHODS[method]._from_parameters(parameters, problem)
        fitting = problem.key(data, "fitting")
        calibrator.region = problem.string(problem.key(fitting, "region", "fitting"), "fitting.region")
        calibrator.cases = problem.integer(problem.key(fitting, "cases", "fitting"), "fitting.cases")
        calibrator.voxels = problem.integer(problem.key(fitting, "voxels", "fitting"), "fitting.voxels")
        calibrator.raters = problem.integer(problem.key(fitting, "raters", "fitting"), "fitting.raters")
        calibrator.probability_source = problem.string(
            problem.key(fitting, "probability_source", "fitting"), "fitting.probability_source")
        calibrator.software_version = problem.string(problem.key(data, "software_version"),
                                                     "software_version", 100)
        calibrator.created = problem.string(problem.key(data, "created"), "created", 100)
        return calibrator

    def save(self, path) -> None:
        """Write the calibrator JSON to ``path`` atomically."""
        write_json(path, self.to_dict())

    def describe(self) -> str:
        return f"{self.method} calibrator"


class IsotonicCalibrator(Calibrator):
    """Monotone, piecewise linear through knots (x, y); flat beyond the end knots."""

    method = "isotonic"

    def __init__(self, x: np.ndarray, y: np.ndarray, layout=None) -> None:
        super().__init__()
        self.x = np.asarray(x, dtype=np.float64)
        self.y = np.asarray(y, dtype=np.float64)
        self._lookup = PiecewiseLinear(self.x, self.y, layout)

    @classmethod
    def fit(cls, statistics: CalibrationStatistics) -> "IsotonicCalibrator":
        mean_p, mean_mhr, counts = statistics.nonempty()
        fitted = optimize.isotonic_regression(mean_mhr, weights=counts.astype(np.float64), increasing=True).x
        fitted = np.clip(fitted, 0.0, 1.0)
        # Inside a constant block only the block's end knots change the interpolant.
        same_as_previous = np.r_[False, fitted[1:] == fitted[:-1]]
        same_as_next = np.r_[fitted[:-1] == fitted[1:], False]
        keep = ~(same_as_previous & same_as_next)
        return cls(mean_p[keep], fitted[keep], statistics.layout)

    def _transform_chunk(self, p: np.ndarray) -> np.ndarray:
        return self._lookup(p)

    def parameters(self) -> dict:
        return {"x": self.x.tolist(), "y": self.y.tolist()}

    @classmethod
    def _from_parameters(cls, parameters: dict, problem: FileProblem) -> "IsotonicCalibrator":
        x = problem.numbers(problem.key(parameters, "x", "parameters"), "parameters.x", 0.0, 1.0)
        y = problem.numbers(problem.key(parameters, "y", "parameters"), "parameters.y", 0.0, 1.0)
        if len(x) != len(y):
            raise problem.error(f"'parameters.x' has {len(x)} knots but 'parameters.y' has {len(y)}")
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if np.any(np.diff(x) <= 0):
            raise problem.error("the knots 'parameters.x' are not strictly increasing")
        if np.any(np.diff(y) < 0):
            raise problem.error("the values 'parameters.y' decrease somewhere, so the calibrator is not monotone")
        return cls(x, y)

    def describe(self) -> str:
        return f"isotonic calibrator with {self.x.size} knots"


class HistogramBinningCalibrator(Calibrator):
    """Mean MHR per bin of p: edges[0] = 0 < ... < edges[-1] = 1, one value per bin."""

    method = "histogram"

    def __init__(self, edges: np.ndarray, values: np.ndarray) -> None:
        super().__init__()
        self.edges = np.asarray(edges, dtype=np.float64)
        self.values = np.asarray(values, dtype=np.float64)
        self._inner_edges32 = self.edges[1:-1].astype(np.float32)
        self._values32 = self.values.astype(np.float32)

    @classmethod
    def fit(cls, statistics: CalibrationStatistics, bins: int = 15,
            strategy: str = "uniform") -> "HistogramBinningCalibrator":
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
        return cls(edges, np.clip(values, 0.0, 1.0))

    def _transform_chunk(self, p: np.ndarray) -> np.ndarray:
        return self._values32[np.searchsorted(self._inner_edges32, p, side="right")]

    def parameters(self) -> dict:
        return {"edges": self.edges.tolist(), "values": self.values.tolist()}

    @classmethod
    def _from_parameters(cls, parameters: dict, problem: FileProblem) -> "HistogramBinningCalibrator":
        edges = problem.numbers(problem.key(parameters, "edges", "parameters"), "parameters.edges",
                                0.0, 1.0, min_length=2)
        values = problem.numbers(problem.key(parameters, "values", "parameters"), "parameters.values", 0.0, 1.0)
        if len(values) != len(edges) - 1:
            raise problem.error(f"{len(edges)} edges need {len(edges) - 1} values, not {len(values)}")
        edges = np.asarray(edges, dtype=np.float64)
        if edges[0] != 0.0 or edges[-1] != 1.0 or np.any(np.diff(edges) <= 0):
            raise problem.error("'parameters.edges' must increase strictly from 0 to 1")
        return cls(edges, np.asarray(values, dtype=np.float64))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, LOGIT_EPS, 1.0 - LOGIT_EPS)
    return np.log(p) - np.log1p(-p)


def _soft_cross_entropy(z: np.ndarray, target: np.ndarray, weight: np.ndarray):
    """Weighted cross-entropy of sigmoid(z) against soft targets, and d/dz."""
    loss = np.sum(weight * (np.logaddexp(0.0, z) - target * z))
    return loss, weight * (expit(z) - target)


def _bin_data(statistics: CalibrationStatistics):
    mean_p, mean_mhr, counts = statistics.nonempty()
    return mean_p, mean_mhr, counts / counts.sum()


class PlattCalibrator(Calibrator):
    """sigmoid(a * logit(p) + b)."""

    method = "platt"

    def __init__(self, a: float, b: float) -> None:
        super().__init__()
        self.a, self.b = float(a), float(b)

    @classmethod
    def fit(cls, statistics: CalibrationStatistics) -> "PlattCalibrator":
        mean_p, mean_mhr, weight = _bin_data(statistics)
        logit = _logit(mean_p)

        def objective(theta):
            loss, dz = _soft_cross_entropy(theta[0] * logit + theta[1], mean_mhr, weight)
            return loss, np.array([np.sum(dz * logit), np.sum(dz)])

        result = optimize.minimize(objective, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
        return cls(*result.x)

    def _transform_chunk(self, p: np.ndarray) -> np.ndarray:
        z = _logit(p)
        z *= np.float32(self.a)
        z += np.float32(self.b)
        return expit(z)

    def parameters(self) -> dict:
        return {"a": self.a, "b": self.b}

    @classmethod
    def _from_parameters(cls, parameters: dict, problem: FileProblem) -> "PlattCalibrator":
        return cls(problem.number(problem.key(parameters, "a", "parameters"), "parameters.a", -1e4, 1e4),
                   problem.number(problem.key(parameters, "b", "parameters"), "parameters.b", -1e4, 1e4))


class TemperatureCalibrator(Calibrator):
    """sigmoid(logit(p) / temperature), temperature > 0."""

    method = "temperature"

    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.temperature = float(temperature)

    @classmethod
    def fit(cls, statistics: CalibrationStatistics) -> "TemperatureCalibrator":
        mean_p, mean_mhr, weight = _bin_data(statistics)
        logit = _logit(mean_p)

        def objective(theta):  # theta = log(1 / T), so T stays positive
            z = np.exp(theta[0]) * logit
            loss, dz = _soft_cross_entropy(z, mean_mhr, weight)
            return loss, np.array([np.sum(dz * z)])

        result = optimize.minimize(objective, np.array([0.0]), jac=True, method="L-BFGS-B",
                                   bounds=[(-9.0, 9.0)])
        return cls(float(np.exp(-result.x[0])))

    def _transform_chunk(self, p: np.ndarray) -> np.ndarray:
        z = _logit(p)
        z *= np.float32(1.0 / self.temperature)
        return expit(z)

    def parameters(self) -> dict:
        return {"temperature": self.temperature}

    @classmethod
    def _from_parameters(cls, parameters: dict, problem: FileProblem) -> "TemperatureCalibrator":
        temperature = problem.number(problem.key(parameters, "temperature", "parameters"),
                                     "parameters.temperature", 1e-4, 1e4)
        return cls(temperature)


class BetaCalibrator(Calibrator):
    """sigmoid(a ln p - b ln(1 - p) + c) with a, b >= 0 (monotone increasing)."""

    method = "beta"

    def __init__(self, a: float, b: float, c: float) -> None:
        super().__init__()
        self.a, self.b, self.c = float(a), float(b), float(c)

    @classmethod
    def fit(cls, statistics: CalibrationStatistics) -> "BetaCalibrator":
        mean_p, mean_mhr, weight = _bin_data(statistics)
        clipped = np.clip(mean_p, LOGIT_EPS, 1.0 - LOGIT_EPS)
        log_p, log_q = np.log(clipped), np.log1p(-clipped)

        def objective(theta):
            loss, dz = _soft_cross_entropy(theta[0] * log_p - theta[1] * log_q + theta[2], mean_mhr, weight)
            return loss, np.array([np.sum(dz * log_p), -np.sum(dz * log_q), np.sum(dz)])

        result = optimize.minimize(objective, np.array([1.0, 1.0, 0.0]), jac=True, method="L-BFGS-B",
                                   bounds=[(0.0, 1e4), (0.0, 1e4), (-1e4, 1e4)])
        return cls(*result.x)

    def _transform_chunk(self, p: np.ndarray) -> np.ndarray:
        p = np.clip(p, LOGIT_EPS, 1.0 - LOGIT_EPS)
        z = np.log(p)
        z *= np.float32(self.a)
        z -= np.float32(self.b) * np.log1p(-p)
        z += np.float32(self.c)
        return expit(z)

    def parameters(self) -> dict:
        return {"a": self.a, "b": self.b, "c": self.c}

    @classmethod
    def _from_parameters(cls, parameters: dict, problem: FileProblem) -> "BetaCalibrator":
        return cls(problem.number(problem.key(parameters, "a", "parameters"), "parameters.a", 0.0, 1e4),
                   problem.number(problem.key(parameters, "b", "parameters"), "parameters.b", 0.0, 1e4),
                   problem.number(problem.key(parameters, "c", "parameters"), "parameters.c", -1e4, 1e4))


METHODS: Dict[str, Type[Calibrator]] = {
    cls.method: cls for cls in (IsotonicCalibrator, HistogramBinningCalibrator, PlattCalibrator,
                                TemperatureCalibrator, BetaCalibrator)
}


def fit_calibrator(statistics: CalibrationStatistics, method: str = "isotonic", *, region: str = "",
                   probability_source: str = "", **options) -> Calibrator:
    """Fit a calibrator of ``method`` from ``statistics``.

    region, probability_source: provenance written into the file (how the
    fitting region was made; the probability file name or ``bundle:<id>``).
    options: method settings (histogram: ``bins``, ``strategy``).
    """
    if method not in METHODS:
        raise InputError(f"Unknown calibration method {method!r}; choose one of {', '.join(METHODS)}.")
    if statistics.voxels == 0:
        raise InputError("There are no voxels to fit a calibrator on: every case's region was empty "
                         "or no case could be used.")
    calibrator = METHODS[method].fit(statistics, **options)
    calibrator.raters = int(statistics.raters or 0)
    calibrator.cases = int(statistics.cases)
    calibrator.voxels = statistics.voxels
    calibrator.region = str(region)
    calibrator.probability_source = str(probability_source)
    calibrator.created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return calibrator


def load_calibrator(path) -> Calibrator:
    """Read and validate a calibrator JSON file; InputError naming the file on anything wrong."""
    return Calibrator.from_dict(read_json(path), source=path)
