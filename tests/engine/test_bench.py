import torch

from cifarlab.engine import bench
from cifarlab.models import create_model


def test_flop_count_of_resnet18_cifar_matches_the_known_figure():
    # ResNet18 with the CIFAR stem: about 0.56 GMACs = 1.11 GFLOPs per 32x32 image
    flops = bench.forward_flops(create_model("resnet18", 10), 32, torch.device("cpu"))
    assert 1.0e9 < flops < 1.2e9


def test_bench_runs_both_pipelines_and_reports_a_ratio():
    x = torch.randint(0, 256, (64, 3, 16, 16), dtype=torch.uint8)
    y = torch.arange(64) % 4
    rows = bench.bench_scratch(x, y, "cnn_small", 16, 2, 1, torch.device("cpu"), workers=0)
    rows += bench.bench_embed(x, "cnn_small", 16, 16, 2, 1, torch.device("cpu"))
    assert [r.pipeline for r in rows] == ["cifarlab", "notebook"] * 2
    assert all(r.images_per_s > 0 and r.mfu is None for r in rows)
    assert "ratio cifarlab / notebook" in bench.format_rows(rows)
