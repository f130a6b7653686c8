"""Agreement levels: one unit where people type them, one default, one parser.

A level says "at least this share of the annotators". Where a person types or reads one (every
command-line option, the Slicer panel, the browser review) it is a **percentage**: 50 means "at
least half of the experts", 60 with five raters "at least 3 of 5". Inside the core it is a
fraction in (0, 1], and the mask at a level is calibrated ``p >= level``.

A value in (0, 1] where a percentage is expected is refused rather than guessed: ``--level 0.5``
meant as a fraction would otherwise run as "0.5 % of annotators", a mask of nearly everything.
"""

from __future__ import annotations

from typing import Iterable, Tuple

from ..errors import InputError

DEFAULT_LEVEL = 0.5  # the mask `predict --mask-out` writes: at least half of the experts
DEFAULT_CONTOUR_LEVELS: Tuple[float, ...] = (0.2, 0.5, 0.8)  # the contours drawn and the SEG's segments
DEFAULT_REVIEW_LEVEL = 0.6  # where the review slider starts: 3 of 5


def check_level(level: float, name: str = "the agreement level") -> float:
    """A level as a fraction in (0, 1]; refuses NaN, 0 and anything above 1."""
    level = float(level)
    if not 0.0 < level <= 1.0:  # also refuses NaN
        raise InputError(f"{name} must be above 0 and at most 100 % (the mask is p >= level), not {level * 100:g} %.")
    return level


def parse_percent(text: str, name: str = "--level") -> float:
    """``"60"`` (percent of annotators) -> 0.6; a fraction-looking value is refused with the fix.

    Examples
    --------
    >>> parse_percent("60")
    0.6
    >>> parse_percent("0.6")
    Traceback (most recent call last):
    ...
    TwinTrackLogic.errors.InputError: --level takes a percentage of annotators ... write 60 for 60 %.
    """
    text = str(text).strip()
    try:
        percent = float(text.rstrip("%"))
    except ValueError:
        raise InputError(f"{name} takes a percentage of annotators, like 50, not {text!r}.") from None
    if 0.0 < percent <= 1.0:
        raise InputError(f"{name} takes a percentage of annotators (50 means at least half of them); {text} looks "
                         f"like a fraction: write {percent * 100:g} for {percent * 100:g} %.")
    if not 1.0 < percent <= 100.0:  # also refuses NaN
        raise InputError(f"{name} must be a percentage above 1 and at most 100, not {text}.")
    return percent / 100.0


def parse_percents(text: str, name: str = "--levels") -> Tuple[float, ...]:
    """``"20,50,80"`` (or ``"20, 50, 80"``; ``;`` also separates) -> (0.2, 0.5, 0.8), sorted, each once."""
    parts = [part for part in str(text).replace(";", ",").split(",") if part.strip()]
    if not parts:
        raise InputError(f"{name} needs at least one agreement level in percent, like 20,50,80.")
    return tuple(sorted({parse_percent(part, name) for part in parts}))


def percent_text(levels: Iterable[float], separator: str = ",") -> str:
    """(0.2, 0.5, 0.8) -> ``"20,50,80"``: how a level list is shown where people type it."""
    return separator.join(f"{level * 100:g}" for level in levels)
