"""The calibrator file: versioned JSON, read with limits, written atomically.

Layout (version 1)::

    {"format": "twintrack-calibrator", "version": 1,
     "method": "isotonic", "parameters": {...method-specific...},
     "fitting": {"region": str, "cases": int, "voxels": int, "raters": int,
                 "probability_source": str},
     "software_version": str, "created": ISO-8601 UTC time}

Nothing in the file is executed: it is parsed by the strict reader
(:mod:`TwinTrackLogic.io.strictjson`), its structure is checked against
``TwinTrackLogic/schemas/calibrator.schema.json`` (documented in docs/schemas.md),
and what a schema cannot say (knots increasing, lengths matching) by each
method. The helpers here build messages that name the file.
"""

from __future__ import annotations

import math
from typing import Any, List, Optional

from ..errors import InputError
from ..io import strictjson
from ..schemas import validate

CALIBRATOR_FORMAT = "twintrack-calibrator"
CALIBRATOR_VERSION = 1
MAX_FILE_BYTES = 64 * 1024 * 1024  # a 65,536-knot isotonic file is about 3 MB
MAX_KNOTS = 1_000_000
HINT = "Fit a new one with `twintrack calibrate`, or restore the file as it was written."


class FileProblem:
    """Builds :class:`InputError` messages about one calibrator source."""

    def __init__(self, source) -> None:
        self.source = str(source) if source is not None else "the calibrator"

    def error(self, why: str) -> InputError:
        return InputError(
            f"{self.source} is not a valid TwinTrack calibrator: {why}. Fit a new one with "
            "`twintrack calibrate`, or restore the file as it was written."
        )

    def key(self, data: dict, name: str, where: str = "") -> Any:
        if not isinstance(data, dict):
            raise self.error(f"{where or 'the top level'} must be a JSON object")
        if name not in data:
            raise self.error(f"the key {where + '.' if where else ''}{name!r} is missing")
        return data[name]

    def integer(self, value: Any, name: str, minimum: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(f"{name!r} must be an integer of at least {minimum}, not {value!r}")
        return value

    def number(self, value: Any, name: str, low: float = -math.inf, high: float = math.inf) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.error(f"{name!r} must be a finite number, not {value!r}")
        if not low <= value <= high:
            raise self.error(f"{name!r} is {value!r}, outside [{low:g}, {high:g}]")
        return float(value)

    def string(self, value: Any, name: str, max_length: int = 4096) -> str:
        if not isinstance(value, str) or len(value) > max_length:
            raise self.error(f"{name!r} must be a string of at most {max_length} characters")
        return value

    def numbers(self, value: Any, name: str, low: float, high: float,
                min_length: int = 1, max_length: int = MAX_KNOTS) -> List[float]:
        # Length is checked on the parsed list before any array is made from it.
        if not isinstance(value, list) or not min_length <= len(value) <= max_length:
            raise self.error(f"{name!r} must be a list of {min_length} to {max_length} numbers")
        for item in value:
            if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item):
                raise self.error(f"{name!r} holds {item!r}; every entry must be a finite number")
            if not low <= item <= high:
                raise self.error(f"{name!r} holds {item!r}, outside [{low:g}, {high:g}]")
        return value


def read_json(path) -> dict:
    """Parse a calibrator file with the strict reader (size, depth, duplicates, numbers), naming the file."""
    return strictjson.read_json(path, "TwinTrack calibrator", MAX_FILE_BYTES, hint=HINT)


def check_structure(data, source) -> None:
    """Check ``data`` against ``calibrator.schema.json`` (types, ranges, lengths, unknown keys)."""
    validate(data, "calibrator", str(source) if source is not None else "the calibrator", HINT)


def rater_mismatch(bundle, calibrator, calibrator_path) -> Optional[str]:
    """What is wrong when the calibrator was fitted to another number of raters than the bundle
    declares (a clause, no advice); None when they agree or either count is unknown."""
    declared = getattr(bundle, "raters", None)
    fitted = getattr(calibrator, "raters", 0) if calibrator is not None else 0
    if not declared or not fitted or declared == fitted:
        return None
    return (f"{calibrator_path} was fitted to a panel of {fitted} raters, but the model bundle {bundle.folder} "
            f"declares {declared} (its manifest's raters), so its calibrated values would be fractions of "
            "another panel than the bundle documents")


def check_bundle_raters(bundle, calibrator, calibrator_path, allow_mismatch: bool = False) -> Optional[str]:
    """Refuse a calibrator fitted to another number of raters than the model bundle declares.

    A calibrated value is the expected fraction of a panel of K annotators; a bundle's ``raters``
    names the K its outputs are documented for. A calibrator of another panel is usually a file
    mixed up with another project's, so it is refused. A deliberate recalibration to a local panel
    is the good reason to go on: ``allow_mismatch`` (``--allow-rater-mismatch``) then returns the
    warning to print and record instead. None when they agree or either count is unknown.
    """
    problem = rater_mismatch(bundle, calibrator, calibrator_path)
    if problem is None:
        return None
    if allow_mismatch:
        return problem + " (--allow-rater-mismatch: used as asked)."
    raise InputError(problem + ". Pass the calibrator fitted for this bundle, or --allow-rater-mismatch if you "
                     "recalibrated it to your own panel on purpose.")
