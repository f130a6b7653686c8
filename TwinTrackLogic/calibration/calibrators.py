"""The calibrator interface: map an ensemble's tumour probability p to the expected MHR.

Every method is one subclass of :class:`Calibrator` in one file of this
package; defining the class registers it under its ``method`` name in
:data:`METHODS` (``__init_subclass__``), which is what the command line, the
file format and cross-validation read. A subclass declares:

- ``method``: the name in files and on the command line;
- ``options``: the settings its ``fit`` takes (:class:`Option`; the command
  line offers each as ``--<method>-<name>``);
- ``fit(statistics, provenance, **options)``: a fitted instance from
  :class:`~.statistics.CalibrationStatistics`;
- ``_transform_chunk(p)``: calibrated values of a 1-D float32 chunk;
- ``parameters()`` / ``_from_parameters(parameters, problem)``: the JSON
  ``parameters`` section, written and checked.

What the fit was made from (cases, voxels, raters, region, ...) is a frozen
:class:`Provenance` given to the constructor, not attributes set afterwards.
``transform`` (chunked: the output is the only full-size allocation),
``to_dict`` / ``from_dict`` / ``save`` / :func:`load_calibrator` are shared.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, ClassVar, Dict, Optional, Tuple, Type

import numpy as np

from .. import __version__
from ..errors import InputError
from ..io import write_json
from ..schemas import closest
from .fileformat import CALIBRATOR_FORMAT, CALIBRATOR_VERSION, FileProblem, check_structure, read_json
from .statistics import CalibrationStatistics, _check_unit_interval

# Small enough that a chunk's temporaries stay in the CPU cache (measured fastest).
TRANSFORM_CHUNK_VOXELS = 1 << 16
CASE_WEIGHTS = ("voxels", "equal")


@dataclass(frozen=True)
class Option:
    """One setting of a method's ``fit``: keyword ``name``, Python ``type``, default, help."""

    name: str
    type: type
    default: Any
    help: str
    choices: Optional[Tuple[Any, ...]] = None


@dataclass(frozen=True)
class Provenance:
    """What a calibrator was fitted on, as written in the file's ``fitting`` section.

    raters: raters per case (0: unknown); cases, voxels: how much data went in;
    region: how each case's fitting region was made; probability_source: the
    probability file name or ``bundle:<id>``; case_weight: ``voxels`` (every
    voxel counts once) or ``equal`` (every case carries the same weight);
    options: the method's settings; cross_validation: the ``--cv`` report, if any.
    """

    raters: int = 0
    cases: int = 0
    voxels: int = 0
    region: str = ""
    probability_source: str = ""
    case_weight: str = "voxels"
    options: Dict[str, Any] = field(default_factory=dict)
    cross_validation: Optional[Dict[str, Any]] = None
    software_version: str = __version__
    created: str = ""

    def to_dict(self) -> dict:
        fitting = {"region": self.region, "cases": self.cases, "voxels": self.voxels, "raters": self.raters,
                   "probability_source": self.probability_source, "case_weight": self.case_weight,
                   "options": dict(self.options)}
        if self.cross_validation is not None:
            fitting["cross_validation"] = self.cross_validation
        return fitting

    @classmethod
    def from_dict(cls, data: dict, problem: FileProblem) -> "Provenance":
        fitting = problem.key(data, "fitting")
        if not isinstance(fitting, dict):
            raise problem.error("'fitting' must be a JSON object")
        case_weight = problem.string(fitting.get("case_weight", "voxels"), "fitting.case_weight", 20)
        if case_weight not in CASE_WEIGHTS:
            raise problem.error(f"'fitting.case_weight' is {case_weight!r}; known: {', '.join(CASE_WEIGHTS)}")
        options = fitting.get("options", {})
        if not isinstance(options, dict) or not all(
                isinstance(value, (int, float, str)) and not isinstance(value, bool) for value in options.values()):
            raise problem.error("'fitting.options' must be an object of numbers and strings")
        cross_validation = fitting.get("cross_validation")
        if cross_validation is not None and not isinstance(cross_validation, dict):
            raise problem.error("'fitting.cross_validation' must be a JSON object")
        return cls(
            raters=problem.integer(problem.key(fitting, "raters", "fitting"), "fitting.raters"),
            cases=problem.integer(problem.key(fitting, "cases", "fitting"), "fitting.cases"),
            voxels=problem.integer(problem.key(fitting, "voxels", "fitting"), "fitting.voxels"),
            region=problem.string(problem.key(fitting, "region", "fitting"), "fitting.region"),
            probability_source=problem.string(problem.key(fitting, "probability_source", "fitting"),
                                              "fitting.probability_source"),
            case_weight=case_weight, options=dict(options), cross_validation=cross_validation,
            software_version=problem.string(problem.key(data, "software_version"), "software_version", 100),
            created=problem.string(problem.key(data, "created"), "created", 100),
        )


METHODS: Dict[str, Type["Calibrator"]] = {}


class Calibrator(abc.ABC):
    """A fitted map p -> expected MHR. Subclasses: see the module docstring."""

    method: ClassVar[str] = ""
    options: ClassVar[Tuple[Option, ...]] = ()

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.method:
            return
        if cls.method in METHODS:
            raise TypeError(f"Two calibrators are named {cls.method!r}: {METHODS[cls.method]} and {cls}")
        METHODS[cls.method] = cls

    def __init__(self, provenance: Optional[Provenance] = None) -> None:
        self.provenance = provenance or Provenance()

    # Read-only views of the provenance, for the callers that show them.
    raters = property(lambda self: self.provenance.raters)
    cases = property(lambda self: self.provenance.cases)
    voxels = property(lambda self: self.provenance.voxels)
    region = property(lambda self: self.provenance.region)
    probability_source = property(lambda self: self.provenance.probability_source)

    # --- the contract -----------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def fit(cls, statistics: CalibrationStatistics, provenance: Optional[Provenance] = None,
            **options) -> "Calibrator":
        """A calibrator fitted on ``statistics`` (weights: its ``counts``)."""

    @abc.abstractmethod
    def _transform_chunk(self, p: np.ndarray) -> np.ndarray:
        """Calibrated values of the 1-D float32 chunk ``p`` (clipped to [0, 1] by the caller)."""

    @abc.abstractmethod
    def parameters(self) -> dict:
        """The file's ``parameters`` section."""

    @classmethod
    @abc.abstractmethod
    def _from_parameters(cls, parameters: dict, problem: FileProblem,
                         provenance: Provenance) -> "Calibrator":
        """An instance from a ``parameters`` section, every value checked (``problem.error``)."""

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
            values = np.asarray(self._transform_chunk(chunk.astype(np.float32, copy=False)), dtype=np.float32)
            np.minimum(np.maximum(values, 0.0), 1.0, out=flat_out[start:start + TRANSFORM_CHUNK_VOXELS])
        return calibrated

    __call__ = transform

    # --- file -------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": CALIBRATOR_FORMAT,
            "version": CALIBRATOR_VERSION,
            "method": self.method,
            "parameters": self.parameters(),
            "fitting": self.provenance.to_dict(),
            "software_version": self.provenance.software_version,
            "created": self.provenance.created,
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
            suggestion = closest(method, list(METHODS)) if isinstance(method, str) else None
            raise problem.error(f"unknown method {method!r}{f' (did you mean {suggestion!r}?)' if suggestion else ''}; "
                                f"known: {', '.join(METHODS)}")
        if cls is not Calibrator and method != cls.method:
            raise problem.error(f"it holds a {method} calibrator, not {cls.method}")
        parameters = problem.key(data, "parameters")
        if not isinstance(parameters, dict):
            raise problem.error("'parameters' must be a JSON object")
        provenance = Provenance.from_dict(data, problem)
        return METHODS[method]._from_parameters(parameters, problem, provenance)

    def save(self, path) -> None:
        """Write the calibrator JSON to ``path`` atomically."""
        write_json(path, self.to_dict())

    def describe(self) -> str:
        return f"{self.method} calibrator"


def refuse_options(method: type, options: Dict[str, Any]) -> None:
    """TypeError, as Python's own, for options a :meth:`Calibrator.fit` does not take."""
    if options:
        raise TypeError(f"{method.__name__}.fit() got unexpected keyword argument(s) {', '.join(map(repr, options))}")


def check_options(method: str, options: Dict[str, Any]) -> Dict[str, Any]:
    """``options`` completed with ``method``'s defaults; InputError naming an unknown or bad one."""
    if method not in METHODS:
        raise InputError(f"Unknown calibration method {method!r}; choose one of {', '.join(METHODS)}.")
    declared = {option.name: option for option in METHODS[method].options}
    unknown = sorted(set(options) - set(declared))
    if unknown:
        known = ", ".join(declared) or "none"
        raise InputError(f"The {method} calibrator has no option {', '.join(unknown)} (its options: {known}).")
    completed = {}
    for name, option in declared.items():
        value = options.get(name, option.default)
        if option.choices is not None and value not in option.choices:
            raise InputError(f"The {method} option {name} must be one of {', '.join(map(str, option.choices))}, "
                             f"not {value!r}.")
        completed[name] = value
    return completed


def fit_calibrator(statistics: CalibrationStatistics, method: str = "isotonic", *, region: str = "",
                   probability_source: str = "", case_weight: str = "voxels",
                   cross_validation: Optional[dict] = None, **options) -> Calibrator:
    """Fit a calibrator of ``method`` from ``statistics``.

    region, probability_source, case_weight, cross_validation: provenance
    written into the file (see :class:`Provenance`). options: method settings
    (``METHODS[method].options``; e.g. histogram: ``bins``, ``strategy``).
    """
    options = check_options(method, options)
    if statistics.voxels == 0:
        raise InputError("There are no voxels to fit a calibrator on: every case's region was empty "
                         "or no case could be used.")
    provenance = Provenance(raters=int(statistics.raters or 0), cases=int(statistics.cases),
                            voxels=statistics.voxels, region=str(region),
                            probability_source=str(probability_source), case_weight=case_weight,
                            options=options, cross_validation=cross_validation,
                            created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return METHODS[method].fit(statistics, provenance, **options)


def load_calibrator(path) -> Calibrator:
    """Read and validate a calibrator JSON file; InputError naming the file on anything wrong."""
    return Calibrator.from_dict(read_json(path), source=path)
