"""Diagnostic behind the SupCon note in docs/results.md: do the projections collapse with labels?

A plain loop (no cifarlab engine): cnn_small encoder + 512-512-128 projection, two contrastive views, batch 128,
temperature 0.1, SGD lr 0.05. Prints the loss and the mean pairwise cosine of the projections every 12 steps, for
SupCon on a seeded random 4,000-image subset (10 classes), SimCLR on the same subset, and SupCon on the first
4,000 train images, which in the shared folder copy (sorted by class) are all one class: every pair is a positive,
and the loss's minimum is a single point (mean cosine 1, loss log(2B - 1)). An earlier version of this script took
that first slice by mistake and reported the one-class collapse as a SupCon property.

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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()
    d = cifar_or_exit()
    rand = torch.randperm(len(d.train_y), generator=torch.Generator().manual_seed(0))[:4000]
    first = torch.arange(4000)
    mean, std = d.channel_stats()
    views = ContrastiveViews(mean, std, 2)
    print(f"machine: {machine()}; data: CIFAR-10 lossless PNG copy; batch 128; log(2B-1) = {math.log(255):.3f}")
    for name, subset, labels in (("SupCon, random 4,000 (10 classes)", rand, True),
                                 ("SimCLR, random 4,000", rand, False),
                                 ("SupCon, first 4,000 (one class)", first, True)):
        x, y = d.train_x[subset], d.train_y[subset]
        torch.manual_seed(0)
        bb = create_model("cnn_small")
        model = ContrastiveModel(bb, ProjectionHead(bb.num_features, 512, 128))
        gen = torch.Generator().manual_seed(0)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
        crit, trace = SupConLoss(0.1), []
        for step in range(args.steps):
            idx = torch.randint(0, len(x), (128,), generator=gen)
            z = model(views(x[idx], gen).flatten(0, 1))[0].view(128, 2, -1)
            loss = crit(z, y[idx] if labels else None)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % 12 == 0 or step == args.steps - 1:
                zn = F.normalize(z.detach().flatten(0, 1), dim=1)
                trace.append(f"{step}:{loss.item():.2f}/cos{(zn @ zn.T).mean().item():.2f}")
        print(f"{name:<36} classes {len(y.unique()):>2}  " + "  ".join(trace), flush=True)


if __name__ == "__main__":
    main()
