"""Frozen EfficientNet-Lite0 embedding on the CPU: images/s of cifarlab's embedding path vs a plain timm loop, side
by side in one process, on the same images, at each resolution the presets use.

The plain loop is what an independent script does (``../shared/anchors/lite0_probe_plain.py``): timm's
``efficientnet_lite0`` at ``num_classes=0``, batches of 250, ``F.interpolate`` bilinear, fp32, NCHW. It uses only
torch and timm. The levers between it and cifarlab are timed one by one, in two phases of one process:

1. glibc's own allocator (what a plain script runs with): the plain loop; the same loop on ``tf_efficientnet_lite0``
   (cifarlab's architecture: TF "same" padding, which the TF-ported weights need) in NCHW and in channels_last (what
   ``engine.device.inference_format`` picks on the CPU); cifarlab's embedding (``create_model`` ->
   ``Augment.eval`` -> ``forward_features``, ``embed`` cutting each 1024-image batch into calls of the rows
   :class:`cifarlab.engine.embed.RowTuner` times fastest, its trial inside the timing);
2. after :func:`cifarlab.engine.device.retain_freed_memory`, which every CPU run sets by default
   (``cpu_allocator=auto``) and which cannot be undone in a process: the channels_last plain loop again, cifarlab
   in whole 1024-image batches, and cifarlab as it runs.

``--rows`` adds cifarlab at fixed rows per call in both phases. "vs plain" is each median against the first
phase's plain loop at that resolution. Each variant runs ``--reps`` times, interleaved with the others of its phase
(machine load hits them alike). Weights are random (speed does not depend on them).

    python benchmarks/embed_rate.py [--resolutions 64,96,128,224] [--images 600] [--reps 2] [--threads 2]
                                    [--rows 32,64,256]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import timm
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cifarlab.data import Augment  # noqa: E402
from cifarlab.engine.device import inference_format, retain_freed_memory  # noqa: E402
from cifarlab.engine.embed import RowTuner, embed  # noqa: E402
from cifarlab.models import create_model  # noqa: E402
from cifarlab.models.timm_models import LITE0_MEAN, LITE0_STD  # noqa: E402

from common import machine  # noqa: E402

CPU = torch.device("cpu")


@torch.no_grad()
def plain_loop(model: torch.nn.Module, x: torch.Tensor, res: int, fmt: torch.memory_format,
               batch: int = 250) -> torch.Tensor:
    """The independent script's feature loop (torch + timm only)."""
    out = []
    for i in range(0, len(x), batch):
        b = x[i:i + batch].float().div(255)
        b = (F.interpolate(b, size=res, mode="bilinear", align_corners=False) - 0.5) / 0.5
        out.append(model(b.contiguous(memory_format=fmt)))
    return torch.cat(out)


def cifarlab_pass(x: torch.Tensor, res: int, cpu_rows: int | None, chosen: list[int]) -> torch.Tensor:
    """What ``recipes.transfer.cached_features`` does for ``linear`` on the CPU (the model built once, outside)."""
    fmt = inference_format(CPU, True)
    aug = Augment("none", LITE0_MEAN, LITE0_STD, resolution=res)
    tuners: list[RowTuner] = []
    original = RowTuner.__init__

    def spy(self, *a, **k):  # notes the rows the pass settled on
        original(self, *a, **k)
        tuners.append(self)

    RowTuner.__init__ = spy
    try:
        f = embed(lambda xb: LITE0.forward_features(aug.eval(xb).contiguous(memory_format=fmt)), x, 1024, CPU,
                  "auto", cpu_rows=cpu_rows)
    finally:
        RowTuner.__init__ = original
    chosen += [t.best for t in tuners if t.best]
    return f


def main() -> None:
    global LITE0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resolutions", default="64,96,128,224")
    ap.add_argument("--images", type=int, default=600, help="images per pass at 128 px (scaled by (128/res)^2, "
                                                            "between 250 and 1500)")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", default="", help="also time cifarlab's embed at these fixed rows per call, e.g. "
                                               "32,64,256 (the choices RowTuner has)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    LITE0 = create_model("efficientnet_lite0", weights="none").eval().to(memory_format=torch.channels_last)
    plain = timm.create_model("efficientnet_lite0", num_classes=0).eval()
    plain_tf = timm.create_model("tf_efficientnet_lite0", num_classes=0).eval()
    plain_tf_cl = timm.create_model("tf_efficientnet_lite0", num_classes=0).eval().to(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(0)
    nchw, cl = torch.contiguous_format, torch.channels_last
    print(f"machine: {machine()}; torch threads {args.threads}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    try:
        print(f"load average at start: {' '.join(f'{v:.1f}' for v in __import__('os').getloadavg())}")
    except OSError:
        pass
    print(f"{'res':>4} {'images':>6}  {'allocator':<9} {'variant':<46} {'best img/s':>10} {'median':>8} "
          f"{'vs plain':>8}")
    resolutions = [int(r) for r in args.resolutions.split(",")]
    images = {res: torch.randint(0, 256, (int(min(1500, max(250, args.images * (128 / res) ** 2))), 3, 32, 32),
                                 dtype=torch.uint8, generator=gen) for res in resolutions}  # the same for all
    base: dict[int, float] = {}
    # glibc's own allocator first (what a plain script runs with), then cifarlab's CPU setting: it is process-wide
    # and cannot be undone, so the phases follow each other in this process (its figures are ratios to the first
    # phase's plain loop at the same resolution)
    for phase in ("default", "retain"):
        if phase == "retain":
            retain_freed_memory()
        for res in resolutions:
            x = images[res]
            n = len(x)
            chosen: list[int] = []
            if phase == "default":
                variants = {
                    "plain loop: timm efficientnet_lite0, NCHW, b250": lambda xs, r: plain_loop(plain, xs, r, nchw),
                    "plain loop on tf_efficientnet_lite0, NCHW": lambda xs, r: plain_loop(plain_tf, xs, r, nchw),
                    "plain loop on tf_efficientnet_lite0, chan_last":
                        lambda xs, r: plain_loop(plain_tf_cl, xs, r, cl),
                    "cifarlab embed, timed row slices": lambda xs, r, c=chosen: cifarlab_pass(xs, r, None, c),
                }
            else:
                variants = {
                    "plain loop on tf_efficientnet_lite0, chan_last":
                        lambda xs, r: plain_loop(plain_tf_cl, xs, r, cl),
                    "cifarlab embed, whole 1024 batches": lambda xs, r: cifarlab_pass(xs, r, 0, []),
                    "cifarlab embed, timed row slices (as it runs)":
                        lambda xs, r, c=chosen: cifarlab_pass(xs, r, None, c),
                }
            for rows in (int(r) for r in args.rows.split(",") if r):
                variants[f"cifarlab embed, {rows} rows per call"] = lambda xs, r, k=rows: cifarlab_pass(xs, r, k, [])
            for fn in variants.values():  # first-call costs (oneDNN primitive creation) out of the timing
                fn(x[:16], res)
            chosen.clear()
            rates: dict[str, list[float]] = {k: [] for k in variants}
            for _ in range(args.reps):
                for name, fn in variants.items():
                    t0 = time.perf_counter()
                    fn(x, res)
                    rates[name].append(n / (time.perf_counter() - t0))
            base.setdefault(res, statistics.median(rates[next(iter(variants))]))
            for name, r in rates.items():
                print(f"{res:>4} {n:>6}  {phase:<9} {name:<46} {max(r):>10.1f} {statistics.median(r):>8.1f} "
                      f"{statistics.median(r) / base[res]:>7.2f}x", flush=True)
            print(f"{res:>4}         {phase:<9} cifarlab's timed rows per call: {chosen}", flush=True)

LITE0 = None

if __name__ == "__main__":
    main()
