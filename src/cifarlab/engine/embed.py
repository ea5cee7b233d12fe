"""Embeddings of whole splits (batched, no grad) and the evaluations that use them (kNN)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from cifarlab.data.batches import eval_batches
from cifarlab.engine.device import autocast


def pads(device: torch.device) -> bool:
    """Whether evaluation passes on ``device`` pad their batches (:class:`Padded`): on CUDA, where every new input
    shape builds cuDNN plans. Callers pass it only for models in eval mode."""
    return device.type == "cuda"


def padded_size(n: int) -> int:
    """The batch a forward pass of ``n`` rows is padded to: the next power of two. Evaluation then meets a handful
    of shapes (1024 for every batch of a 1024-batch pass, its last partial batch included) instead of a new one per
    split size: on CUDA every new shape builds new cuDNN execution plans, which cost seconds for a depthwise-conv
    network (docs/results.md, "Cold shapes")."""
    return 1 << max(n - 1, 0).bit_length()


def pad_rows(x: torch.Tensor, size: int) -> torch.Tensor:
    """``x`` with zero rows appended along dim 0 up to ``size`` rows."""
    if len(x) >= size:
        return x
    return torch.cat([x, x.new_zeros((size - len(x), *x.shape[1:]))])


class Padded:
    """Calls ``fn`` on its input padded to :func:`padded_size` rows and returns the outputs' first rows (a tensor or
    a tuple of tensors). Only for modules in eval mode: padding rows would change batch statistics."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, x: torch.Tensor) -> Any:
        n = len(x)
        out = self.fn(pad_rows(x, padded_size(n)))
        return tuple(o[:n] for o in out) if isinstance(out, tuple) else out[:n]


@torch.no_grad()
def embed(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int, device: torch.device,
          amp: str = "auto", pad: bool | None = None) -> torch.Tensor:
    """``fn(x[batch])`` over all of ``x`` (uint8 on any device), concatenated as float32 on ``device``.

    ``pad`` (default: :func:`pads`, i.e. on CUDA): each batch goes through ``fn`` padded to :func:`padded_size`
    rows. That assumes ``fn`` treats rows independently (eval mode); pass ``pad=False`` for a model normalising by
    batch statistics."""
    call = Padded(fn) if (pad if pad is not None else pads(device)) else fn
    out = []
    for sl in eval_batches(len(x), batch_size):
        xb = x[sl].to(device, non_blocking=True)
        with autocast(device, amp):
            out.append(call(xb).float())
    return torch.cat(out) if out else torch.zeros(0, device=device)


@torch.no_grad()
def knn_predict(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor, num_classes: int, k: int = 200,
                temperature: float = 0.1, batch_size: int = 1024) -> torch.Tensor:
    """Weighted kNN on cosine similarity (Wu et al. 2018, as in the SimCLR/SupCon evaluations): each of the k
    nearest train embeddings votes for its class with weight exp(sim / temperature). Returns (M, num_classes)
    vote scores."""
    train_f = F.normalize(train_f.float(), dim=1)
    k = min(k, len(train_f))
    scores = []
    for sl in eval_batches(len(test_f), batch_size):
        sim = F.normalize(test_f[sl].float(), dim=1) @ train_f.T  # (b, N)
        top_sim, top_idx = sim.topk(k, dim=1)  # (b, k)
        weights = (top_sim / temperature).exp()
        votes = torch.zeros(len(top_idx), num_classes, device=test_f.device)
        votes.scatter_add_(1, train_y[top_idx], weights)
        scores.append(votes)
    return torch.cat(scores)
