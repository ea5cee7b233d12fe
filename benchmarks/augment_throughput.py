"""On-device batched augmentation vs the per-sample PIL + DataLoader pipeline, side by side.

Both produce the same thing: shuffled batches of randomly cropped (padding 4), randomly flipped, normalised float
CIFAR-10 images. Each pipeline makes ``--images`` images per repeat; the figure is the median over repeats.

    python benchmarks/augment_throughput.py [--device cpu] [--images 20000] [--repeats 5] [--workers 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cifarlab.data import CIFAR10_MEAN, CIFAR10_STD, Augment  # noqa: E402
from cifarlab.data.batches import train_batches  # noqa: E402

from common import cifar_or_exit, machine, med, median_time  # noqa: E402


class PilCifar(Dataset):
    """What torchvision.datasets.CIFAR10 does per item: numpy HWC -> PIL image -> transforms."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    data = cifar_or_exit()
    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize()) if device.type == "cuda" else (lambda: None)
    steps = args.images // args.batch_size
    n = steps * args.batch_size

    x = data.train_x.to(device)
    idx = torch.arange(len(x), device=device)
    aug = Augment("cropflip", CIFAR10_MEAN, CIFAR10_STD, padding=4)
    gen = torch.Generator(device=device).manual_seed(0)

    def ours():
        for i, b in enumerate(train_batches(idx, args.batch_size, gen)):
            if i == steps:
                break
            out = aug.train(x[b], gen)
        return out

    tf = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(), transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD)])
    ds = PilCifar(data.train_x.permute(0, 2, 3, 1).numpy(), data.train_y.numpy(), tf)
    loader = DataLoader(ds, batch_size=args.batch_size, shuffle=True, num_workers=args.workers, drop_last=True,
                        pin_memory=device.type == "cuda", persistent_workers=args.workers > 0)

    def theirs():
        for i, (b, _) in enumerate(loader):
            out = b.to(device, non_blocking=True)
            if i + 1 == steps:
                break
        return out

    ours()  # warm-up (allocator, first kernels)
    theirs()
    t_ours = median_time(ours, args.repeats, sync)
    t_theirs = median_time(theirs, args.repeats, sync)
    r_ours, r_theirs = n / med(t_ours), n / med(t_theirs)
    print(f"machine: {machine()}")
    print(f"data: CIFAR-10 lossless PNG copy, {n} images per repeat, batch {args.batch_size}, {args.repeats} repeats")
    print(f"{'pipeline':<58} {'median s':>9} {'images/s':>10}")
    print(f"{'cifarlab on-device batched (' + args.device + ')':<58} {med(t_ours):>9.3f} {r_ours:>10.0f}")
    name = f"PIL per-sample + DataLoader (num_workers={args.workers})"
    print(f"{name:<58} {med(t_theirs):>9.3f} {r_theirs:>10.0f}")
    print(f"ratio: {r_ours / r_theirs:.1f}x")


if __name__ == "__main__":
    main()
