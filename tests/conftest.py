"""Shared fixtures: small synthetic datasets and image folders written in the test's temp dir."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"
CIFAR_PNG = SHARED / "cifar10-png.tar.gz"

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _deterministic_algorithms_restored():
    """A run with deterministic=True switches torch's process-wide flag on; later tests start from it off."""
    yield
    torch.use_deterministic_algorithms(False)


@pytest.fixture(autouse=True)
def _isolated_data_root(tmp_path_factory, monkeypatch):
    """Caches go to a temp dir unless a test sets CIFARLAB_DATA itself; CIFARLAB_DATASET never leaks in."""
    monkeypatch.setenv("CIFARLAB_DATA", str(tmp_path_factory.getbasetemp() / "data"))
    monkeypatch.setenv("CIFARLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cost-cache"))  # study calibrations
    monkeypatch.delenv("CIFARLAB_DATASET", raising=False)


def write_folder(root: Path, classes=("cat", "dog"), per_class: int = 3, size: int = 8, split_sizes=None,
                 fmt: str = "png", seed: int = 0) -> Path:
    """A tiny image-folder dataset: train/<class>/*.png and test/<class>/*.png with random pixels."""
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for cls in classes:
            d = root / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range((split_sizes or {}).get(split, per_class)):
                arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"{i}.{fmt}")
    return root


@pytest.fixture
def folder(tmp_path) -> Path:
    return write_folder(tmp_path / "ds")


def needs_cifar():
    return pytest.mark.skipif(not CIFAR_PNG.is_file(), reason=f"{CIFAR_PNG} not present")


def load_benchmark(name: str):
    """The module of ``benchmarks/<name>.py`` (benchmarks are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stopping_fit(real_fit, at_epoch: int):
    """A recipe's ``fit`` that stops as Ctrl-C would (KeyboardInterrupt) once epoch ``at_epoch`` has ended and its
    checkpoint is on disk: the interrupted half of the kill/resume tests."""
    def fit(*args, **kwargs):
        from cifarlab.engine.fit import FitIO

        def stop(epoch):
            if epoch == at_epoch:
                raise KeyboardInterrupt

        args = list(args)
        io = args[5] if len(args) > 5 else kwargs.pop("io")
        args[5:6] = [FitIO(run=io.run, log=io.log, on_epoch_end=stop)]
        return real_fit(*args, **kwargs)

    return fit


@pytest.fixture
def trunk_at_fit_start(monkeypatch):
    """The trunk's state as ``cifarlab.recipes.transfer``'s training loop receives it (filled when the run starts
    training): what a transfer run really started from, whatever its config says."""
    import cifarlab.recipes.transfer as transfer

    real_fit, start = transfer.fit, {}

    def fit(model, *args, **kwargs):
        start.update({k: v.clone() for k, v in model.trunk.state_dict().items()})
        return real_fit(model, *args, **kwargs)

    monkeypatch.setattr(transfer, "fit", fit)
    return start


def trained_keys(state: dict) -> list[str]:
    """The keys of a state dict that training updates (not BatchNorm's running statistics or its counter)."""
    return [k for k in state if not ("running_" in k or "num_batches" in k)]


def run_gpu_check(mode: str, tmp_path: Path, study_toml: str, dataset: str, **env: str):
    """``bash benchmarks/gpu_check.sh MODE`` as a CPU smoke run: synthetic ``dataset`` (CL_DATASET), the study
    ``study_toml`` (STUDY_FILE), $OUT, logs and runs under ``tmp_path``, this interpreter first on PATH, ``env``
    on top. Returns the finished process (its output captured)."""
    import os
    import subprocess
    import sys

    study = tmp_path / "study.toml"
    study.write_text(study_toml)
    full = {**os.environ, "OUT": str(tmp_path / "out"), "CL_DATASET": dataset, "TOTAL": "240",
            "STUDY_FILE": str(study), "LOG": str(tmp_path / "logs"), "RUNS": str(tmp_path / "runs"),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **env}
    return subprocess.run(["bash", "benchmarks/gpu_check.sh", mode], cwd=Path(__file__).resolve().parents[1],
                          env=full, text=True, capture_output=True, timeout=300)
