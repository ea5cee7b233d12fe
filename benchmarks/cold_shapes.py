"""What a new input shape costs the first time it reaches a network, in one fresh process (GPU part 1).

On the H200 (2026-11-26) the lite0 linear probe embedded 5,900 img/s inside a run against 20,190 in the bench loop,
and the lite0 fine-tune's first epoch took 20.8 s against about 9 s later. Suspect: every new input shape builds
new cuDNN execution plans, and for depthwise convolutions cuDNN 9 may compile kernels at run time. A run meets
several shapes (the eval batch, each split's last partial batch, the training batch), the bench loop one.

Each line times calls of one network on one shape: the first call (plans built) and the second (plans cached),
device synchronised around each. After a generic CUDA warm-up, the variants run in this order; each uses plans of
its own (layout, dtype and shape are part of cuDNN's plan key), so each line's first call is a cold one:

    PYTHONPATH=src python3 benchmarks/cold_shapes.py [--device cuda] [--scale 1.0]

--scale shrinks batches and the lite0 resolution (a CPU smoke run: --device cpu --scale 0.05).
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable

import torch

from cifarlab.engine.device import synchronize
from cifarlab.models import create_model


def timed(fn: Callable[[], object], device: torch.device) -> float:
    synchronize(device)
    t0 = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--scale", type=float, default=1.0)
    a = ap.parse_args()
    dev = torch.device(a.device)
    s = lambda n: max(2, int(n * a.scale))  # noqa: E731
    res = max(32, int(224 * a.scale ** 0.5) // 32 * 32)

    def line(what: str, calls: list[Callable[[], object]]) -> None:
        try:
            times = [timed(c, dev) for c in calls]
            print(f"cold {what}: " + " / ".join(f"{t:.3f}" for t in times) + " s", flush=True)
        except Exception as exc:  # one failing variant must not hide the others
            print(f"cold {what}: failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}", flush=True)

    amp = lambda on: torch.autocast(dev.type, torch.bfloat16) if on else contextlib.nullcontext()  # noqa: E731
    cl = torch.channels_last

    # generic warm-up: CUDA context, cuDNN and cuBLAS handles, the common elementwise kernels
    small = create_model("cnn_small", num_classes=10, weights="none").to(dev)
    xs = torch.randn(64, 3, 32, 32, device=dev)
    line("warm-up cnn_small fwd+bwd bs64 (context, handles)", [lambda: small(xs).sum().backward()] * 2)

    lite = create_model("efficientnet_lite0", num_classes=10, weights="none").to(dev).eval()

    def fwd(bs: int, fmt: torch.memory_format, bf16: bool, cudnn: bool = True) -> Callable[[], object]:
        x = torch.randn(bs, 3, res, res, device=dev).contiguous(memory_format=fmt)

        def call() -> object:
            with torch.no_grad(), amp(bf16), torch.backends.cudnn.flags(enabled=cudnn, benchmark=False):
                return lite.forward_features(x)
        return call

    lite.to(memory_format=cl)
    b = s(1024)
    line(f"lite0 fwd {res}px bf16 channels_last bs{b} (the run's eval batch)", [fwd(b, cl, True)] * 2)
    line(f"lite0 fwd {res}px bf16 channels_last bs{s(848)} (a last partial batch)", [fwd(s(848), cl, True)] * 2)
    line(f"lite0 fwd {res}px bf16 channels_last bs{b} again", [fwd(b, cl, True)])
    line(f"lite0 fwd {res}px bf16 channels_last bs{s(784)} (another)", [fwd(s(784), cl, True)] * 2)
    line(f"lite0 fwd {res}px fp32 channels_last bs{b}", [fwd(b, cl, False)] * 2)
    line(f"lite0 fwd {res}px bf16 channels_last bs{b}, cuDNN off (native kernels)",
         [fwd(b, cl, True, cudnn=False)] * 2)
    lite.to(memory_format=torch.contiguous_format)
    line(f"lite0 fwd {res}px bf16 NCHW bs{b}", [fwd(b, torch.contiguous_format, True)] * 2)

    def train(model: torch.nn.Module, bs: int, size: int, fmt: torch.memory_format) -> Callable[[], object]:
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        x = torch.randn(bs, 3, size, size, device=dev).contiguous(memory_format=fmt)
        y = torch.randint(0, 10, (bs,), device=dev)

        def call() -> object:
            with amp(True):
                loss = torch.nn.functional.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss
        return call

    lite.train().to(memory_format=cl)
    line(f"lite0 train step {res}px bf16 channels_last bs{s(128)} (the fine-tune batch)",
         [train(lite, s(128), res, cl)] * 3)
    line(f"lite0 train step bs{s(120)} (a new batch)", [train(lite, s(120), res, cl)] * 2)
    r18 = create_model("resnet18", num_classes=10, weights="none").to(dev, memory_format=cl)
    line(f"resnet18 (CIFAR) train step 32px bf16 channels_last bs{s(512)}", [train(r18, s(512), 32, cl)] * 3)
    r18.eval()
    xe = {n: torch.randn(n, 3, 32, 32, device=dev).contiguous(memory_format=cl) for n in (s(1024), s(904))}
    for n, x in xe.items():
        def call(x: torch.Tensor = x) -> object:
            with torch.no_grad(), amp(True):
                return r18(x)
        line(f"resnet18 eval fwd 32px bs{n}", [call] * 2)


if __name__ == "__main__":
    main()
