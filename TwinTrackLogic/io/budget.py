"""How much memory a job may plan to use, and the header check that refuses what will not fit."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError
from .geometry import fmt

# Working set of a TwinTrack job per input voxel: the CT as float32, the raw and
# calibrated probability maps, masks and resampling temporaries.
WORKING_BYTES_PER_VOXEL = 32
BUDGET_VARIABLE = "TWINTRACK_MEMORY_BUDGET_MB"
MAX_BUDGET_MB = 1 << 30  # a petabyte: anything larger is a typo


def memory_budget_bytes() -> int:
    """Memory a job may plan to use: TWINTRACK_MEMORY_BUDGET_MB if set, else 80 % of
    what the system reports available (Linux /proc/meminfo; 8 GiB if unknown)."""
    configured = os.environ.get(BUDGET_VARIABLE, "").strip()
    if configured:
        try:
            megabytes = float(configured)
        except ValueError:
            megabytes = math.nan
        if not (math.isfinite(megabytes) and 0 < megabytes <= MAX_BUDGET_MB):
            raise InputError(
                f"The environment variable {BUDGET_VARIABLE} is {configured[:40]!r}; set it to a number of "
                f"megabytes above 0 (for example {BUDGET_VARIABLE}=8192 for 8 GiB), or unset it to use 80 % "
                "of the available memory.")
        return int(megabytes * 1024 * 1024)
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(int(line.split()[1]) * 1024 * 0.8)
    except OSError:
        pass
    return 8 << 30


def check_shape(path: Path, size: Sequence[int], components: int) -> None:
    """Refuse anything but a 3D scalar volume, and volumes too large for memory."""
    if len(size) != 3 or components != 1:
        dims = "x".join(str(s) for s in size)
        raise InputError(
            f"{path} is a {len(size)}D image ({dims}, {components} component(s) per voxel); "
            "TwinTrack needs a 3D scalar volume. Export a single 3D volume (one time point, "
            "one channel) and try again."
        )
    needed = int(np.prod(size, dtype=np.int64)) * WORKING_BYTES_PER_VOXEL
    budget = memory_budget_bytes()
    if needed > budget:
        raise InputError(
            f"{path} is too large to process here: {fmt(size)} voxels need about "
            f"{needed / 2**30:.1f} GiB of working memory, and {budget / 2**30:.1f} GiB are available. "
            "Crop or downsample the volume (for example to the abdomen), or run on a machine with "
            "more memory (TWINTRACK_MEMORY_BUDGET_MB sets the budget)."
        )
