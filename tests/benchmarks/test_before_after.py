"""benchmarks/before_after.py: arms are run names without their seed suffix, only complete runs count, and the
table's cells are mean ± sd (n) of the summaries' accuracies."""

import json

from tests.conftest import load_benchmark


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
