"""benchmarks/before_after.py: arms are run names without their seed suffix, only complete runs count, the table's
cells are mean ± sd (n) of the summaries' accuracies with the seconds of work beside them, and the GPU machine's
path (an old ``src`` as a tarball, no git) runs both sides through benchmarks/gpu_check.sh."""

import json
import os
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import load_benchmark, run_gpu_check

REPO = Path(__file__).resolve().parents[2]


def test_arms_group_seeds_and_skip_failed_runs(tmp_path):
    ba = load_benchmark("before_after")
    for name, status, acc in (("linear-lite0-s0", "complete", 0.5), ("linear-lite0-s1", "complete", 0.6),
                              ("linear-lite0-s2", "failed", None), ("rotation-cnn_small", "complete", 0.25),
                              ("supcon-x-s0", "complete", None)):
        (tmp_path / name).mkdir()
        summary = {"status": status, **({"test_acc": acc} if acc is not None else {"linear_acc": 0.4})}
        (tmp_path / name / "summary.json").write_text(json.dumps(summary))
    arms = ba.arms(tmp_path)
    assert arms == {"linear-lite0": [50.0, 60.0], "rotation-cnn_small": [25.0], "supcon-x": [40.0]}
    assert ba.cell(arms["linear-lite0"]) == "55.00 ± 7.07 (n=2)" and ba.cell(None) == "–"


def test_a_cache_hit_counts_its_read_not_the_cost_it_saved(tmp_path):
    ba = load_benchmark("before_after")
    run = tmp_path / "linear-s1"
    run.mkdir()
    run.joinpath("summary.json").write_text(json.dumps(
        {"status": "complete", "test_acc": 0.5, "train_time_s": 1.0, "embedding_cache": "hit", "embed_time_s": 40.0,
         "embed_read_s": 0.5}))
    assert ba.arms(tmp_path, "seconds") == {"linear": [1.5]}


def test_seconds_are_training_plus_embedding_and_the_ratio_is_now_over_before(tmp_path):
    ba = load_benchmark("before_after")
    for side, secs in (("before", (10.0, 12.0, 14.0)), ("now", (5.0, 6.0, 7.0))):
        for seed, s in enumerate(secs):
            run = tmp_path / side / f"linear-s{seed}"
            run.mkdir(parents=True)
            run.joinpath("summary.json").write_text(json.dumps(
                {"status": "complete", "test_acc": 0.5 + 0.01 * seed + (side == "now") * 0.1,
                 "train_time_s": 1.0, "embed_time_s": s - 1.0}))
    before_s, now_s = ba.arms(tmp_path / "before", "seconds"), ba.arms(tmp_path / "now", "seconds")
    assert before_s == {"linear": [10.0, 12.0, 14.0]} and now_s == {"linear": [5.0, 6.0, 7.0]}
    header, _, row = ba.table(ba.arms(tmp_path / "before"), ba.arms(tmp_path / "now"), before_s, now_s)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert header.startswith("| arm | before | now |") and cells[0] == "linear"
    assert cells[3] == "+10.00" and float(cells[4]) < 0.001  # +10 points with sd 1 on both sides: significant
    assert cells[5:] == ["12.0", "6.0", "0.50x"]


def test_python_path_puts_the_old_src_first_and_drops_this_checkouts(monkeypatch, tmp_path):
    ba = load_benchmark("before_after")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO / "src"), "/weights/site"]))
    assert ba.python_path(tmp_path) == os.pathsep.join([str(tmp_path), "/weights/site"])


@pytest.mark.heavy  # ~20 s: two studies in subprocesses (.ci/run's heavy step runs it)
@pytest.mark.skipif(sys.platform != "linux", reason="bash script")
def test_gpu_check_beforeafter_runs_both_sides_from_a_tarball(tmp_path):
    """`gpu_check.sh beforeafter` as a CPU smoke run (synthetic data, a tiny study, a tarball of this checkout's
    src as the "old" code, as `git archive ... src` lays it out): the old side imports the package unpacked from the
    tarball (not the installed one), both sides complete and the table has both columns filled."""
    src_tgz = tmp_path / "before-src.tgz"
    with tarfile.open(src_tgz, "w:gz") as tar:
        tar.add(REPO / "src" / "cifarlab", "src/cifarlab", filter=lambda t: None if "__pycache__" in t.name else t)
    done = run_gpu_check("beforeafter", tmp_path, '[study]\nname = "smoke"\n[defaults]\nprogress = "off"\n'
                         'epochs = 1\nmax_steps_per_epoch = 2\n[[runs]]\nrecipe = "scratch"\nmodel = "cnn_small"\n'
                         'name = "scratch-s{seed}"\nseeds = [0, 1]\n', "synthetic:10:40:20",
                         BEFORE_SRC=str(src_tgz), BEFORE="tarball", NOW="checkout")
    assert done.returncode == 0, done.stdout + done.stderr
    table = (tmp_path / "out" / "beforeafter.md").read_text()
    unpacked = (tmp_path / "runs" / "beforeafter" / "src-before" / "src" / "cifarlab").resolve()
    assert f"before: the package from {unpacked}" in table and f"now: the package from {REPO / 'src'}" in table
    assert "before = tarball's code" in table and "now = checkout's code" in table
    row = next(line for line in table.splitlines() if line.startswith("| scratch |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert "(n=2)" in cells[1] and "(n=2)" in cells[2] and cells[7].endswith("x"), row
