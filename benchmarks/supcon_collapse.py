"""Diagnostic behind the SupCon note in docs/results.md: does the projection collapse with labels?

A plain loop (no cifarlab engine) on the first 4,000 train images: cnn_small encoder + 512-512-128 projection,
two contrastive views, batch 128, temperature 0.1. Prints the loss and the mean pairwise cosine of the projections
every 12 steps, with labels (SupCon) and without (SimCLR), for a few optimisers. Collapse = mean cosine near 1 and
the loss at log(2B - 1), its value for identical projections.

    python benchmarks/supcon_collapse.py [--steps 60]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cifarlab.data import ContrastiveViews  # noqa: E402
from cifarlab.models import ProjectionHead, create_model  # noqa: E402
from cifarlab.objectives import ContrastiveModel, SupConLoss  # noqa: E402

from common import cifar_or_exit, machine  # noqa: E402

OPTIMISERS = {
    "sgd lr 0.05": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-4),
    "sgd lr 0.005": lambda p: torch.optim.SGD(p, lr=0.005, momentum=0.9),
    "adamw lr 1e-3": lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=1e-4),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()
    d = cifar_or_exit()
    x, y = d.train_x[:4000], d.train_y[:4000]
    mean, std = d.channel_stats()
    views = ContrastiveViews(mean, std, 2)
    print(f"machine: {machine()}; data: CIFAR-10 lossless PNG copy, first 4,000 train images; batch 128; "
          f"log(2B-1) = {math.log(255):.3f}")
    for labels in (True, False):
        for name, make in OPTIMISERS.items():
            if not labels and name != "sgd lr 0.05":
                continue
            torch.manual_seed(0)
            bb = create_model("cnn_small")
            model = ContrastiveModel(bb, ProjectionHead(bb.num_features, 512, 128))
            gen = torch.Generator().manual_seed(0)
            opt, crit, trace = make(model.parameters()), SupConLoss(0.1), []
            for step in range(args.steps):
                idx = torch.randint(0, len(x), (128,), generator=gen)
                z = model(views(x[idx], gen).flatten(0, 1)).view(128, 2, -1)
                loss = crit(z, y[idx] if labels else None)
                opt.zero_grad()
                loss.backward()
                opt.step()
                if step % 12 == 0 or step == args.steps - 1:
                    zn = F.normalize(z.detach().flatten(0, 1), dim=1)
                    trace.append(f"{step}:{loss.item():.2f}/cos{(zn @ zn.T).mean().item():.2f}")
            print(f"{'SupCon' if labels else 'SimCLR'} {name:<14} " + "  ".join(trace))


if __name__ == "__main__":
    main()
