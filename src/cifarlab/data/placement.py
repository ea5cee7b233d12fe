"""Where a dataset's images live during a run: on the compute device when they fit, else in host memory.

On CUDA the images are held on the device when they take at most :data:`DEVICE_SHARE` of its free memory (the rest
is for the model, activations and the allocator's slack); otherwise they stay on the host and every batch is
gathered there and copied over (:func:`cifarlab.data.batches.gather`), which the message says. On the CPU (and
MPS, whose memory is the host's) there is nothing to decide.
"""

from __future__ import annotations

import torch

DEVICE_SHARE = 0.8  # of the device's free memory the images may take


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def fits(device: torch.device, nbytes: int, free_bytes: int | None = None) -> tuple[bool, str]:
    """Whether ``nbytes`` of images should be held on ``device``, and the line the run logs about it.

    Args:
        device: the compute device.
        nbytes: the images' size (``ImageData.nbytes``, or the part the run moves).
        free_bytes: the device's free memory; ``None`` = ask the device (``torch.cuda.mem_get_info``).

    Returns:
        ``(True, message)`` to move them to the device, ``(False, message)`` to keep them on the host; the message
        is "" when there was nothing to decide (not CUDA, or free memory unknown).
    """
    if device.type != "cuda":
        return True, ""
    if free_bytes is None:
        from cifarlab.memory import free_memory_bytes

        free_bytes = free_memory_bytes(device)
    if free_bytes is None:
        return True, ""
    if nbytes <= DEVICE_SHARE * free_bytes:
        return True, f"images on {device}: {_gib(nbytes)} of {_gib(free_bytes)} free"
    return False, (f"the images take {_gib(nbytes)}, more than {DEVICE_SHARE:.0%} of the {_gib(free_bytes)} free on "
                   f"{device}: they stay in host memory and each batch is copied to the device (slower; a smaller "
                   "image_size, per_class or train_fraction keeps them on the device)")


def place(x: torch.Tensor, device: torch.device, on_device: bool) -> torch.Tensor:
    """``x`` on ``device`` when ``on_device``, else left on the host (:func:`cifarlab.data.batches.gather` then
    copies each batch over through a pinned buffer; pinning the whole set would lock that much host memory)."""
    return x.to(device) if on_device else x.cpu()
