"""Sufficient statistics for fitting a calibrator: a fine histogram over p.

Every calibrator is fitted from one :class:`CalibrationStatistics`: for each
fine bin over the tumour probability p in [0, 1] (equal-width bins of width
1/``bins`` in the middle, geometric bins in the tails near 0 and 1; see
:mod:`.binning`) it holds the voxel count, the summed p and the summed MHR.
These are exactly the sufficient statistics of a weighted isotonic fit on the
bins, so memory is about 8 MB however many voxels go in, and two statistics add bin by bin: cases are
reduced one at a time, or in any order across processes or machines (the
statistics travel as JSON through :meth:`to_dict` / :meth:`from_dict`).

Binning is exact on float32 p. The summed p gives each bin's real mean p,
which the calibrators use as the bin's position instead of its centre.

The per-bin sums are exact: p is float32 and the MHR is cast to float32
(k/K for K raters), and the values in one fine bin share a binade, so their
float64 sums carry no rounding while a bin's summed MHR stays below 2^27 and
it holds fewer than 2^29 voxels. The first bin (p < 2^-40) spans many
binades, so there p is summed rounded down to a multiple of 2^-64 (a change
below 2^-64 per voxel). Adding and subtracting statistics is therefore exact
and order-free: a cross-validation fold's "all cases minus the held-out ones"
equals the sum of its training cases bit for bit (:mod:`.crossval`).

A scalar ``sum_mhr_squared`` (the summed MHR^2 over all voxels) completes the
Brier score against the MHR, which the bins alone cannot give.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from ..errors import InputError
from .binning import MAX_BINS, MIN_BINS, ProbabilityBins

DEFAULT_BINS = 1 << 18  # middle bins 3.8e-6 wide, 325,632 fine bins in all: see docs/howto-calibrate.md
# Per-chunk temporaries stay about 1 MB each: larger ones are mapped fresh from the system on
# every allocation, and the page faults then cost more than the work (measured 3x at 2^20).
CHUNK_VOXELS = 1 << 18
# ECE against MHR: one binning wherever it is printed (calibrate, --cv, evaluate; docs/metrics.md).
ECE_MHR_BINS = 20
STATISTICS_FORMAT = "twintrack-calibration-statistics"
STATISTICS_VERSION = 1


def _check_unit_interval(chunk: np.ndarray, what: str, source: str) -> None:
    if chunk.size == 0:
        return
    low, high = float(chunk.min()), float(chunk.max())
    # NaN makes min/max NaN, and NaN fails both comparisons.
    if not (low >= 0.0 and high <= 1.0):
        raise InputError(
            f"{source}: {what} has values from {low:g} to {high:g} (NaN or outside [0, 1]). "
            f"{what.capitalize()} must lie in [0, 1]; pass the tumour probability after softmax "
            "or sigmoid and the MHR as a fraction of raters."
        )


def reliability_sums(values: np.ndarray, weight: np.ndarray, sum_mhr: np.ndarray, bins: int = ECE_MHR_BINS):
    """Per equal-width bin of ``values`` (calibrated value of each fine bin): (weight, summed
    value, summed MHR), each of length ``bins``; bin k holds k/bins <= value < (k+1)/bins."""
    coarse = np.minimum((values * bins).astype(np.intp), bins - 1)
    return (np.bincount(coarse, weights=weight, minlength=bins),
            np.bincount(coarse, weights=values * weight, minlength=bins),
            np.bincount(coarse, weights=sum_mhr, minlength=bins))


FIRST_BIN_TOP = 2.0 ** -40  # binning.TAIL_FLOOR_OCTAVE
FIRST_BIN_QUANTUM = 2.0 ** -64


def _exactly_summable(p_chunk: np.ndarray) -> np.ndarray:
    """p as float64, with the values of the first fine bin rounded down to multiples of 2^-64."""
    values = p_chunk.astype(np.float64)
    tiny = values < FIRST_BIN_TOP
    if tiny.any():
        values[tiny] = np.floor(values[tiny] / FIRST_BIN_QUANTUM) * FIRST_BIN_QUANTUM
    return values


def _flat(array: np.ndarray) -> np.ndarray:
    # A view for contiguous arrays; only a non-contiguous input is copied.
    return np.ascontiguousarray(array).reshape(-1)


class CalibrationStatistics:
    """Per-bin voxel counts, summed p and summed MHR over the fine bins of p.

    bins: resolution, as the number of equal-width bins over [0, 1] used in the
    middle (a power of two from 2^9 to 2^22). Attributes: ``layout`` (the
    :class:`~.binning.ProbabilityBins`), ``counts`` (int64), ``sum_p`` and
    ``sum_mhr`` (float64), each of length ``layout.size``; ``sum_mhr_squared``
    (float, summed MHR^2; None when read from a file that lacks it); ``cases``
    (cases added), ``raters`` (raters per case, None until known).

    Statistics made by :meth:`scaled` hold float64 ``counts``: weights rather
    than voxel counts (case weighting); they fit and score like any other.
    Change the arrays through :meth:`add` and :meth:`merge` only, or before the
    first fit: :meth:`nonempty` and :meth:`derived` remember their results.
    """

    def __init__(self, bins: int = DEFAULT_BINS) -> None:
        bins = int(bins)
        try:
            self.layout = ProbabilityBins(bins)
        except ValueError as error:
            raise InputError(f"Calibration statistics: {error}.") from None
        self.bins = bins
        self.counts: np.ndarray = np.zeros(self.layout.size, dtype=np.int64)  # float64 once weighted
        self.sum_p = np.zeros(self.layout.size, dtype=np.float64)
        self.sum_mhr = np.zeros(self.layout.size, dtype=np.float64)
        self.sum_mhr_squared: Optional[float] = 0.0
        self._nonempty: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = None
        self.cases = 0
        self.raters: Optional[int] = None

    @property
    def voxels(self) -> int:
        return int(round(float(self.counts.sum())))

    def _set_raters(self, raters: Optional[int]) -> None:
        if raters is None:
            return
        raters = int(raters)
        if raters < 1:
            raise InputError(f"A calibration case needs at least one rater, not {raters}.")
        if self.raters is not None and self.raters != raters:
            raise InputError(
                f"Calibration data with {raters} raters per case cannot be pooled with data with "
                f"{self.raters}: MHR levels only mean the same thing with the same number of raters."
            )
        self.raters = raters

    def add(self, p: np.ndarray, mhr: np.ndarray, mask: Optional[np.ndarray] = None,
            raters: Optional[int] = None, source: str = "calibration data") -> "CalibrationStatistics":
        """Add one case: tumour probability ``p`` and ``mhr`` (same shape, values in
        [0, 1]) at the voxels where ``mask`` is true (all voxels if None).

        Works in chunks, so the only temporaries are a few MB. All or nothing: on
        bad input (InputError) these statistics are left unchanged. Returns self.
        """
        if np.shape(p) != np.shape(mhr) or (mask is not None and np.shape(mask) != np.shape(p)):
            raise InputError(f"{source}: p {np.shape(p)}, MHR {np.shape(mhr)} and region "
                             f"{np.shape(mask) if mask is not None else '-'} must have the same shape.")
        p_flat, mhr_flat = _flat(p), _flat(mhr)
        # One chunk is checked before it is counted; several go through a scratch copy
        # so that a bad value in a late chunk cannot leave the earlier ones counted.
        case = self if p_flat.size <= CHUNK_VOXELS else CalibrationStatistics(self.bins)
        case._set_raters(raters)
        mask_flat = None if mask is None else _flat(mask).astype(bool, copy=False)
        for start in range(0, p_flat.size, CHUNK_VOXELS):
            stop = start + CHUNK_VOXELS
            p_chunk = p_flat[start:stop]
            mhr_chunk = mhr_flat[start:stop]
            if mask_flat is not None:
                inside = mask_flat[start:stop]
                p_chunk, mhr_chunk = p_chunk[inside], mhr_chunk[inside]
            case._add_chunk(p_chunk, mhr_chunk, source)
        if case is self:
            self.cases += 1
            return self
        case.cases = 1
        return self.merge(case)

    def _add_chunk(self, p_chunk: np.ndarray, mhr_chunk: np.ndarray, source: str) -> None:
        if p_chunk.size == 0:
            return
        self._nonempty = None
        _check_unit_interval(p_chunk, "the probability", source)
        _check_unit_interval(mhr_chunk, "the MHR", source)
        p_chunk = p_chunk.astype(np.float32, copy=False)
        mhr_chunk = mhr_chunk.astype(np.float32, copy=False)  # exact sums (module docstring)
        index = self.layout.index(p_chunk)
        size = self.layout.size
        self.counts += np.bincount(index, minlength=size)
        self.sum_p += np.bincount(index, weights=_exactly_summable(p_chunk), minlength=size)
        self.sum_mhr += np.bincount(index, weights=mhr_chunk, minlength=size)
        if self.sum_mhr_squared is not None:  # None (read without it) stays unknown, as in merge()
            self.sum_mhr_squared += float(np.dot(mhr_chunk.astype(np.float64), mhr_chunk.astype(np.float64)))

    def merge(self, other: "CalibrationStatistics") -> "CalibrationStatistics":
        """Add ``other``'s voxels and cases to these statistics in place; returns self."""
        if not isinstance(other, CalibrationStatistics):
            return NotImplemented
        if other.bins != self.bins:
            raise InputError(f"Cannot merge calibration statistics with {other.bins} bins into "
                             f"statistics with {self.bins} bins; use the same --bins everywhere.")
        self._set_raters(other.raters)
        self._nonempty = None
        if other.counts.dtype != self.counts.dtype:  # weights join counts: the result holds weights
            self.counts = self.counts.astype(np.float64)
        self.counts += other.counts
        self.sum_p += other.sum_p
        self.sum_mhr += other.sum_mhr
        self.cases += other.cases
        if self.sum_mhr_squared is None or other.sum_mhr_squared is None:
            self.sum_mhr_squared = None
        else:
            self.sum_mhr_squared += other.sum_mhr_squared
        return self

    def scaled(self, factor: float) -> "CalibrationStatistics":
        """A copy in which every voxel weighs ``factor`` (float64 counts): case weighting."""
        twin = CalibrationStatistics(self.bins)
        twin.counts = self.counts * float(factor)
        twin.sum_p = self.sum_p * float(factor)
        twin.sum_mhr = self.sum_mhr * float(factor)
        twin.sum_mhr_squared = None if self.sum_mhr_squared is None else self.sum_mhr_squared * float(factor)
        twin.cases, twin.raters = self.cases, self.raters
        return twin

    def __add__(self, other: "CalibrationStatistics") -> "CalibrationStatistics":
        if not isinstance(other, CalibrationStatistics):
            return NotImplemented
        return self.copy().merge(other)

    def __radd__(self, other):
        # Lets sum(list_of_statistics) work: sum starts from 0.
        if isinstance(other, int) and other == 0:
            return self.copy()
        return NotImplemented

    def copy(self) -> "CalibrationStatistics":
        twin = CalibrationStatistics(self.bins)
        twin.counts = twin.counts.astype(self.counts.dtype)
        twin.merge(self)
        return twin

    def __getstate__(self) -> Dict[str, Any]:
        """A compact form for travel between processes (Dask, the worker): only the bins that hold
        something, so a case's statistics cost its filled bins, not the full fine-bin layout. Exact:
        the same float64 sums come back. The remembered fits are left behind (recomputed)."""
        filled = np.flatnonzero((self.counts != 0) | (self.sum_p != 0) | (self.sum_mhr != 0))
        index = filled.astype(np.int32 if self.layout.size < 2 ** 31 else np.int64)
        return {"bins": self.bins, "filled": index, "counts": self.counts[filled], "sum_p": self.sum_p[filled],
                "sum_mhr": self.sum_mhr[filled], "sum_mhr_squared": self.sum_mhr_squared, "cases": self.cases,
                "raters": self.raters}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        CalibrationStatistics.__init__(self, int(state["bins"]))
        filled = np.asarray(state["filled"])
        counts = np.asarray(state["counts"])
        self.counts = np.zeros(self.layout.size, dtype=counts.dtype)
        self.counts[filled] = counts
        self.sum_p[filled] = np.asarray(state["sum_p"])
        self.sum_mhr[filled] = np.asarray(state["sum_mhr"])
        self.sum_mhr_squared = state["sum_mhr_squared"]
        self.cases = int(state["cases"])
        self.raters = state["raters"]

    def nonempty(self):
        """(mean p, mean MHR, voxel count) of the non-empty bins, in increasing p.

        Remembered until these statistics change through :meth:`add` or :meth:`merge`
        (cross-validation fits several candidates on one fold's statistics).
        """
        return self._cells()[1:]

    def _cells(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(fine-bin numbers, mean p, mean MHR, voxel count) of the non-empty bins, remembered."""
        if self._nonempty is None:
            self._derived: Dict[str, object] = {}
            filled = np.flatnonzero(self.counts)
            counts = self.counts[filled]
            self._nonempty = (filled, self.sum_p[filled] / counts, self.sum_mhr[filled] / counts, counts)
        return self._nonempty

    def derived(self, key: str, compute: Callable[["CalibrationStatistics"], object]):
        """``compute(self)``, remembered like :meth:`nonempty` (e.g. the smooth fits' logit cells)."""
        self.nonempty()
        if key not in self._derived:
            self._derived[key] = compute(self)
        return self._derived[key]

    def nonempty_bins(self) -> np.ndarray:
        """Fine-bin numbers of the non-empty bins (the order of :meth:`nonempty`)."""
        return self._cells()[0]

    def expected_calibration_error(self, transform: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                                   bins: int = ECE_MHR_BINS) -> float:
        """ECE against MHR: sum over ``bins`` equal-width bins of calibrated value of
        |mean value - mean MHR| weighted by the bin's voxel fraction.

        transform: the calibrator's transform, or None for the raw p. It is applied
        to each fine bin's mean p instead of to every voxel, so no second pass over
        the data is needed; this differs from the per-voxel ECE only through the
        voxels of a fine bin that straddles an ECE bin edge (fine bins are 3.8e-6
        wide), and, for a calibrator, through its variation inside one fine bin.
        """
        values, counts = self._values(transform)
        weight, value_sum, mhr_sum = reliability_sums(values, counts, self.sum_mhr[self.counts > 0], bins)
        return float(np.abs(value_sum - mhr_sum).sum() / counts.sum())

    def brier_score(self, transform: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> float:
        """Mean (value - MHR)^2 over the voxels, from the bins and ``sum_mhr_squared``
        (the value taken at each fine bin's mean p, as in the ECE)."""
        if self.sum_mhr_squared is None:
            raise InputError("These calibration statistics were read from a file without 'sum_mhr_squared', "
                             "so they cannot give a Brier score; recompute them from the images.")
        values, counts = self._values(transform)
        squares = np.sum(counts * values * values) - 2.0 * np.dot(values, self.sum_mhr[self.counts > 0])
        return float((squares + self.sum_mhr_squared) / counts.sum())

    def _values(self, transform):
        mean_p, _, counts = self.nonempty()
        if counts.size == 0:
            raise InputError("The calibration statistics hold no voxels, so there is no ECE to report.")
        values = mean_p if transform is None else np.asarray(transform(mean_p), dtype=np.float64)
        return values, counts.astype(np.float64)

    def to_dict(self) -> dict:
        """JSON-able form; only non-empty bins are listed."""
        filled = np.flatnonzero(self.counts)
        return {
            "format": STATISTICS_FORMAT,
            "version": STATISTICS_VERSION,
            "bins": self.bins,
            "cases": self.cases,
            "raters": self.raters,
            "bin_index": filled.tolist(),
            "counts": self.counts[filled].tolist(),
            "sum_p": self.sum_p[filled].tolist(),
            "sum_mhr": self.sum_mhr[filled].tolist(),
            "sum_mhr_squared": self.sum_mhr_squared,
        }

    @classmethod
    def from_dict(cls, data: dict, source: str = "calibration statistics") -> "CalibrationStatistics":
        """Rebuild statistics from :meth:`to_dict`'s output, refusing anything inconsistent."""
        def bad(why: str) -> InputError:
            return InputError(f"{source} is not valid calibration statistics: {why}.")

        if not isinstance(data, dict) or data.get("format") != STATISTICS_FORMAT:
            raise bad(f"'format' must be {STATISTICS_FORMAT!r}")
        if data.get("version") != STATISTICS_VERSION:
            raise bad(f"unknown version {data.get('version')!r} (this TwinTrack reads version {STATISTICS_VERSION})")
        for key in ("bins", "cases", "bin_index", "counts", "sum_p", "sum_mhr"):
            if key not in data:
                raise bad(f"the key {key!r} is missing")
        bins = data["bins"]
        if not isinstance(bins, int) or not MIN_BINS <= bins <= MAX_BINS or bins & (bins - 1):
            raise bad(f"'bins' must be a power of two from {MIN_BINS} to {MAX_BINS}")
        size = ProbabilityBins(bins).size
        lists = [data[key] for key in ("bin_index", "counts", "sum_p", "sum_mhr")]
        if not all(isinstance(values, list) and len(values) == len(lists[0]) <= size for values in lists):
            raise bad("'bin_index', 'counts', 'sum_p' and 'sum_mhr' must be lists of equal length, "
                      "at most the number of fine bins")
        try:
            index = np.asarray(lists[0], dtype=np.int64)
            counts = np.asarray(lists[1], dtype=np.int64)
            sum_p = np.asarray(lists[2], dtype=np.float64)
            sum_mhr = np.asarray(lists[3], dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            raise bad("the per-bin lists must hold numbers") from None
        if index.size and (np.any(np.diff(index) <= 0) or index[0] < 0 or index[-1] >= size):
            raise bad("'bin_index' must be strictly increasing fine-bin numbers")
        if np.any(counts <= 0):
            raise bad("every listed bin must hold a positive count")
        for name, sums in (("sum_p", sum_p), ("sum_mhr", sum_mhr)):
            if not np.all(np.isfinite(sums)) or np.any(sums < 0) or np.any(sums > counts * (1 + 1e-9)):
                raise bad(f"'{name}' must be finite and between 0 and the bin's count")
        cases, raters = data["cases"], data.get("raters")
        if not isinstance(cases, int) or cases < 0:
            raise bad("'cases' must be a non-negative integer")
        if raters is not None and (not isinstance(raters, int) or raters < 1):
            raise bad("'raters' must be a positive integer or null")
        statistics = cls(bins)
        statistics.counts[index] = counts
        statistics.sum_p[index] = sum_p
        statistics.sum_mhr[index] = sum_mhr
        statistics.cases = cases
        statistics.raters = raters
        squared = data.get("sum_mhr_squared")
        if squared is not None and (isinstance(squared, bool) or not isinstance(squared, (int, float))
                                    or not 0 <= squared <= float(counts.sum()) * (1 + 1e-9)):
            raise bad("'sum_mhr_squared' must be a number between 0 and the voxel count, or null")
        statistics.sum_mhr_squared = None if squared is None else float(squared)
        return statistics
