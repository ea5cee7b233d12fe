"""Linear probe on cached embeddings vs the course-notebook way (the frozen backbone re-run every epoch), at equal
epochs, same subset, same head optimiser. Both through ``cifarlab train --recipe linear``; the notebook way is
``--set cache_embeddings=false``. Wall time is the whole run (model and data loading, embedding, head training,
test evaluation); the training phase excludes the loading and the test images, which both ways embed once.

    python benchmarks/cached_probe.py [--per-class 100] [--resolution 96] [--epochs 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cifarlab import api  # noqa: E402

from common import CIFAR_PNG, cifar_or_exit, fresh_data_root, machine  # noqa: E402


def run(cached: bool, args, tmp: Path) -> tuple[float, float, dict]:
    data_root = fresh_data_root(tmp / ("cached" if cached else "notebook"))
    cfg = api.make_config("linear", overrides={
        "dataset": f"folder:{os.environ.get('CIFARLAB_CIFAR_PNG', CIFAR_PNG)}", "data_root": str(data_root),
        "model": "efficientnet_lite0", "per_class": args.per_class, "resolution": args.resolution,
        "epochs": args.epochs, "test_per_class": args.test_per_class, "out": str(tmp / "runs"),
        "name": "cached" if cached else "notebook", "progress": "off", "cache_embeddings": cached})
    t0 = time.perf_counter()
    s = api.train(cfg).summary
    return s["test_acc"], time.perf_counter() - t0, s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--test-per-class", type=int, default=200)
    ap.add_argument("--resolution", type=int, default=96)
    ap.add_argument("--epochs", type=int, default=5)
    args = ap.parse_args()
    cifar_or_exit()
    with tempfile.TemporaryDirectory() as tmp:
        acc_n, t_n, s_n = run(False, args, Path(tmp))
        acc_c, t_c, s_c = run(True, args, Path(tmp))
    print(f"machine: {machine()}")
    print(f"data: CIFAR-10 lossless PNG copy; {args.per_class}/class train (seed 0, 10% of it validation), "
          f"{args.test_per_class}/class test; {args.resolution} px; efficientnet_lite0; {args.epochs} epochs")
    print(f"{'method':<52} {'test acc':>9} {'wall s':>8}")
    print(f"{'frozen backbone re-run every epoch (notebook way)':<52} {100 * acc_n:>8.2f}% {t_n:>8.1f}")
    print(f"{'cached embeddings (cifarlab default)':<52} {100 * acc_c:>8.2f}% {t_c:>8.1f}")
    print(f"accuracy difference {100 * (acc_c - acc_n):+.2f} points; wall-time ratio {t_n / t_c:.1f}x")
    # training phase alone (the test images are embedded once by both ways, outside it): the notebook way's epochs
    # (frozen backbone over train + validation every epoch) vs one embedding pass over train + validation + the head
    train_c = s_c["embed_train_val_s"] + s_c["epochs_wall_s"]
    print(f"training phase: notebook {s_n['epochs_wall_s']:.1f}s ({args.epochs} epochs, each with its validation "
          f"pass) vs cached {train_c:.1f}s (embedding train+val {s_c['embed_train_val_s']:.1f}s + head epochs "
          f"{s_c['epochs_wall_s']:.1f}s): {s_n['epochs_wall_s'] / train_c:.1f}x; test embedding (cached run) "
          f"{s_c['embed_test_s']:.1f}s")


if __name__ == "__main__":
    main()
