"""The one progress-and-cancel mechanism used by every long job.

A job takes a ``progress`` callable ``(fraction, message) -> None`` and a
:class:`CancelToken`. It reports with :func:`report` and calls
``token.check()`` between units of work (cases, patches), which raises
:class:`~TwinTrackLogic.errors.Cancelled` once cancellation was requested.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Callable, Optional

from .errors import Cancelled

ProgressCallback = Callable[[float, str], None]


def no_progress(fraction: float, message: str) -> None:
    """Progress sink that ignores everything."""


class CancelToken:
    """Thread-safe cancellation flag shared between a job and its caller."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if cancellation was requested."""
        if self._event.is_set():
            raise Cancelled("Cancelled by the user; no partial output was kept.")


def scaled(progress: Optional[ProgressCallback], start: float, stop: float) -> ProgressCallback:
    """A callback that maps a sub-job's [0, 1] onto [start, stop] of ``progress``."""
    progress = progress or no_progress

    def sub(fraction: float, message: str) -> None:
        progress(start + (stop - start) * min(max(fraction, 0.0), 1.0), message)

    return sub


class TerminalProgress:
    """A one-line progress bar on stderr for the command line.

    Redraws at most ten times a second; prints plain lines when stderr is not a
    terminal (CI logs), one per distinct message.
    """

    def __init__(self, stream=None, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self._last_draw = 0.0
        self._last_message: Optional[str] = None
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def __call__(self, fraction: float, message: str) -> None:
        fraction = min(max(fraction, 0.0), 1.0)
        if not self._tty:
            if message != self._last_message:
                self.stream.write(f"[{fraction * 100:5.1f} %] {message}\n")
                self.stream.flush()
                self._last_message = message
            return
        now = time.monotonic()
        if fraction < 1.0 and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        filled = int(round(fraction * self.width))
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r[{bar}] {fraction * 100:5.1f} % {message[:60]:<60}")
        if fraction >= 1.0:
            self.stream.write("\n")
        self.stream.flush()
