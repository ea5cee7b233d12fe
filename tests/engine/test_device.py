"""Device settings: the memory format a network trains and evaluates in, the CPU allocator."""

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cifarlab.engine.device import format_name, memory_format

CUDA, CPU = torch.device("cuda"), torch.device("cpu")  # a device object needs no GPU


def test_channels_last_is_for_cuda_and_can_be_switched_off():
    assert memory_format(CUDA, True) == torch.channels_last
    assert memory_format(CUDA, False) == torch.contiguous_format
    assert memory_format(CPU, True) == torch.contiguous_format
    assert [format_name(f) for f in (torch.channels_last, torch.contiguous_format)] == ["channels_last", "nchw"]


def test_the_device_warm_up_draws_no_random_numbers_and_runs_only_for_cuda():
    from cifarlab.engine.device import start_warm_up, warm_up_kernels

    torch.manual_seed(0)
    before = torch.get_rng_state()
    warm_up_kernels(CPU)  # the same kernels' CPU versions: no module initialisation, no random draw
    assert torch.equal(torch.get_rng_state(), before)
    assert start_warm_up(CPU) is None  # the CPU has no start to hide


RSS_PROBE = r"""
import sys
import numpy as np
from cifarlab.engine.device import retain_freed_memory

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

state = retain_freed_memory() if sys.argv[1] == "retain" else "default"
before = rss_mb()
a = np.ones(64 * 2**20 // 8)  # 64 MiB, every page touched
del a
print(state, rss_mb() - before)
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists() or platform.libc_ver()[0] != "glibc",
                    reason="glibc on Linux only")
def test_retained_memory_stays_in_the_process_and_the_default_gives_it_back():
    """retain_freed_memory: a freed 64 MiB block stays resident (no munmap, no page faults for the next batch);
    without it glibc unmaps the block on free."""
    out = {}
    for mode in ("retain", "default"):
        proc = subprocess.run([sys.executable, "-c", RSS_PROBE, mode], capture_output=True, text=True, check=True)
        state, kept = proc.stdout.split()
        out[mode] = (state, float(kept))
    assert out["retain"][0] == "retain" and out["retain"][1] > 48
    assert out["default"][1] < 16


def test_a_cpu_run_records_the_allocator_it_ran_with(tmp_path):
    from cifarlab import api
    from cifarlab.engine.device import allocator_state

    res = api.train(api.make_config("scratch", overrides={
        "dataset": "synthetic:10:20:10", "model": "cnn_small", "epochs": 1, "batch_size": 32, "image_size": 16,
        "out": str(tmp_path), "progress": "off", "embed_samples": 0}))
    resolved = json.loads((res.path / "config.json").read_text())["resolved"]
    assert resolved["cpu_allocator"] == allocator_state() != "default"


def test_a_deterministic_run_does_not_leave_deterministic_algorithms_on_for_the_next():
    from cifarlab.engine.device import seed_everything

    seed_everything(0, deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()
    seed_everything(0, deterministic=False)
    assert not torch.are_deterministic_algorithms_enabled()
