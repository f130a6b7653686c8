"""Termination signals unwind like Ctrl-C, so nothing partial is left behind.

Python turns SIGINT into KeyboardInterrupt, which unwinds the stack: every
``StagedOutputs`` block on the way removes its temporaries. SIGTERM (``kill``, a batch
scheduler, a closing container) and SIGHUP (a closed terminal or SSH session) would
otherwise end the process on the spot and leave ``.partial`` files. Inside
:func:`signals_unwind` they raise :class:`Terminated` instead, which unwinds the same way.
A front end (the command line, a cohort runner, a worker process) wraps its run in it and
exits with ``128 + signal number`` (143 for SIGTERM, 129 for SIGHUP; 130 for SIGINT).
:func:`signals_deferred` marks a step that must not be cut in two (publishing outputs).
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator, List

UNWINDING_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class Terminated(BaseException):
    """A termination signal arrived. A BaseException, like KeyboardInterrupt, so that code which
    handles errors (a cohort run skipping a bad case) never swallows it."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(f"terminated by {self.name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_deferring = [0]  # depth of signals_deferred blocks
_deferred: List[int] = []  # signals that arrived inside one


@contextmanager
def signals_unwind() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Terminated` and SIGINT KeyboardInterrupt
    (once: a second signal during the clean-up is ignored, so the clean-up finishes); inside a
    :func:`signals_deferred` block they wait for its end. Previous handlers come back afterwards.
    Outside the main thread (where Python cannot set handlers) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised: List[int] = []

    def handler(signum, frame):
        if raised:
            return
        if _deferring[0]:
            _deferred.append(signum)
            return
        raised.append(signum)
        _raise(signum)

    handled = (*UNWINDING_SIGNALS, signal.SIGINT)
    previous = {signum: signal.signal(signum, handler) for signum in handled}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _raise(signum: int) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """A step that must not be cut in two (renaming a set of outputs into place): a signal that
    arrives inside the block is raised when the block ends, not in the middle of it."""
    _deferring[0] += 1
    try:
        yield
    finally:
        _deferring[0] -= 1
        if not _deferring[0] and _deferred:
            signum = _deferred[0]
            _deferred.clear()
            _raise(signum)
