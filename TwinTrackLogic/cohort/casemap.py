"""The per-case map of every cohort command, and how one case's failure travels.

A cohort command (calibrate, evaluate, cohort predict) is a map over cases and
a reduce in the caller. The map is a parameter, ``case_map(function, cases)``,
that returns the results **in case order**, lazily: the built-in ``map`` runs
in-process (the default, as before), :mod:`TwinTrackLogic.cohort.distributed` runs
the same function on Dask workers. For the two to be interchangeable:

- ``function`` is picklable: a top-level function, or a ``functools.partial``
  of one over paths and settings (never a live onnxruntime session: a task
  builds what it needs in its own process, see ``pipeline.process_ensemble``);
- a case that fails for a reason meant for people comes back as a
  :class:`CaseFailed` value, not an exception, so the other cases go on. The
  function is wrapped with :func:`guarded` for that; the Dask map also yields a
  :class:`CaseFailed` for a case that kept killing its worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from ..errors import Cancelled, TwinTrackError

CaseMap = Callable[[Callable[[Any], Any], Iterable[Any]], Iterator[Any]]


@dataclass(frozen=True)
class CaseFailed:
    """One case could not be done; ``message`` says why (for the run's summary)."""

    message: str


@dataclass(frozen=True)
class guarded:  # noqa: N801 - used like a function: guarded(function)(case)
    """``function(case)``, or :class:`CaseFailed` when it raises a :class:`TwinTrackError`.

    Cancelled still propagates (it stops the run); any other exception is a bug
    and propagates with its traceback.
    """

    function: Callable[[Any], Any]

    def __call__(self, case):
        try:
            return self.function(case)
        except Cancelled:
            raise
        except TwinTrackError as error:
            return CaseFailed(str(error))
