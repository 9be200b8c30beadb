"""Accuracy evaluation of the analysis core on labelled public datasets (../shared/data)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, TypeVar

J = TypeVar("J")
R = TypeVar("R")

#: The labelled datasets, ``../shared/data`` beside the repository root
#: (operator/ajan/evaluation/ -> parents[3] is the root), as in a fresh clone and in CI.
SHARED_DATA: Final = Path(__file__).resolve().parents[3].parent / "shared" / "data"


def pool_map(fn: Callable[[J], R], jobs: Sequence[J], processes: int) -> list[R]:
    """``[fn(job) for job in jobs]`` in at most ``processes`` forked workers (1: in this process),
    results in the order of ``jobs``. fork: the workers inherit the imported numpy and data instead
    of re-importing ajan per job; one job per task, so long jobs do not queue behind each other."""
    processes = max(1, min(processes, len(jobs)))
    if processes == 1:
        return [fn(job) for job in jobs]
    with multiprocessing.get_context("fork").Pool(processes=processes) as pool:
        return pool.map(fn, jobs, chunksize=1)
