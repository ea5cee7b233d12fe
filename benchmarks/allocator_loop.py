"""The loop behind docs/results.md's allocator figures: tf_efficientnet_lite0 (random weights, channels_last, 128 px,
2 torch threads) on 1,024 images in calls of 32, 256 and 1,024 rows, with glibc's own allocator (``default``) or
after :func:`cifarlab.engine.device.retain_freed_memory` (``retain``). Run each in its own process, under
``/usr/bin/time`` for the user and system seconds:

    /usr/bin/time -f "%U user %S sys" python benchmarks/allocator_loop.py default
    /usr/bin/time -f "%U user %S sys" python benchmarks/allocator_loop.py retain
"""

import sys
import time

import timm
import torch

from cifarlab.engine.device import retain_freed_memory

if __name__ == "__main__":
    if sys.argv[1:] == ["retain"]:
        print("allocator:", retain_freed_memory())
    torch.set_num_threads(2)
    m = timm.create_model("tf_efficientnet_lite0", num_classes=0).eval().to(memory_format=torch.channels_last)
    for rows in (32, 256, 1024):
        x = torch.randn(rows, 3, 128, 128).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            m(x)  # first call of the shape: oneDNN primitives
            t, n = time.perf_counter(), 0
            while n < 1024:
                m(x)
                n += rows
            print(rows, round(n / (time.perf_counter() - t), 1), "img/s")
