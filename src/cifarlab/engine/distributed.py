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


def sync_batchnorm(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """BatchNorm layers that compute their batch statistics over every rank (``torch.nn.SyncBatchNorm``), in place
    where the root is not itself a BatchNorm; parameters, buffers and state-dict keys are unchanged."""
    if device.type != "cuda":
        from cifarlab.errors import ConfigError

        raise ConfigError("sync_bn=true needs CUDA devices (torch's SyncBatchNorm does not run on the CPU); for "
                          "CPU/gloo runs use a GroupNorm model such as cnn_small_gn, which needs no synchronisation")
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if get().enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_max(t: torch.Tensor) -> torch.Tensor:
    if get().enabled:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward sums every rank's gradient and keeps this rank's slice."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, t.contiguous())
        ctx.n = t.shape[0]
        return torch.cat(parts, 0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        rank = dist.get_rank()
        return grad[rank * ctx.n:(rank + 1) * ctx.n]


def gather_with_grad(t: torch.Tensor) -> torch.Tensor:
    """Concatenate ``t`` from every rank along dim 0 (equal sizes), with gradients flowing back: every rank
    computes the same global loss, so this rank's slice receives the sum of all ranks' gradients, world x the
    true one; DDP's averaging divides by the world size, so parameter gradients equal single-process training on
    the global batch. Integer tensors (labels) are gathered without autograd."""
    if not get().enabled:
        return t
    if not t.is_floating_point():
        parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, t.contiguous())
        return torch.cat(parts, 0)
    return _GatherWithGrad.apply(t)


def barrier() -> None:
    if get().enabled:
        dist.barrier()
