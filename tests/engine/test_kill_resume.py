"""SIGKILL a training process at random moments (5 times in the suite; CIFARLAB_KILLS=20 for the longer harness);
--resume always finishes the run, and the final weights and metrics equal an uninterrupted run's. Between kills no
checkpoint is truncated and summary.json parses."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import torch

from cifarlab.engine import checkpoint

KILLS = int(os.environ.get("CIFARLAB_KILLS", 5))
ARGS = ["train", "--recipe", "scratch", "--model", "cnn_small", "--dataset", "synthetic:4:64:16", "--image-size",
        "16", "--epochs", "8", "--batch-size", "16", "--lr", "0.05", "--deterministic", "--progress", "off",
        "--set", "num_threads=1", "--set", "embed_samples=10"]


def _cmd(out, name, *extra):
    return [sys.executable, "-m", "cifarlab.cli", *ARGS, "--out", str(out), "--name", name, *extra]


def _check_consistent(run_dir):
    if (run_dir / "summary.json").exists():
        json.loads((run_dir / "summary.json").read_text())  # never a partial file
    for name in ("last.pt", "best.pt"):
        if (run_dir / "checkpoints" / name).exists():
            checkpoint.load(run_dir / "checkpoints" / name)  # never truncated


def test_random_sigkills_then_resume_equal_an_uninterrupted_run(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    subprocess.run(_cmd(tmp_path, "reference"), check=True, env=env, capture_output=True)
    duration = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import cifarlab.cli, torch"], check=True, env=env)
    startup = time.perf_counter() - t0
    rng = random.Random(0)
    ref = checkpoint.load(tmp_path / "reference" / "checkpoints" / "last.pt")
    kills, finished, attempt_run = 0, 0, 0
    kept: dict = {}  # run dir -> metrics.csv lines of the epochs its checkpoint held when a resume started
    while kills < KILLS:
        run_dir = tmp_path / f"killed{attempt_run}"
        extra = ["--resume"] if run_dir.exists() else []
        if extra and (run_dir / "checkpoints" / "last.pt").exists():
            epoch = checkpoint.load(run_dir / "checkpoints" / "last.pt")["epoch"]
            if epoch:
                kept.setdefault(run_dir, []).append((run_dir / "metrics.csv").read_text().splitlines()[:1 + epoch])
        proc = subprocess.Popen(_cmd(tmp_path, run_dir.name, *extra), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        # the interpreter and torch take most of the first seconds: kill after the run has started training
        time.sleep(rng.uniform(min(startup, duration * 0.5), duration * 0.9))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        _check_consistent(run_dir)
        summary = run_dir / "summary.json"
        if summary.exists() and json.loads(summary.read_text()).get("status") == "complete":
            _assert_same(ref, run_dir, tmp_path)  # a run that got through all its kills: compare, start another
            _assert_continued(run_dir, kept)
            finished += 1
            attempt_run += 1
    run_dir = tmp_path / f"killed{attempt_run}"
    if run_dir.exists():
        subprocess.run(_cmd(tmp_path, run_dir.name, "--resume"), check=True, env=env, capture_output=True)
        _assert_same(ref, run_dir, tmp_path)
        _assert_continued(run_dir, kept)
        finished += 1
    assert kills == KILLS and finished >= 1
    assert kept, "no kill came after a checkpoint: nothing was resumed mid-run"


def _assert_continued(run_dir, kept):
    """Resuming continued from the checkpoint instead of starting again (which gives the same weights when
    deterministic): the epochs written before each resume keep their rows, wall times included."""
    final = (run_dir / "metrics.csv").read_text().splitlines()
    for before in kept.get(run_dir, []):
        assert final[:len(before)] == before


def _assert_same(ref, run_dir, tmp_path):
    got = checkpoint.load(run_dir / "checkpoints" / "last.pt")
    for k in ref["model"]:
        assert torch.equal(ref["model"][k], got["model"][k]), k
    assert [r["train_loss"] for r in ref["history"]] == [r["train_loss"] for r in got["history"]]
    s_ref = json.loads((tmp_path / "reference" / "summary.json").read_text())
    s_got = json.loads((run_dir / "summary.json").read_text())
    assert s_got["status"] == "complete" and s_got["test_acc"] == s_ref["test_acc"]
    assert not list(run_dir.rglob("*.tmp"))  # temp files of interrupted writes are swept on resume
