import pytest
import torch

from cifarlab.data.batches import gather, train_batches


def test_gather_on_the_same_device_is_an_index():
    x = torch.arange(5 * 3 * 2 * 2, dtype=torch.uint8).view(5, 3, 2, 2)
    idx = torch.tensor([4, 0, 2])
    assert torch.equal(gather(x, idx, torch.device("cpu")), x[idx])


def test_gather_from_the_host_to_another_device_lands_there_with_the_rows_shape():
    """Without a GPU the other device is ``meta``, which holds no values: only where the batch lands and its shape
    are checked here; the values on a real device are the CUDA test's below (skipped on a CPU machine)."""
    x = torch.arange(6 * 3 * 2 * 2, dtype=torch.uint8).view(6, 3, 2, 2)
    idx = torch.tensor([5, 1, 1, 3])
    out = gather(x, idx, torch.device("meta"))
    assert out.device.type == "meta" and tuple(out.shape) == (4, 3, 2, 2)


def test_gather_on_the_device_keeps_order_and_values():
    x = torch.arange(6 * 3 * 2 * 2, dtype=torch.uint8).view(6, 3, 2, 2)
    idx = torch.tensor([5, 1, 1, 3])
    assert torch.equal(gather(x, idx, torch.device("cpu")), x[idx])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gather_pinned_host_copy_matches_indexing_on_cuda():
    dev = torch.device("cuda")
    x = torch.randint(0, 256, (1000, 3, 16, 16), dtype=torch.uint8)
    on_gpu = x.to(dev)
    for seed in range(5):
        idx = torch.randperm(1000, generator=torch.Generator().manual_seed(seed))[:128]
        a = gather(x, idx, dev)  # host -> pinned buffer -> device, non_blocking
        b = gather(on_gpu, idx.to(dev), dev)
        assert a.device.type == "cuda" and torch.equal(a, b)


def test_train_batches_take_host_indices_with_a_host_generator():
    idx = torch.arange(10)
    batches = list(train_batches(idx, 4, torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [4, 4] and len(set(torch.cat(batches).tolist())) == 8
