"""EfficientNet-Lite0 linear probe: cifarlab's cached-embedding probe vs a plain script, side by side.

The plain script is what a course notebook does: embed the images with the frozen backbone (torch, no grad),
then fit scikit-learn's LogisticRegression on the features. Both use the same backbone, weights, normalisation,
128 px inputs, the same 500 train images per class (seed 0), and the full 10,000-image test set. Wall time counts
everything after the decoded dataset is in memory (embedding included; the embedding cache starts empty).

    python benchmarks/linear_probe.py [--per-class 500] [--resolution 128] [--epochs 30]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cifarlab import api  # noqa: E402
from cifarlab.data import Augment, make_split  # noqa: E402
from cifarlab.engine.embed import embed  # noqa: E402
from cifarlab.models import create_model  # noqa: E402

from common import CIFAR_PNG, cifar_or_exit, fresh_data_root, machine  # noqa: E402


def plain_script(data, per_class: int, resolution: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    model = create_model("efficientnet_lite0").eval()
    aug = Augment("none", model.data_config.mean, model.data_config.std, resolution=resolution)
    split = make_split(data.train_y, per_class=per_class, val_fraction=0.0, seed=0)
    fn = lambda x: model.forward_features(aug.eval(x))  # noqa: E731
    f_train = embed(fn, data.train_x[split.train], 256, torch.device("cpu")).numpy()
    f_test = embed(fn, data.test_x, 256, torch.device("cpu")).numpy()
    clf = LogisticRegression(max_iter=1000).fit(f_train, data.train_y[split.train].numpy())
    acc = float((clf.predict(f_test) == data.test_y.numpy()).mean())
    return acc, time.perf_counter() - t0


def product(per_class: int, resolution: int, epochs: int, extra: list[str]) -> tuple[float, float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        fresh_data_root(Path(tmp) / "data")
        cfg = api.make_config("linear", overrides={
            "dataset": f"folder:{os.environ.get('CIFARLAB_CIFAR_PNG', CIFAR_PNG)}",
            "data_root": str(Path(tmp) / "data"),
            "model": "efficientnet_lite0", "per_class": per_class, "resolution": resolution, "epochs": epochs,
            "out": str(Path(tmp) / "runs"), "progress": "off"}, sets=extra)
        t0 = time.perf_counter()
        s = api.train(cfg).summary
        return s["test_acc"], time.perf_counter() - t0, s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-class", type=int, default=500)
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()
    data = cifar_or_exit()
    acc_p, t_p = plain_script(data, args.per_class, args.resolution)
    acc_c, t_c, s = product(args.per_class, args.resolution, args.epochs, args.set)
    print(f"machine: {machine()}")
    print(f"data: CIFAR-10 lossless PNG copy; {args.per_class}/class train (seed 0), full 10,000 test; "
          f"{args.resolution} px; efficientnet_lite0 (package ImageNet weights)")
    print(f"{'method':<62} {'test acc':>9} {'wall s':>8}")
    print(f"{'plain script: frozen features + sklearn LogisticRegression':<62} {100 * acc_p:>8.2f}% {t_p:>8.1f}")
    name = f"cifarlab linear (cached embeddings, {args.epochs} epochs {' '.join(args.set)})"
    print(f"{name:<62} {100 * acc_c:>8.2f}% {t_c:>8.1f}")
    print(f"cifarlab: best epoch {s['best_epoch']} (val acc {100 * s['best_val_acc']:.2f}%), head train "
          f"{s['train_time_s']:.1f}s; wall-time ratio plain/cifarlab {t_p / t_c:.2f}")


if __name__ == "__main__":
    main()
