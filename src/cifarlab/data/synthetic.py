"""Synthetic images with learnable class structure, for tests and demos (no files, no network).

Each class has a fixed random low-frequency colour pattern; an image is its class pattern, randomly shifted
(circularly) by up to a quarter of the side, with per-image brightness jitter and pixel noise. A small CNN learns
it in a few steps; a linear model on raw pixels does worse because of the shifts.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def make_synthetic(num_classes: int = 10, train_per_class: int = 100, test_per_class: int = 50, size: int = 32,
                   seed: int = 1234) -> dict[str, object]:
    """Returns the same dict as :func:`cifarlab.data.folder.load_folder` (arrays are (N, 3, H, W) uint8)."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(num_classes, 3, 4, 4, generator=gen)  # (K, 3, 4, 4) low-frequency patterns
    patterns = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    out: dict[str, object] = {"classes": [f"class{k}" for k in range(num_classes)], "cached": False}
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        labels = torch.arange(num_classes).repeat_interleave(per_class)
        imgs = patterns[labels]  # (N, 3, H, W)
        shift = size // 4
        dx = torch.randint(-shift, shift + 1, (len(labels),), generator=gen)
        dy = torch.randint(-shift, shift + 1, (len(labels),), generator=gen)
        idx = torch.arange(size)
        rows = (idx[None, :] - dy[:, None]) % size  # (N, H)
        cols = (idx[None, :] - dx[:, None]) % size  # (N, W)
        imgs = imgs[torch.arange(len(labels))[:, None, None, None], torch.arange(3)[None, :, None, None],
                    rows[:, None, :, None], cols[:, None, None, :]]
        imgs = imgs * (0.7 + 0.6 * torch.rand(len(labels), 1, 1, 1, generator=gen))
        imgs = imgs + 0.08 * torch.randn(imgs.shape, generator=gen)
        out[f"{split}_x"] = (imgs.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        out[f"{split}_y"] = labels.numpy().astype(np.int64)
    out["digest"] = f"synthetic-k{num_classes}-n{train_per_class}-{test_per_class}-s{size}-seed{seed}"
    return out
