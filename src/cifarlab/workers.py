"""One worker-pool mechanism for the package: map a function over items in worker processes.

Workers are started with the "spawn" method (a process that ran torch, or holds threads, is never forked) and run
one BLAS/OpenMP thread each: OpenMP threads spinning in several processes on the same cores made the report's
per-run analyses 2x slower on a 2-core machine. A function that touches neither torch nor an OpenMP pool may have
its workers forked instead (``forkable``: no interpreter start-up). With ``workers <= 1`` everything runs in this
process, so small jobs pay no start-up at all. Used by ``analysis.perrun`` (the report's per-run figures) and
``data.folder`` (decoding image files)."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it, else the CPU count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _one_thread() -> None:
    """Worker initializer: one thread for every BLAS/OpenMP pool, those already loaded (the parent's main module is
    re-imported before this runs) and those loaded later (the environment variables)."""
    os.environ.update({k: "1" for k in THREAD_VARS})
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def imap(fn: Callable[[T], R], items: Iterable[T], workers: int | None = None, *, chunksize: int = 1,
         meanwhile: Callable[[], Any] | None = None, forkable: bool = False) -> Iterator[R]:
    """``fn`` of every item, yielded in the items' order.

    Args:
        fn: a module-level function (workers import it by name); its items and results must pickle.
        items: the inputs; all are submitted at once when iteration starts.
        workers: processes to use; None = the usable cores; ``<= 1`` runs in this process.
        chunksize: items sent to a worker at a time (large for many cheap items, 1 for few costly ones).
        meanwhile: called here once the work is submitted, before the first result is yielded (work that can
            overlap the workers', e.g. drawing figures from other data).
        forkable: ``fn`` uses neither torch nor an OpenMP/BLAS pool (e.g. PIL decoding), so the workers may be
            forked where the platform can: no interpreter start-up and no re-import of the main module, which cost
            seconds per worker. Otherwise (the default) they are spawned.

    Yields:
        ``fn(item)`` for each item, in order. An exception raised by ``fn`` is raised here; a worker that dies
        raises ``concurrent.futures.process.BrokenProcessPool``.
    """
    items = list(items)
    workers = usable_cores() if workers is None else workers
    if workers <= 1 or len(items) <= 1:
        if meanwhile is not None:
            meanwhile()
        yield from map(fn, items)
        return
    fork = forkable and "fork" in multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if fork else "spawn")
    # a forked worker inherits this process's state: it calls into no thread pool, so none is reconfigured
    pool = ProcessPoolExecutor(min(workers, len(items)), mp_context=context, initializer=None if fork else _one_thread)
    try:
        results = pool.map(fn, items, chunksize=chunksize)
        if meanwhile is not None:
            meanwhile()
        yield from results
    finally:  # also when the caller stops early or is interrupted: queued items are dropped, not waited for
        pool.shutdown(wait=True, cancel_futures=True)
