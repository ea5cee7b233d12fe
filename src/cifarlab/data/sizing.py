"""The side a folder dataset is decoded at, and the log line that says so.

Rule (``image_size = 0``, the default):
- every image square and of one size: that size, nothing is resized, nothing to say;
- otherwise (mixed sizes, or not square): the median shorter side, clamped to 32-160 px. The median, not the
  smallest, so that one thumbnail does not shrink the whole dataset; at most 160 px because a dataset of photos
  (ImageNette's 13,394 photos) at 160 px already takes 1 GB as uint8 and most of a GPU's time; at
  least 32 px, the smallest side the CIFAR-stem models are built for.

``image_size = S`` resizes every image whose size is not S x S. Resizing is always: shorter side to S (bicubic,
antialiased), then a centre crop to S x S. Whatever was resized is stated in one line (:func:`resize_note`), which
the run logs.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

MIXED_MIN_SIDE = 32
MIXED_MAX_SIDE = 160


def choose_side(sizes: np.ndarray, requested: int = 0) -> int:
    """The side to decode at.

    Args:
        sizes: (N, 2) int array of every image's (width, height).
        requested: ``image_size`` (0 = the rule in this module's docstring).
    """
    if requested:
        return requested
    if len(sizes) == 0:
        return MIXED_MIN_SIDE
    if (sizes == sizes[0]).all() and sizes[0, 0] == sizes[0, 1]:
        return int(sizes[0, 0])
    shorter = sizes.min(axis=1)
    return int(np.clip(round(float(np.median(shorter))), MIXED_MIN_SIDE, MIXED_MAX_SIDE))


def resize_note(sizes: np.ndarray, side: int, requested: int = 0, counts: dict[str, int] | None = None) -> str | None:
    """One line for the log: how many images were resized from which sizes to ``side``, and why that side.

    Args:
        sizes: (N, 2) (width, height) of every image decoded.
        side: the side they were decoded at (:func:`choose_side`).
        requested: the ``image_size`` asked for (0 = the default rule).
        counts: images per split (``{"train": 9469, "test": 3925}``), named in the line.

    Returns:
        ``None`` when no image was resized.
    """
    resized = int((~((sizes[:, 0] == side) & (sizes[:, 1] == side))).sum()) if len(sizes) else 0
    if not resized:
        return None
    lo, hi = int(sizes.min()), int(sizes.max())
    span = f"{lo} px" if lo == hi else f"{lo}-{hi} px"
    of = f"{resized:,} images" if resized == len(sizes) else f"{resized:,} of {len(sizes):,} images"
    splits = f" ({', '.join(f'{k} {v:,}' for k, v in counts.items() if v)})" if counts and resized == len(sizes) else ""
    if requested:
        why = f"image_size={requested}"
    else:
        median = round(float(np.median(sizes.min(axis=1))))
        why = (f"the default for mixed sizes: the median shorter side ({median} px) within "
               f"{MIXED_MIN_SIDE}-{MIXED_MAX_SIDE} px; set image_size to choose")
    return f"resized {of}{splits} of {span} to {side} px (shorter side, bicubic, centre crop; {why})"


def resize_uint8(x: torch.Tensor, side: int, chunk: int = 1024) -> torch.Tensor:
    """(N, 3, H, W) uint8 -> (N, 3, side, side) uint8, bicubic with antialias (square inputs, so no crop), a chunk
    at a time into a preallocated result (a 100,000-image set is never held as float)."""
    out = torch.empty((len(x), x.shape[1], side, side), dtype=torch.uint8)
    for i in range(0, len(x), chunk):
        y = F.interpolate(x[i:i + chunk].float(), size=(side, side), mode="bicubic", align_corners=False,
                          antialias=side < x.shape[-1])
        out[i:i + chunk] = y.round_().clamp_(0, 255).to(torch.uint8)
    return out
