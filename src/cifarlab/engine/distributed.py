"""torch.distributed helpers: ``cifarlab train`` runs unchanged under ``torchrun --nproc-per-node N`` (and
multi-node rendezvous). Rank 0 alone writes the run directory; metrics are summed over ranks."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def setup() -> Dist:
    """Join the process group torchrun describes in the environment (no-op for a single process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and dist.is_available() and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return get()


def get() -> Dist:
    if not (dist.is_available() and dist.is_initialized()):
        return Dist()
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if get().enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_max(t: torch.Tensor) -> torch.Tensor:
    if get().enabled:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def gather_with_grad(t: torch.Tensor) -> torch.Tensor:
    """Concatenate ``t`` from every rank along dim 0, with gradients flowing back to each rank's part (the
    backward sums every rank's gradient for this rank's slice; DDP's averaging then divides by the world size,
    so parameter gradients equal single-process training on the global batch)."""
    if not get().enabled:
        return t
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(t), 0)


def barrier() -> None:
    if get().enabled:
        dist.barrier()
