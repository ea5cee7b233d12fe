"""Batches as index tensors into a dataset held whole on the compute device (no DataLoader, no workers)."""

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
