import time

import pytest
import torch

from cifarlab import bench
from cifarlab.models import create_model


def test_flop_count_of_resnet18_cifar_matches_the_known_figure():
    # ResNet18 with the CIFAR stem: about 0.56 GMACs = 1.11 GFLOPs per 32x32 image
    flops = bench.forward_flops(create_model("resnet18", 10), 32, torch.device("cpu"))
    assert 1.0e9 < flops < 1.2e9


def test_warm_up_is_timed_apart_from_the_steady_state():
    calls = []

    def step():
        calls.append(1)
        time.sleep(0.3 if len(calls) == 1 else 0.01)  # the first call pays a "compilation"
        return 100

    warmup, rate = bench.time_loop(step, repeats=3, device=torch.device("cpu"))
    assert len(calls) == 4 and warmup >= 0.3
    assert 3000 < rate < 10_500  # 100 images in ~0.01 s: the first call is not in the rate


def test_bench_measures_every_regime_loop_and_the_notebook_pipeline():
    x = torch.randint(0, 256, (64, 3, 16, 16), dtype=torch.uint8)
    y = torch.arange(64) % 4
    logs = []
    rows = bench.bench_loops(x, y, bench.LoopGrid(list(bench.LOOPS), ["eager"], [8], 2, 1, "cnn_small",
                                                    "cnn_small", 16), torch.device("cpu"), log=logs.append)
    rows.append(bench.bench_notebook(x, y, "cnn_small", 8, 2, 1, torch.device("cpu"), workers=0))
    assert [r.loop.split()[0] for r in rows] == [*bench.LOOPS, "scratch"]
    assert all(r.images_per_s > 0 and r.warmup_s > 0 and r.mfu is None for r in rows)  # no MFU off CUDA
    table = bench.format_rows(rows)
    assert "warm-up s" in table and "ratio cifarlab eager / notebook, scratch cnn_small bs 8" in table
    assert len(logs) == len(bench.LOOPS)  # one line per measurement as it finishes


@pytest.mark.slow
def test_the_compile_path_runs_a_training_step_and_reports_its_compile_time():
    x = torch.randint(0, 256, (32, 3, 8, 8), dtype=torch.uint8)
    y = torch.arange(32) % 2
    (row,) = bench.bench_loops(x, y, bench.LoopGrid(["scratch"], ["compile"], [8], 1, 1, "cnn_small"),
                               torch.device("cpu"))
    eager, = bench.bench_loops(x, y, bench.LoopGrid(["scratch"], ["eager"], [8], 1, 1, "cnn_small"),
                               torch.device("cpu"))
    assert row.variant == "compile" and row.images_per_s > 0
    assert row.warmup_s > 5 * eager.warmup_s  # the compilation is in the warm-up, not in the rate


def test_frozenbn_variant_trains_the_fine_tune_loop_on_running_statistics():
    x = torch.randint(0, 256, (32, 3, 16, 16), dtype=torch.uint8)
    y = torch.arange(32) % 4
    seen = []
    real = bench.create_model

    def recording(*args, **kwargs):
        seen.append(real(*args, **kwargs))
        return seen[-1]

    bench.create_model = recording
    try:
        (row,) = bench.bench_loops(x, y, bench.LoopGrid(["finetune"], ["frozenbn"], [8], 1, 1, "cnn_small",
                                                          "cnn_small", 16), torch.device("cpu"))
    finally:
        bench.create_model = real
    bns = [m for m in seen[0].modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert row.variant == "frozenbn" and row.images_per_s > 0
    assert bns and seen[0].training and not any(m.training for m in bns)  # in training, BatchNorms in eval mode


def test_layout_variants_force_the_memory_format_and_eager_takes_the_products():
    cuda = torch.device("cuda")  # a device object needs no GPU
    assert bench._Settings("cl").memory_format(cuda) == torch.channels_last
    assert bench._Settings("nchw").memory_format(cuda) == torch.contiguous_format
    assert bench._Settings("eager").memory_format(cuda) == torch.channels_last  # the product's default on CUDA
    x = torch.randint(0, 256, (16, 3, 16, 16), dtype=torch.uint8)
    rows = bench.bench_loops(x, torch.arange(16) % 4, bench.LoopGrid(["finetune", "embed"], ["cl", "nchw"], [8], 1,
                                                                        1, "cnn_small", "cnn_small", 16),
                             torch.device("cpu"))
    assert [r.variant for r in rows] == ["cl", "nchw", "cl", "nchw"] and all(r.images_per_s > 0 for r in rows)
