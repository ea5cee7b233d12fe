#!/usr/bin/env python3
"""Seconds per phase of decoding a folder dataset into its uint8 arrays (an empty cache each time): reading the
archive, the size scan, decoding (and writing the cache). The package is whatever ``cifarlab`` imports, so two
checkouts compare side by side by PYTHONPATH, alternating, on a quiet machine:

    git worktree add /tmp/wt-before 7736096
    for i in 1 2 3; do for src in /tmp/wt-before/src src; do
        PYTHONPATH=$src .venv/bin/python benchmarks/decode_phases.py ../shared/datasets/cifar10-png.tar.gz; done; done
"""

from __future__ import annotations

import argparse
import tempfile
import time

import cifarlab
from cifarlab.data.folder import load_folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", help="a folder dataset: a directory or a .tar/.tar.gz archive")
    args = ap.parse_args()
    marks: list[tuple[str, float]] = []

    def seen(phase: str, done: int, total: int | None) -> None:
        if not marks or marks[-1][0] != phase:
            marks.append((phase, time.perf_counter()))

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        out = load_folder(args.path, cache, progress=seen)
    end = time.perf_counter()
    marks.append(("end", end))
    phases = ", ".join(f"{name} {b - a:.2f} s" for (name, a), (_, b) in zip(marks, marks[1:]))
    print(f"{cifarlab.__file__.rsplit('/src/', 1)[0]}: {end - t0:.2f} s ({phases}; decoding includes the cache "
          f"write); train {tuple(out['train_x'].shape)}")


if __name__ == "__main__":
    main()
