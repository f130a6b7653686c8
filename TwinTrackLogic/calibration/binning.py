"""The fine bins over p shared by the statistics and the isotonic lookup.

Ensemble probabilities pile up near 0 and 1, spread over many orders of
magnitude (1e-9 and 1e-4 are both "background" to a softmax, yet not to the
raters), so equal-width bins alone would pool very different voxels into the
first and last bin. The layout therefore has three parts, monotone in p:

- lower tail, p < 2^-8: geometric bins, ``2^m`` per octave from 2^-40 up
  (p < 2^-40, including 0, share the first bin);
- middle, 2^-8 <= p < 1 - 2^-8: ``bins`` equal-width bins over [0, 1] (width
  1/bins), of which the part between the tails is used;
- upper tail, mirrored on 1 - p (exact in float32 for p >= 0.5); p == 1 is
  in the last bin.

``m = log2(bins) - 8`` makes the tail bins exactly as wide as the middle ones
where they meet. The bin of a float32 p comes from a multiply or from its
bit pattern (exponent and leading mantissa bits), so it is exact and fast.
"""

from __future__ import annotations

import numpy as np

TAIL_OCTAVE = 8  # tails below 2^-8 and above 1 - 2^-8
TAIL_FLOOR_OCTAVE = 40  # geometric tail bins reach down to 2^-40
MIN_BINS, MAX_BINS = 1 << 9, 1 << 22


def _float_bits(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32).view(np.int32)


class ProbabilityBins:
    """Fine bin layout for ``bins`` (a power of two from 2^9 to 2^22) equal-width middle bins."""

    def __init__(self, bins: int) -> None:
        bins = int(bins)
        if bins < MIN_BINS or bins > MAX_BINS or bins & (bins - 1):
            raise ValueError(f"bins must be a power of two from {MIN_BINS} to {MAX_BINS}, not {bins}")
        self.bins = bins
        self.mantissa_bits = bins.bit_length() - 1 - TAIL_OCTAVE
        self.shift = 23 - self.mantissa_bits
        self.key_floor = int(_float_bits(2.0 ** -TAIL_FLOOR_OCTAVE)) >> self.shift
        self.tail = (TAIL_FLOOR_OCTAVE - TAIL_OCTAVE) << self.mantissa_bits  # bins per tail
        self.tail_start = np.float32(2.0 ** -TAIL_OCTAVE)
        self.tail_stop = np.float32(1.0 - 2.0 ** -TAIL_OCTAVE)
        middle_first = bins >> TAIL_OCTAVE  # equal-width bin holding 2^-8
        self.middle_offset = self.tail - middle_first
        self.size = 2 * self.tail + bins - 2 * middle_first

    def index(self, p: np.ndarray) -> np.ndarray:
        """Bin number (intp) of each value of the 1-D float32 array ``p`` (values in [0, 1])."""
        p = np.asarray(p, dtype=np.float32)
        tail, middle_bins = self.tail, self.size - 2 * self.tail
        # Three terms, each saturating outside its part, so no voxel needs a branch:
        # lower tail (0..tail, = tail above it), middle (0 below it, 0..middle_bins),
        # upper tail (0 below it, then counting up to the last bin as 1 - p shrinks).
        index = p.view(np.int32) >> self.shift
        index -= self.key_floor
        # (np.minimum/np.maximum: np.clip's Python wrapper costs more than the work here.)
        np.minimum(np.maximum(index, 0, out=index), tail, out=index)
        middle = np.multiply(p, np.float32(self.bins), dtype=np.float32).astype(np.int32)
        middle += self.middle_offset - tail
        np.minimum(np.maximum(middle, 0, out=middle), middle_bins, out=middle)
        index += middle
        # 1 - p is exact for p >= 0.5; below that it only needs to stay >= 2^-8, and does.
        upper = np.subtract(np.float32(1.0), p, dtype=np.float32).view(np.int32) >> self.shift
        upper -= self.key_floor
        np.minimum(np.maximum(upper, 0, out=upper), tail - 1, out=upper)
        index += tail - 1
        index -= upper
        return index.astype(np.intp)

    def lower_edges(self) -> np.ndarray:
        """The smallest float32 p of each bin (float64 array of ``size``; 0 for the first)."""
        keys = np.arange(self.tail, dtype=np.int64) + self.key_floor
        tail_edges = (keys << self.shift).astype(np.int32).view(np.float32).astype(np.float64)
        tail_edges[0] = 0.0
        middle = np.arange(self.bins >> TAIL_OCTAVE, self.bins - (self.bins >> TAIL_OCTAVE)) / self.bins
        # Upper tail bin with key k holds 1 - p in [edge(k), edge(k + 1)), so its smallest p
        # is the smallest float32 above 1 - edge(k + 1) (exact in float64); the bin with the
        # highest key also holds p == 1 - 2^-8 itself.
        bound = 1.0 - np.r_[tail_edges[1:], float(self.tail_start)]
        upper = bound.astype(np.float32)
        not_above = upper.astype(np.float64) <= bound
        upper[not_above] = np.nextafter(upper[not_above], np.float32(2.0))
        upper[-1] = self.tail_stop
        return np.concatenate([tail_edges, middle, upper[::-1].astype(np.float64)])
