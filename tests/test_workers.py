"""The package's worker pool: results in order, in spawned processes with one BLAS/OpenMP thread, or in this
process for workers <= 1; ``meanwhile`` runs while the workers work."""

import os

from cifarlab.workers import imap


def _where(x: int) -> tuple[int, int, str | None, int]:
    import numpy as np  # noqa: F401  (loads OpenBLAS, whose default is one thread per core)
    from threadpoolctl import threadpool_info

    threads = max((p["num_threads"] for p in threadpool_info()), default=0)
    return x * x, os.getpid(), os.environ.get("OMP_NUM_THREADS"), threads


def test_workers_return_results_in_order_from_other_processes_with_one_thread():
    called = []
    out = list(imap(_where, range(6), workers=2, meanwhile=lambda: called.append(os.getpid())))
    assert [r[0] for r in out] == [x * x for x in range(6)]
    assert called == [os.getpid()]  # meanwhile ran here
    assert {r[1] for r in out} and os.getpid() not in {r[1] for r in out}
    assert {r[2] for r in out} == {"1"} and {r[3] for r in out} == {1}  # every BLAS/OpenMP pool: one thread


def test_one_worker_runs_in_this_process():
    called = []
    out = list(imap(_where, [3, 4], workers=1, meanwhile=lambda: called.append(1)))
    assert [r[0] for r in out] == [9, 16] and {r[1] for r in out} == {os.getpid()} and called == [1]
    assert all(r[3] >= 1 for r in out)  # a BLAS pool is loaded, so the worker check above measures one
