"""Device settings: the memory format a network trains and evaluates in."""

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
