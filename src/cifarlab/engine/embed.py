"""Embeddings of whole splits (batched, no grad) and the evaluations that use them (kNN)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from cifarlab.data.batches import eval_batches
from cifarlab.engine.device import autocast


@torch.no_grad()
def embed(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int, device: torch.device,
          amp: str = "auto") -> torch.Tensor:
    """``fn(x[batch])`` over all of ``x`` (uint8 on any device), concatenated as float32 on ``device``."""
    out = []
    for sl in eval_batches(len(x), batch_size):
        xb = x[sl].to(device, non_blocking=True)
        with autocast(device, amp):
            out.append(fn(xb).float())
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
