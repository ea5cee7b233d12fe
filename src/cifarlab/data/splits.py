"""Reproducible stratified subsets and the validation split carved from train.

The test split is never touched here: model selection uses ``val`` only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from cifarlab.errors import ConfigError


@dataclass
class Split:
    """Indices into the dataset's train split (sorted within each part)."""

    train: torch.Tensor  # (n_train,) int64
    val: torch.Tensor  # (n_val,) int64

    def digest(self) -> str:
        h = hashlib.sha256(self.train.numpy().tobytes())
        h.update(b"|")
        h.update(self.val.numpy().tobytes())
        return h.hexdigest()


def make_split(labels: torch.Tensor, *, per_class: int = 0, train_fraction: float = 1.0, val_fraction: float = 0.1,
               seed: int = 0) -> Split:
    """Pick a stratified subset of train (``per_class`` images per class or ``train_fraction``), then hold out
    ``val_fraction`` of each class of that subset for validation.

    The permutation depends only on ``seed`` and the labels, so the same seed gives the same subset for every
    method, and a larger ``per_class`` gives a superset of a smaller one.
    """
    gen = torch.Generator().manual_seed(seed)
    counts = torch.bincount(labels)
    if per_class and per_class > int(counts.min()):
        smallest = int(counts.argmin())
        raise ConfigError(f"per_class={per_class} is more than class {smallest} has ({int(counts.min())} train "
                          f"images); allowed: <= {int(counts.min())}")
    train_parts, val_parts = [], []
    for c in range(len(counts)):
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n = per_class if per_class else max(1, round(len(idx) * train_fraction))
        idx = idx[:n]
        n_val = round(n * val_fraction)
        if val_fraction > 0 and n_val == 0 and n >= 2:
            n_val = 1  # every class is represented in validation
        val_parts.append(idx[:n_val])
        train_parts.append(idx[n_val:])
    train = torch.cat(train_parts).sort().values
    val = torch.cat(val_parts).sort().values
    if len(train) == 0:
        raise ConfigError("the subset leaves no training images; raise per_class or train_fraction")
    return Split(train=train, val=val)


def stratified_sample(labels: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """About ``n`` indices with every class in proportion (for saving test embeddings)."""
    if n <= 0:
        return torch.zeros(0, dtype=torch.long)
    if n >= len(labels):
        return torch.arange(len(labels))
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(labels), generator=gen)
    # a random permutation then a stable sort by label gives each class a random order; take evenly per class
    order = perm[torch.sort(labels[perm], stable=True).indices]
    counts = torch.bincount(labels)
    keep = []
    start = 0
    for c in counts.tolist():
        keep.append(order[start:start + round(n * c / len(labels))])
        start += c
    return torch.cat(keep).sort().values
