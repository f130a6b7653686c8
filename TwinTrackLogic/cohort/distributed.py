"""Cohort maps on Dask distributed: a LocalCluster on this machine, or a scheduler's address.

:func:`open_case_map` gives the ``case_map(function, cases)`` that every cohort command takes
(see :mod:`TwinTrackLogic.cohort.casemap`): the built-in ``map`` without a scheduler, else
:class:`DaskCaseMap`, which runs each case as one Dask task and yields the results in case
order. Dask does the scheduling and the fault handling; nothing here is a pool of our own:

- a worker that dies (killed, out of memory) has its case rescheduled on another worker; a case
  that was running on ``allowed-failures + 1`` workers that died (Dask's
  ``distributed.scheduler.allowed-failures``, 3 by default) comes back as a
  :class:`~TwinTrackLogic.cohort.casemap.CaseFailed` and the other cases go on;
- each task is marked a *data producer*, so the scheduler queues the cases itself and hands a
  worker thread one case at a time (``worker-saturation`` 1.0 on a LocalCluster): when a worker
  dies only the case it was running is held responsible, not cases merely queued behind it;
- leaving the context (normally, on an error or on Ctrl-C) cancels what is left and closes the
  client, and the LocalCluster with its worker processes (which leave Ctrl-C to the command).

Dask distributed is an optional extra (``pip install "twintrack[distributed]"``); it is imported
only here, only when a scheduler is asked for.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, Optional

from ..errors import InputError
from .casemap import CaseFailed, CaseMap

LOCAL = "local"
CONNECT_TIMEOUT_S = 30
WAIT_FOR_WORKERS_S = 600
ALLOWED_FAILURES = "distributed.scheduler.allowed-failures"


def _import_distributed():
    try:
        import dask
        import distributed
    except ImportError:
        raise InputError("--scheduler and --workers run cases on Dask distributed, which is not installed. "
                         'Install it with: pip install "twintrack[distributed]"; or leave both options '
                         "out to run in this process.") from None
    return dask, distributed


def local_cpu_count() -> int:
    """CPUs this process may use (the affinity mask, not the machine's count)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return max(os.cpu_count() or 1, 1)


def check_scheduler(scheduler: Optional[str], workers: Optional[int]) -> Optional[str]:
    """``local``, an address, or None (in-process); ``--workers N`` alone means a LocalCluster."""
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be at least 1, not {workers}.")
    if scheduler is None:
        return LOCAL if workers is not None else None
    scheduler = scheduler.strip()
    if not scheduler:
        raise InputError("--scheduler needs `local` or a scheduler address such as tcp://host:8786.")
    return scheduler


def threads_per_task(scheduler: Optional[str], workers: Optional[int]) -> Optional[int]:
    """onnxruntime threads for one case, so that a LocalCluster's workers share the CPUs.

    None (onnxruntime's choice) in-process and on a remote cluster, whose workers know their
    own machines.
    """
    if scheduler != LOCAL:
        return None
    return max(local_cpu_count() // (workers or local_cpu_count()), 1)


@contextmanager
def open_case_map(scheduler: Optional[str] = None, workers: Optional[int] = None,
                  **cluster_options) -> Iterator[CaseMap]:
    """The case map for ``--scheduler`` / ``--workers``; cluster_options go to LocalCluster."""
    scheduler = check_scheduler(scheduler, workers)
    if scheduler is None:
        yield map
        return
    with dask_client(scheduler, workers, **cluster_options) as client:
        yield DaskCaseMap(client)


@contextmanager
def dask_client(scheduler: str, workers: Optional[int] = None, **cluster_options):
    """A Dask client: on a new LocalCluster of ``workers`` single-threaded worker processes
    (default: one per CPU), or connected to the scheduler at ``scheduler`` (then ``workers``,
    if given, is how many workers to wait for)."""
    dask, distributed = _import_distributed()
    if scheduler == LOCAL:
        options = {"n_workers": workers or local_cpu_count(), "threads_per_worker": 1, "processes": True,
                   "silence_logs": logging.ERROR, "preload": [__name__],
                   # No dashboard; the scheduler's HTTP routes on a free port of this host only.
                   "dashboard_address": None, "scheduler_kwargs": {"dashboard_address": "127.0.0.1:0"}}
        options.update(cluster_options)
        with dask.config.set({"distributed.scheduler.worker-saturation": 1.0}):
            cluster = distributed.LocalCluster(**options)
        try:
            with distributed.Client(cluster) as client:
                yield client
        finally:
            cluster.close()
        return
    try:
        client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError) as error:
        raise InputError(f"Could not reach a Dask scheduler at --scheduler {scheduler} ({error}). Start one "
                         "(`dask scheduler`, or dask-jobqueue on a SLURM/PBS cluster), check the address and "
                         "port, or use --scheduler local.") from None
    with client:
        if workers is not None:
            try:
                client.wait_for_workers(workers, timeout=WAIT_FOR_WORKERS_S)
            except (TimeoutError, OSError) as error:
                raise InputError(f"The scheduler at {scheduler} did not get {workers} worker(s) within "
                                 f"{WAIT_FOR_WORKERS_S} s ({error}); start more workers or lower --workers.") from None
        yield client


def dask_setup(worker) -> None:
    """Run by each local worker process as it starts (Dask's preload hook, this module).

    Ctrl-C in a terminal reaches every process of the foreground job. The workers ignore it: the
    command's own process stops the cluster, which ends them, instead of each printing a traceback.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@dataclass
class DaskCaseMap:
    """``case_map(function, cases)`` on a Dask client: one task per case, results in case order.

    Results are yielded as soon as every earlier case is done, and released on the cluster once
    read, so the caller's reduce (and its progress) runs while later cases are still computing.
    """

    client: Any

    def __call__(self, function: Callable[[Any], Any], cases: Iterable[Any]) -> Iterator[Any]:
        _, distributed = _import_distributed()
        cases = list(cases)
        futures = self._submit(function, cases)
        order = {future.key: index for index, future in enumerate(futures)}
        ready: Dict[int, Any] = {}
        following = 0
        try:
            for future in distributed.as_completed(futures):
                ready[order[future.key]] = _outcome(future, distributed)
                futures[order[future.key]] = None  # release it on the cluster
                while following in ready:
                    yield ready.pop(following)
                    following += 1
        finally:
            left = [future for future in futures if future is not None]
            if left:
                self.client.cancel(left)

    def _submit(self, function, cases) -> list:
        from dask._task_spec import Task

        run = uuid.uuid4().hex[:8]
        keys = [f"twintrack-case-{index}-{run}" for index in range(len(cases))]
        # A data producer is queued on the scheduler and sent to a worker only when it has a free
        # thread, however few cases there are (Dask does that by itself only for large groups).
        graph = {key: Task(key, function, case, _data_producer=True) for key, case in zip(keys, cases)}
        return self.client.get(graph, keys, sync=False)


def _outcome(future, distributed):
    """A finished future's result; a case that kept killing its workers becomes CaseFailed."""
    if future.status == "error":
        error = future.exception()
        if isinstance(error, distributed.KilledWorker):
            return CaseFailed(
                f"the Dask worker running this case died {error.allowed_failures + 1} time(s) "
                f"(allowed failures: {error.allowed_failures}); it was not retried again. A worker "
                "dies when a case needs more memory than its limit or crashes the process: run the "
                "case alone to see why, or give the workers more memory."
            )
    return future.result()  # any other error is raised here, with the worker's traceback

