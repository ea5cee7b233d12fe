"""The lite0 fine-tune step: cifarlab's (``cifarlab bench --loops finetune``) vs a plain timm loop, side by side.

Asks whether the product's training step carries overhead of its own: the same network (timm's
efficientnet_lite0), input side, batch and optimizer, random uint8 images. The product's step also augments
(crop+flip on the device, resize, normalise); the plain loop feeds ready float tensors. Median of ``--repeats``
calls of ``--steps`` steps after one warm-up call, both in this process.

    python benchmarks/finetune_step_cpu.py [--resolution 96] [--batch-size 32] [--steps 5] [--repeats 3]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import timm
import torch

from cifarlab import bench


def plain_loop(resolution: int, batch_size: int, steps: int) -> Callable[[], int]:
    torch.manual_seed(0)
    model = timm.create_model("efficientnet_lite0", num_classes=10).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x, y = torch.randn(batch_size, 3, resolution, resolution), torch.randint(0, 10, (batch_size,))

    def step() -> int:
        for _ in range(steps):
            loss = torch.nn.functional.cross_entropy(model(x), y, label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return steps * batch_size

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    cpu = torch.device("cpu")
    x = torch.randint(0, 256, (a.batch_size * a.steps, 3, 32, 32), dtype=torch.uint8)
    y = torch.arange(len(x)) % 10
    (row,) = bench.bench_loops(x, y, bench.LoopGrid(["finetune"], ["eager"], [a.batch_size], a.steps, a.repeats,
                                                    probe_model="efficientnet_lite0", resolution=a.resolution), cpu)
    _, plain = bench.time_loop(plain_loop(a.resolution, a.batch_size, a.steps), a.repeats, cpu)
    print(f"lite0 fine-tune step @{a.resolution}px, batch {a.batch_size}, {torch.get_num_threads()} threads: "
          f"cifarlab {row.images_per_s:.1f} img/s, plain timm {plain:.1f} img/s, "
          f"ratio {row.images_per_s / plain:.2f}")


if __name__ == "__main__":
    main()
