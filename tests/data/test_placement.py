import torch

from cifarlab.data.placement import DEVICE_SHARE, fits, place

GIB = 2**30


def test_cpu_always_fits_silently():
    assert fits(torch.device("cpu"), 10**15) == (True, "")


def test_cuda_fits_within_the_share_of_free_memory():
    ok, msg = fits(torch.device("cuda:0"), int(DEVICE_SHARE * 10 * GIB), free_bytes=10 * GIB)
    assert ok and msg == "images on cuda:0: 8.00 GiB of 10.00 GiB free"


def test_cuda_too_large_falls_back_to_the_host_with_a_message():
    ok, msg = fits(torch.device("cuda:0"), int(1.03 * GIB), free_bytes=GIB)
    assert not ok
    assert msg.startswith("the images take 1.03 GiB, more than 80% of the 1.00 GiB free on cuda:0: they stay in "
                          "host memory and each batch is copied to the device")


def test_unknown_free_memory_means_no_decision(monkeypatch):
    import cifarlab.memory as dev

    monkeypatch.setattr(dev, "free_memory_bytes", lambda device: None)
    assert fits(torch.device("cuda"), GIB) == (True, "")
    monkeypatch.setattr(dev, "free_memory_bytes", lambda device: GIB // 2)
    assert fits(torch.device("cuda"), GIB)[0] is False  # the device is asked when no number is given


def test_place_keeps_host_tensors_on_the_host():
    x = torch.zeros(2, 3)
    assert place(x, torch.device("cpu"), on_device=False).device.type == "cpu"
    assert place(x, torch.device("cpu"), on_device=True) is x
