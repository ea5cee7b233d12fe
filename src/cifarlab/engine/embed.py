"""Embeddings of whole splits (batched, no grad) and the evaluations that use them (kNN)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from cifarlab import progress as progress_bar
from cifarlab.data.batches import eval_batches
from cifarlab.engine.device import autocast

# Rows per model call tried on the CPU; the faster per image serves the rest of the pass (RowTuner). Measured on the
# quiet 2-core machine with the CPU allocator retaining freed memory (engine.device.retain_freed_memory), frozen
# EfficientNet-Lite0 was fastest in calls of 64 rows at 128 and 224 px and of 256 rows at 64 and 96 px, each within
# 1% of whole 1024-image batches or better (docs/results.md, "Frozen embedding on the CPU"); calls of 32-64 rows lost
# under 5x oversubscription (every operator's thread barrier waits for a descheduled thread). Hence a timed choice.
CPU_ROWS = (64, 256)
# rows per call when deterministic algorithms are on: a timed choice could change the outputs' last bits run to run
CPU_ROWS_FIXED = 64


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


class RowTuner:
    """Picks the rows per model call of a CPU embedding pass by timing: each of ``choices`` runs twice, interleaved
    (so a change in machine load hits them alike); the second call of each is timed (the first builds oneDNN's
    kernels for that shape), and the one with the least seconds per row serves the rest of the pass. Every trial
    call is real work whose output is kept."""

    def __init__(self, choices: tuple[int, ...] = CPU_ROWS) -> None:
        self.plan = list(choices) * 2
        self.done = 0
        self.seconds: dict[int, float] = {}
        self.rows: dict[int, int] = {}
        self.best: int | None = None

    def next(self) -> int:
        """Rows for the next call."""
        return self.best if self.best is not None else self.plan[self.done]

    def record(self, wanted: int, rows: int, seconds: float) -> None:
        """A call that asked for ``wanted`` rows ran ``rows`` of them (fewer at a batch's end) in ``seconds``."""
        if self.best is not None:
            return
        if self.done >= len(self.plan) // 2:  # the second round
            self.seconds[wanted] = seconds
            self.rows[wanted] = rows
        self.done += 1
        if self.done == len(self.plan):
            self.best = min(self.seconds, key=lambda r: self.seconds[r] / max(self.rows[r], 1))


@torch.no_grad()
def embed(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int, device: torch.device,
          amp: str = "auto", pad: bool | None = None, progress: progress_bar.Line = progress_bar.Line(),
          cpu_rows: int | None = None) -> torch.Tensor:
    """``fn(x[batch])`` over all of ``x`` (uint8 on any device), concatenated as float32 on ``device``.

    Args:
        fn: uint8 batch -> (rows, ...) outputs; treats rows independently unless ``pad=False``.
        x: (N, C, H, W) uint8 images.
        batch_size: rows moved to ``device`` at a time.
        amp: autocast mode (:func:`engine.device.autocast`).
        pad: each batch goes through ``fn`` padded to :func:`padded_size` rows (default: :func:`pads`, i.e. on
            CUDA). That assumes ``fn`` treats rows independently (eval mode); pass ``pad=False`` for a model
            normalising by batch statistics: its batches then reach ``fn`` whole, on every device.
        progress: a progress line on stderr with the images/s: its mode (``on`` | ``off`` | ``auto``) and label
            (:class:`cifarlab.progress.Line`; default: none).
        cpu_rows: on the CPU, rows per call of ``fn`` (batches are cut into such slices; cache-sized calls are
            faster there). Default: timed on the first slices (:class:`RowTuner`), or ``CPU_ROWS_FIXED`` when
            deterministic algorithms are on. 0: whole batches.
    """
    call = Padded(fn) if (pad if pad is not None else pads(device)) else fn
    sliced = device.type == "cpu" and pad is not False and cpu_rows != 0
    choices = tuple(sorted({min(r, batch_size) for r in CPU_ROWS}))
    tuner = RowTuner(choices) if sliced and cpu_rows is None and not torch.are_deterministic_algorithms_enabled() \
        else None
    fixed = cpu_rows or CPU_ROWS_FIXED
    out = []
    with progress_bar.bar(len(x), progress.desc or "embedding", progress.mode) as bar:
        for sl in eval_batches(len(x), batch_size):
            xb = x[sl].to(device, non_blocking=True)
            with autocast(device, amp):
                if not sliced:
                    out.append(call(xb).float())
                    bar.update(len(xb))
                    continue
                start = 0
                while start < len(xb):
                    rows = tuner.next() if tuner else fixed
                    t0 = time.perf_counter()
                    out.append(call(xb[start:start + rows]).float())
                    if tuner:
                        tuner.record(rows, len(out[-1]), time.perf_counter() - t0)
                    start += rows
                    bar.update(len(out[-1]))
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
