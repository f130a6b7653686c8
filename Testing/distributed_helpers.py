"""Picklable per-case hooks for the Dask tests, importable by worker processes.

They plug into ``fit_cohort(probability_for=...)``, a public parameter: the runtime code has
no test switch. Each reads the case's probability from a stash folder (so a case fitted with
the hook gives the same statistics as one with its probability file), and kills the worker
process it runs in, the way an out-of-memory kill or a crashing runtime would.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from TwinTrackLogic.io import read_image


def _stashed(stash: str, case) -> np.ndarray:
    return read_image(Path(stash) / f"{case.name}.nii.gz", dtype=np.float32).array


@dataclass(frozen=True)
class KillWorkerOnce:
    """The first process that asks for ``case`` dies (a marker file remembers it); later ones get the map."""

    stash: str
    case: str
    marker: str

    def __call__(self, case) -> np.ndarray:
        if case.name == self.case and not Path(self.marker).exists():
            Path(self.marker).write_text(str(os.getpid()))
            os._exit(17)
        return _stashed(self.stash, case)


@dataclass(frozen=True)
class KillWorkerAlways:
    """Every process that asks for ``case`` dies: a poison case."""

    stash: str
    case: str

    def __call__(self, case) -> np.ndarray:
        if case.name == self.case:
            os._exit(17)
        return _stashed(self.stash, case)
