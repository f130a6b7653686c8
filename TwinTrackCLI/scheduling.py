"""`--scheduler` and `--workers`: the options every cohort command shares (not a subcommand)."""

from __future__ import annotations

from pathlib import Path

from TwinTrackLogic.cohort.distributed import LOCAL, check_scheduler, open_case_map, threads_per_task


def add_options(parser) -> None:
    group = parser.add_argument_group(
        "cohort scale (Dask distributed; needs the extra: pip install \"twintrack[distributed]\")")
    group.add_argument("--scheduler", metavar="local|ADDRESS",
                       help="run the cases on Dask: `local` starts a cluster of worker processes on this "
                            "machine; an address (tcp://host:8786) uses a running scheduler, e.g. one "
                            "started by dask-jobqueue on SLURM/PBS (its workers must see the same paths). "
                            "Default: every case in this process")
    group.add_argument("--workers", type=int, metavar="N",
                       help="worker processes of the local cluster (default: one per CPU); with an "
                            "address, wait until N workers have joined. --workers alone means --scheduler local")


def uses_dask(args) -> bool:
    return check_scheduler(args.scheduler, args.workers) is not None


def case_map(args):
    """Context manager: the case map the options ask for (in-process without them)."""
    return open_case_map(args.scheduler, args.workers)


def task_threads(args):
    """onnxruntime threads per case: the local cluster's workers share this machine's CPUs."""
    return threads_per_task(check_scheduler(args.scheduler, args.workers), args.workers)


def absolute(path):
    """Workers (other processes, other machines) resolve paths themselves: give them absolute ones."""
    return None if path is None else Path(path).resolve()


__all__ = ["LOCAL", "add_options", "absolute", "case_map", "task_threads", "uses_dask"]
