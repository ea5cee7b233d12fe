"""benchmarks/verdict_stability.py: every verdict tabled per seed offset, contradictions (opposite directions) and
identical verdict pairs counted over all pairs of offsets, and ``--report-only`` re-deriving the findings from the
kept run folders."""

import json

from tests.conftest import load_benchmark

STUDY = """
[study]
name = "tiny"

[defaults]
dataset = "synthetic:4:30:10"
model = "cnn_small"
image_size = 16
batch_size = 16
progress = "off"
embed_samples = 0
device = "cpu"
num_threads = 1
linear_epochs = 2

[[runs]]
recipe = "supcon"
name = "supcon-s{seed}"
seeds = [0, 1, 2]
epochs = 1

[[runs]]
recipe = "supcon"
name = "supcon-control-s{seed}"
seeds = [0, 1, 2]
epochs = 0
"""


def _entry(a, verdict, diff, metric="accuracy"):
    return {"question": "q", "a": a, "b": "base", "metric": metric, "verdict": verdict, "diff_points": diff,
            "p_value": 0.01}


def test_opposite_calls_are_contradictions_and_agreement_counts_identical_pairs():
    vs = load_benchmark("verdict_stability")
    t = vs.tally({1: [_entry("x", "a better", 3.0), _entry("y", "no significant difference", 0.5)],
                  2: [_entry("x", "b better", -3.0), _entry("y", "no significant difference", 0.1)],
                  3: [_entry("x", "no significant difference", 1.0), _entry("y", "no significant difference", -0.2)]})
    rows = {r["key"][1]: r for r in t["rows"]}
    assert rows["x"]["opposite"] and rows["x"]["same"] == 0 and rows["x"]["pairs"] == 3
    assert not rows["y"]["opposite"] and rows["y"]["same"] == 3
    assert (t["contradictions"], t["same_pairs"], t["all_pairs"]) == (1, 3, 6)
    text = vs.markdown(t, "header")
    assert "**1**" in text and "**3 of 6** (50%)" in text and "| 0 of 3 **opposite** |" in text
    assert "+3.00, p 0.010: a | -3.00, p 0.010: b | +1.00, p 0.010: ns" in text


def test_a_comparison_missing_at_one_offset_never_counts_as_agreement():
    vs = load_benchmark("verdict_stability")
    t = vs.tally({1: [_entry("x", "not tested", 0.0)], 2: []})
    assert (t["same_pairs"], t["all_pairs"]) == (0, 1) and "| – |" in vs.markdown(t, "h")


def test_a_tiny_study_at_two_offsets_then_report_only_from_the_kept_folders(tmp_path, monkeypatch):
    vs = load_benchmark("verdict_stability")
    study = tmp_path / "tiny.toml"
    study.write_text(STUDY)
    out = tmp_path / "stab"
    monkeypatch.delenv("CIFARLAB_DATASET", raising=False)
    vs.main(["--offsets", "0", "7", "--out", str(out), "--study", str(study), "--jobs", "2"])
    for o in (0, 7):
        assert json.loads((out / f"off-{o}" / "wall.json").read_text())["offset"] == o
        assert "complete" in (out / f"off-{o}" / "study.log").read_text()
        assert (out / f"off-{o}" / f"supcon-s{o + 2}" / "summary.json").is_file()  # the offset moved the seeds
    table = (out / "stability.md").read_text()
    assert "| offset 0 | offset 7 |" in table and "vs" in table
    first = json.loads((out / "stability.json").read_text())
    assert first["all_pairs"] >= 2  # linear and kNN comparisons of SupCon against the control, one pair each

    for o in (0, 7):  # the study's own findings are gone: --report-only must re-derive them from the runs
        (out / f"off-{o}" / "report.findings.json").unlink()
    vs.main(["--offsets", "0", "7", "--out", str(out), "--report-only", "--table", str(tmp_path / "again.md")])
    assert (out / "off-0" / "rederived.findings.json").is_file()
    again = json.loads((out / "stability.json").read_text())
    assert again == first  # the same runs, the same code: the same verdicts
    assert "re-derived by `--report-only`" in (tmp_path / "again.md").read_text()
