"""Batches as index tensors into a dataset held whole on the compute device, or in host memory when it does not fit
there (:func:`gather` copies each batch over); no DataLoader, no workers."""

from __future__ import annotations

from collections.abc import Iterator

import torch


def num_batches(n: int, batch_size: int, drop_last: bool) -> int:
    return n // batch_size if drop_last and n >= batch_size else -(-n // batch_size)


def train_batches(indices: torch.Tensor, batch_size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Shuffled batches of ``indices`` (on ``gen``'s device); the last partial batch is dropped when at least one
    full batch exists, so every step sees the same batch size (and BatchNorm never sees a batch of one)."""
    perm = indices[torch.randperm(len(indices), generator=gen, device=gen.device).to(indices.device)]
    for i in range(num_batches(len(perm), batch_size, drop_last=True)):
        yield perm[i * batch_size:(i + 1) * batch_size]


def eval_batches(n: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


def _on(x: torch.Tensor, device: torch.device) -> bool:
    return x.device.type == device.type and (device.index is None or x.device.index == device.index)


def gather(x: torch.Tensor, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``x[idx]`` on ``device``, wherever ``x`` lives.

    On the device already: a plain index (``idx`` is moved there if it is not). On the host with a CUDA device: the
    rows are gathered on the host into a pinned buffer and copied with ``non_blocking=True``, so the copy overlaps
    the previous step's kernels. PyTorch's caching host allocator keeps a pinned buffer until its copy has run, so
    a fresh buffer per batch is safe and, after the first batches, costs no new allocation. Keep ``idx`` on the
    host when ``x`` is: an index on the device would be read back with a synchronisation per batch.
    """
    if _on(x, device):
        return x[idx.to(x.device)]
    idx = idx.to(x.device)
    if device.type != "cuda":
        return x[idx].to(device)
    buf = torch.empty((len(idx), *x.shape[1:]), dtype=x.dtype, pin_memory=True)
    torch.index_select(x, 0, idx, out=buf)
    return buf.to(device, non_blocking=True)
