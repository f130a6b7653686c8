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
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, Tuple

from ..errors import Cancelled, TwinTrackError
from ..progress import CancelToken, ProgressCallback, no_progress

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


def _outcome_text(outcome) -> str:
    return f"failed: {outcome.message.splitlines()[0]}" if isinstance(outcome, CaseFailed) else "done"


def each_case(function: Callable[[Any], Any], cases: Sequence[Any], case_map: CaseMap = map,
              progress: Optional[ProgressCallback] = None, token: Optional[CancelToken] = None,
              status: Callable[[Any], str] = _outcome_text) -> Iterator[Tuple[Any, Any]]:
    """The loop every cohort command shares: ``function`` on each case through ``case_map``.

    Yields ``(case, outcome)`` in case order, whatever ran the cases (so sums merged in this
    order are the same bit for bit); ``outcome`` is the function's value or a :class:`CaseFailed`.
    Before each case the cancel token is checked; after it, progress says which case of how many
    and ``status(outcome)``.
    """
    progress = progress or no_progress
    outcomes = iter(case_map(guarded(function), cases))
    for number, case in enumerate(cases):
        if token is not None:
            token.check()
        outcome = next(outcomes)
        yield case, outcome
        progress((number + 1) / len(cases), f"{case.name}: {status(outcome)} ({number + 1} of {len(cases)})")
