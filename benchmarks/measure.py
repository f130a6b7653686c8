"""What several benchmarks measure the same way (imported by the scripts beside it).

- :func:`status_mb`: a field of this process's ``/proc/self/status`` in MB (Linux): ``VmRSS`` is
  the resident memory now, ``VmHWM`` its peak (unlike ``ru_maxrss`` not inherited over exec);
- :func:`median_seconds`: the median wall time of repeated calls.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable


def status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"{field} not found in /proc/self/status (these benchmarks measure memory on Linux)")


def median_seconds(function: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)
