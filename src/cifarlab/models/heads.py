"""Heads that sit on a backbone's features."""

from __future__ import annotations

import torch
from torch import nn


class ProjectionHead(nn.Module):
    """SupCon/SimCLR projection MLP: Linear -> BN -> ReLU -> Linear (e.g. 512-512-128)."""

    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim),
                                 nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
