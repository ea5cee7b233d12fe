"""analysis.arms: runs that differ only in keys that do not change what they measure are seeds of one arm; a key
that does (a swept lr) splits them into arms labelled with it."""

import json

from cifarlab.analysis.arms import seed_arms
from cifarlab.analysis.runs import Run


def _run(tmp_path, name, **config):
    path = tmp_path / name
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"config": {"recipe": "scratch", "lr": 0.1, **config}}))
    return Run(path, {"status": "complete", "test_acc": 0.5})


def test_seed_progress_and_cpu_allocator_do_not_split_an_arm(tmp_path):
    runs = [_run(tmp_path, "a-s0", seed=0, progress="off", cpu_allocator="retain"),
            _run(tmp_path, "a-s1", seed=1, progress="on", cpu_allocator="default")]
    arms = seed_arms("scratch", runs)
    assert [(a.label, len(a.runs)) for a in arms] == [("scratch", 2)]


def test_a_swept_key_makes_labelled_arms(tmp_path):
    runs = [_run(tmp_path, "a-s0", seed=0), _run(tmp_path, "b-s0", seed=0, lr=0.2)]
    assert sorted(a.label for a in seed_arms("scratch", runs)) == ["scratch (lr=0.1)", "scratch (lr=0.2)"]
