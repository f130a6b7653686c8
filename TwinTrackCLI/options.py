"""Validated command-line values: every numeric option is checked where it is parsed.

Each function here is an argparse ``type=``: it turns the text into a number or refuses it
with a sentence saying what the option accepts, which argparse prints after the option's
name (``twintrack predict: error: argument --level: must be a percentage above 1 and at most 100, not nan.``)
and exits with code 2, before any work starts. NaN, infinities, negative sizes, zero
threads and numbers written as words are refused here, so the core never sees them.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable, Optional

from TwinTrackLogic import InputError
from TwinTrackLogic.review.levels import parse_percent


def _interval(low: Optional[float], high: Optional[float], low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'above' if low_open else 'at least'} {low:g}"
    return f"{'below' if high_open else 'at most'} {high:g}"


def real(low: Optional[float] = None, high: Optional[float] = None, *, low_open: bool = False,
         high_open: bool = False, unit: str = "") -> Callable[[str], float]:
    """A finite number in the given bounds (``low_open``: low itself excluded)."""
    wanted = f"a number {_interval(low, high, low_open, high_open)}{' ' + unit if unit else ''}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {wanted}, not {text!r}") from None
        if (not math.isfinite(value) or low is not None and (value < low or low_open and value == low)
                or high is not None and (value > high or high_open and value == high)):
            raise argparse.ArgumentTypeError(f"must be {wanted}, not {text!r}")
        return value

    parse.__name__ = "number"
    return parse


def whole(low: int = 0, high: Optional[int] = None) -> Callable[[str], int]:
    """A whole number in [low, high]."""
    wanted = f"a whole number {_interval(low, high, False, False)}"

    def parse(text: str) -> int:
        try:
            value = int(text.strip(), 10) if len(text) <= 20 else None
        except ValueError:
            value = None
        if value is None or value < low or high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be {wanted}, not {text[:40]!r}")
        return value

    parse.__name__ = "whole number"
    return parse


# The options TwinTrack's commands share, so each is checked the same way everywhere.
def level(text: str) -> float:
    """An agreement level typed in percent (``60``: at least 3 of 5 experts), as the fraction the core uses."""
    try:
        return parse_percent(text, "the level")
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error).replace("the level ", "", 1)) from None


level.__name__ = "percentage"
binary_threshold = real(0.0, 1.0, high_open=True)  # the challenge's binary_dsc: p > threshold
distance_mm = real(0.0, 1000.0, unit="mm")  # a dilation or padding
threads = whole(1, 1024)
cases = whole(1, 100_000)
raters = whole(1, 1000)
seed = whole(0, 2 ** 32 - 1)
first_index = whole(0, 1_000_000)
bootstrap = whole(1, 1_000_000)
megabytes = real(0.0, 1_000_000.0, low_open=True, unit="MB")  # a size limit
seconds = real(0.0, 86_400.0, low_open=True, unit="s")  # a deadline
