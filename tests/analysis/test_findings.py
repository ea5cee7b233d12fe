"""The report's questions: which runs each one compares, the sentences' numbers (difference, standard error over
seeds, time ratio), and a real browser showing each section with its chart and sentence."""

import json
import math
import re
import statistics
import subprocess

import pytest

from cifarlab.analysis import findings
from cifarlab.analysis.report import build
from cifarlab.analysis.runs import find_runs

from tests.analysis.test_report import _chromium

CLASSES = ["plane", "car", "bird", "cat"]


def _run(root, name, recipe, model="cnn_small", acc=None, seconds=10.0, status="complete", **keys):
    """A run directory as a finished run leaves it (summary, config, metrics), without training anything."""
    d = root / name
    d.mkdir(parents=True)
    summary = {"status": status, "recipe": recipe, "model": model, "classes": CLASSES, "train_time_s": seconds,
               "params_trainable": 1000, "epochs": 3, **keys.pop("summary", {})}
    if acc is not None:
        summary["rotation_test_acc" if recipe == "rotation" else "test_acc"] = acc
    (d / "summary.json").write_text(json.dumps(summary))
    config = {"recipe": recipe, "model": model, "seed": 0, "per_class": 0, "train_fraction": 1.0, **keys}
    (d / "config.json").write_text(json.dumps({"config": config}))
    (d / "metrics.csv").write_text("epoch,lr,train_loss,train_acc,val_loss,val_acc\n1,0.1,2.0,0.3,2.1,0.28\n"
                                   "2,0.05,1.5,0.5,1.6,0.45\n")
    return d


def _arm(root, label, accs, seconds=10.0, recipe="scratch"):
    for i, a in enumerate(accs):
        _run(root, f"{label}-s{i}", recipe, acc=a, seconds=seconds, seed=i)
    return findings.Arm(label, [r for r in find_runs(root) if r.name.startswith(f"{label}-")])


def test_a_difference_is_stated_with_its_standard_error_and_time_ratio(tmp_path):
    a = _arm(tmp_path, "ft", [0.80, 0.82, 0.84], seconds=30.0)
    b = _arm(tmp_path, "lin", [0.77, 0.78, 0.79], seconds=10.0)
    text, nums = findings.compare(a, b, "fine-tuning", "the linear probe")
    se = 100 * math.sqrt(statistics.stdev([0.80, 0.82, 0.84]) ** 2 / 3 + statistics.stdev([0.77, 0.78, 0.79]) ** 2 / 3)
    assert text == (f"Fine-tuning beats the linear probe by 4.00 ± {se:.2f} points (82.00% vs 78.00%, 3 seeds each) "
                    "at 3.0x the training time.")
    assert nums["diff_points"] == pytest.approx(4.0) and nums["se_points"] == pytest.approx(se)


def test_one_seed_says_no_spread_was_measured_and_a_small_difference_is_within_the_spread(tmp_path):
    text, nums = findings.compare(_arm(tmp_path, "a", [0.60]), _arm(tmp_path, "b", [0.70]), "a", "b")
    assert text.startswith("A trails b by 10.00 points (60.00% vs 70.00%, one seed, so no spread was measured)")
    assert nums["se_points"] is None
    text, _ = findings.compare(_arm(tmp_path, "c", [0.50, 0.60]), _arm(tmp_path, "d", [0.52, 0.54]), "c", "d")
    assert "within the seed spread" in text


def test_each_question_appears_only_when_the_study_has_runs_for_it(tmp_path):
    _run(tmp_path, "scratch-s0", "scratch", acc=0.5)
    assert [f.key for f in findings.answer(find_runs(tmp_path))] == ["scratch"]
    _run(tmp_path, "linear", "linear", acc=0.7, weights="default")
    _run(tmp_path, "rot", "rotation", acc=0.6)
    assert [f.key for f in findings.answer(find_runs(tmp_path))] == ["scratch", "transfer", "rotation"]


def test_transfer_explains_an_order_that_differs_from_full_scale(tmp_path):
    _run(tmp_path, "linear", "linear", acc=0.75, weights="default", per_class=100)
    _run(tmp_path, "partial", "partial", acc=0.70, weights="default", per_class=100)
    _run(tmp_path, "finetune", "finetune", acc=0.72, weights="default", per_class=100)
    (f,) = findings.answer(find_runs(tmp_path))
    assert f.sentences[0].startswith("On cnn_small (100/class), the last block trails the linear probe by 5.00 points")
    assert "differs from the full-scale one" in f.sentences[-1] and "budget effect" in f.sentences[-1]


def test_rotation_init_is_told_from_random_init_by_the_run_it_starts_from(tmp_path):
    rot = _run(tmp_path, "rot", "rotation", acc=0.6)
    _run(tmp_path, "init-rot", "finetune", acc=0.40, init=str(rot), per_class=20)
    _run(tmp_path, "init-random", "finetune", acc=0.30, init="random", per_class=20)
    (f,) = findings.answer(find_runs(tmp_path))
    assert f.key == "rotation" and "rotation pretraining beats random init by 10.00 points" in f.sentences[1]


def test_supcon_is_compared_with_the_control_and_the_ce_baseline_in_linear_and_knn(tmp_path):
    for name, recipe, lin, knn, control in (("sc", "supcon", 0.45, 0.40, False), ("ce", "supcon_ce", 0.44, 0.41, False),
                                            ("ctl", "supcon", 0.33, 0.25, True)):
        _run(tmp_path, name, recipe, acc=lin, summary={"linear_acc": lin, "knn_acc": knn,
                                                        **({"control": "random-init encoder"} if control else {})})
    (f,) = findings.answer(find_runs(tmp_path))
    assert f.sentences[0].startswith("On cnn_small, SupCon beats the random-init encoder by 12.00 points in "
                                     "linear-probe accuracy")
    assert f.sentences[1].startswith("On cnn_small, SupCon beats the random-init encoder by 15.00 points in kNN")
    assert "trails the cross-entropy baseline by 1.00 points in kNN accuracy" in f.sentences[3]


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    """A study's worth of finished runs: every question, seeds on the cheap arms, one failed run."""
    root = tmp_path_factory.mktemp("study")
    for s, a in enumerate((0.46, 0.49)):
        _run(root, f"scratch-s{s}", "scratch", acc=a, seed=s, per_class=100)
    for recipe, a, t in (("linear", 0.60, 8.0), ("partial", 0.55, 20.0), ("finetune", 0.58, 40.0)):
        _run(root, f"{recipe}-lite0", recipe, model="efficientnet_lite0", acc=a, seconds=t, weights="default",
             per_class=100)
    for s in (0, 1):
        for name, recipe, lin, control in (("supcon", "supcon", 0.41 + s / 50, False),
                                           ("ce", "supcon_ce", 0.42 + s / 100, False),
                                           ("control", "supcon", 0.34 + s / 100, True)):
            _run(root, f"{name}-s{s}", recipe, acc=lin, seed=s, per_class=100, summary={
                "linear_acc": lin, "knn_acc": lin - 0.05, **({"control": "random-init encoder"} if control else {})})
    rot = _run(root, "rotation", "rotation", acc=0.58, train_fraction=0.04)
    for s, (r, q) in enumerate(((0.36, 0.325), (0.35, 0.33), (0.365, 0.345))):
        _run(root, f"ft-rotinit-s{s}", "finetune", acc=r, seed=s, init=str(rot), per_class=20)
        _run(root, f"ft-randinit-s{s}", "finetune", acc=q, seed=s, init="random", per_class=20)
    _run(root, "broken", "scratch", status="failed", summary={"error": "failed: out of memory"})
    (root / "study.json").write_text(json.dumps({"name": "tiny", "note": "A quick-budget demo <b>x</b>."}))
    return root


def _expected_pairs(root) -> list[tuple[float, float]]:
    """(a, b) means, in %, of every comparison the report must state, computed here from the summary files."""
    def mean(prefix, key="test_acc"):
        vals = [json.loads(p.read_text())[key] for p in sorted(root.glob(f"{prefix}*/summary.json"))]
        return 100 * statistics.fmean(vals)

    return [(mean("partial-lite0"), mean("linear-lite0")), (mean("finetune-lite0"), mean("linear-lite0")),
            (mean("supcon-", "linear_acc"), mean("control-", "linear_acc")),
            (mean("supcon-", "knn_acc"), mean("control-", "knn_acc")),
            (mean("supcon-", "linear_acc"), mean("ce-", "linear_acc")),
            (mean("supcon-", "knn_acc"), mean("ce-", "knn_acc")),
            (mean("ft-rotinit"), mean("ft-randinit"))]


@pytest.mark.skipif(not _chromium(), reason="Debian chromium not installed")
def test_browser_shows_each_question_with_its_chart_and_sentence_whose_numbers_equal_the_runs(study_dir, tmp_path):
    path = build(study_dir, "html", tmp_path / "r.html", embedding="none")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([_chromium(), *flags, "--dump-dom", path.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    assert "<title>cifarlab study: tiny</title>" in dom
    assert "A quick-budget demo &lt;b&gt;x&lt;/b&gt;." in dom  # the study's note, escaped
    sections = dict(re.findall(r'<section class="question" id="q-(\w+)" data-question="\w+">(.*?)</section>', dom,
                               re.S))
    assert list(sections) == ["scratch", "transfer", "supcon", "rotation"]
    for key, body in sections.items():
        assert re.search(r'<img alt="[^"]+" src="data:image/png;base64,', body), key  # its chart
        assert '<table class="arms">' in body and '<p class="finding"' in body, key  # its table and sentence
    stated = [(float(a), float(b)) for a, b in re.findall(r"\((\d+\.\d+)% vs (\d+\.\d+)%", dom)]
    expected = _expected_pairs(study_dir)
    assert len(stated) == len(expected)
    for (a, b), (ea, eb) in zip(stated, expected):
        assert a == pytest.approx(ea, abs=0.005) and b == pytest.approx(eb, abs=0.005)
    assert "differs from the full-scale one" in sections["transfer"]  # linear > finetune > partial here
    loaded = re.search(r'data-images="(\d+)/(\d+)"', dom)
    assert loaded and loaded.group(1) == loaded.group(2) and int(loaded.group(2)) >= 6
    assert 'id="overview"' in dom and 'id="per-class"' in dom and 'id="run-broken"' in dom


def test_markdown_report_has_the_questions_and_their_sentences(study_dir, tmp_path):
    text = build(study_dir, "md", tmp_path / "r.md", embedding="none").read_text()
    for title in ("## From scratch", "## Transfer from ImageNet", "## Contrastive pretraining",
                  "## Rotation pretraining"):
        assert title in text
    assert "rotation pretraining beats random init by" in text


def test_runs_that_differ_in_more_than_the_seed_are_not_averaged_as_seeds(tmp_path):
    """Two learning rates are two arms, each labelled with its rate, and no sentence averages them together."""
    for lr, accs in ((0.1, (0.40, 0.42)), (0.01, (0.30, 0.31))):
        for s, a in enumerate(accs):
            _run(tmp_path, f"lr{lr}-s{s}", "scratch", acc=a, seed=s, lr=lr)
    (f,) = findings.answer(find_runs(tmp_path))
    assert sorted(a.label for a in f.arms) == ["cnn_small, all (lr=0.01)", "cnn_small, all (lr=0.1)"]
    assert [a.stat()[2] for a in f.arms] == [2, 2]
    assert f.sentences == []  # the question's sentence would have averaged two configurations
