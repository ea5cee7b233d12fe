"""Reports over synthetic runs: every run present, HTML escaped, self-contained; a real browser renders it;
findings.json beside it; progress, options and published figures."""

import json
import re
import shutil
import statistics
import subprocess

import pytest
from scipy import stats as sps

from cifarlab import api
from cifarlab.analysis.report import build
from cifarlab.errors import CifarlabError

from tests.conftest import write_folder

EVIL = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    # a folder name cannot hold '/', so the class is '<b onmouseover=x>' on disk and the exact script tag is
    # planted in the run directories afterwards (reports read run directories only)
    data = write_folder(base / "ds", classes=("<b onmouseover=x>", "cat", "dog"), per_class=12, size=16)
    out = base / "runs"
    common = {"dataset": f"folder:{data}", "model": "cnn_small", "epochs": 2, "batch_size": 8, "lr": 0.05,
              "out": str(out), "embed_samples": 30, "progress": "off"}
    for seed in (0, 1):
        api.train(api.make_config("scratch", overrides={**common, "seed": seed}))
    api.train(api.make_config("rotation", overrides={**common, "name": "rot"}))
    from cifarlab.errors import DataError

    with pytest.raises(DataError):
        api.train(api.make_config("scratch", overrides={**common, "dataset": f"folder:{base / 'nope'}",
                                                        "name": "broken"}))
    for summary in out.glob("*/summary.json"):
        s = json.loads(summary.read_text())
        if s.get("classes"):
            s["classes"][0] = EVIL
            summary.write_text(json.dumps(s))
    return out


def test_html_report_has_every_run_and_escapes_class_names(runs_dir, tmp_path):
    path = build(runs_dir, "html", tmp_path / "r.html")
    text = path.read_text()
    for name in ("scratch-cnn_small-ds-s0", "scratch-cnn_small-ds-s1", "rot", "broken"):
        assert f'id="run-{name}"' in text
    assert EVIL not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<b onmouseover" not in text
    assert not re.search(r"""(src|href)=["']?https?://""", text)  # self-contained: no network requests
    assert text.count("data:image/png;base64,") >= 6
    # the two seeds of the same configuration are one arm: its cell is their mean ± sd, from the summaries
    accs = [json.loads((runs_dir / f"scratch-cnn_small-ds-s{s}" / "summary.json").read_text())["test_acc"]
            for s in (0, 1)]
    cell = f"{100 * statistics.fmean(accs):.2f}% ± {100 * statistics.stdev(accs):.2f}"
    assert re.search(r'<section class="question" id="q-scratch".*?<td class="n">' + re.escape(cell) + "</td>", text,
                     re.S)


def test_markdown_report_writes_figures_beside_it(runs_dir, tmp_path):
    path = build(runs_dir, "md", tmp_path / "r.md", embedding="none")
    text = path.read_text()
    assert "| scratch-cnn_small-ds-s0 |" in text and EVIL not in text
    pngs = list((tmp_path / "r_files").glob("*.png"))
    assert len(pngs) >= 4 and all(f"r_files/{p.name}" in text for p in pngs)


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(not _chromium(), reason="Debian chromium not installed")
def test_real_browser_renders_the_report(runs_dir, tmp_path):
    """Headless Chromium opens the file from disk; the DOM it produced has the title, the table rows and loaded
    images, and it logged no errors."""
    path = build(runs_dir, "html", tmp_path / "r.html")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run([_chromium(), *flags, "--dump-dom", path.as_uri()], capture_output=True, text=True,
                         timeout=120)
    assert "<title>cifarlab report" in dom.stdout
    assert len(re.findall(r"<tr", dom.stdout)) >= 8
    loaded = re.search(r'data-images="(\d+)/(\d+)"', dom.stdout)
    assert loaded and loaded.group(1) == loaded.group(2) and int(loaded.group(2)) >= 6, dom.stdout[:300]
    shot = tmp_path / "shot.png"
    res = subprocess.run([_chromium(), *flags, f"--screenshot={shot}", "--window-size=1200,2000", path.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 20_000, res.stderr[-2000:]
    console_errors = [line for line in (dom.stderr + res.stderr).splitlines()
                      if "CONSOLE" in line and "ERROR" in line.upper()]
    assert not console_errors
    # images decoded: the embedded PNGs are valid (Pillow reads each one)
    import base64
    import io

    from PIL import Image

    for blob in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", path.read_text()):
        Image.open(io.BytesIO(base64.b64decode(blob))).verify()


def test_cli_report(runs_dir, tmp_path):
    from cifarlab.cli import main

    assert main(["report", str(runs_dir), "-o", str(tmp_path / "x.html"), "--embedding", "none", "--progress",
                 "off"]) == 0
    assert (tmp_path / "x.html").is_file()
    assert isinstance(json.loads((tmp_path / "x.findings.json").read_text()), list)
    summary = json.loads((runs_dir / "broken" / "summary.json").read_text())
    assert summary["status"] == "failed"


def test_report_over_diverged_runs_completes_and_shows_them_as_diverged(tmp_path):
    """Two runs blown up by an absurd learning rate, and a complete run whose saved embeddings are infinite (what
    a diverged run looked like before divergence was caught): the report is written, says what it could not show,
    and reports no accuracy for the diverged runs."""
    import numpy as np

    from cifarlab.errors import TrainingDiverged

    out = tmp_path / "runs"
    common = {"dataset": "synthetic:4:20:10", "model": "cnn_small", "image_size": 16, "epochs": 2, "batch_size": 16,
              "out": str(out), "embed_samples": 20, "progress": "off"}
    for seed in (0, 1):
        with pytest.raises(TrainingDiverged):
            api.train(api.make_config("scratch", overrides={**common, "lr": 50.0, "seed": seed, "name": f"boom{seed}"}))
    api.train(api.make_config("scratch", overrides={**common, "name": "inf"}))
    pred_file = out / "inf" / "predictions.npz"
    pred = dict(np.load(pred_file))
    pred["embeddings"][:3] = np.inf
    np.savez(pred_file, **pred)
    path = build(out, "html", tmp_path / "r.html")
    text = path.read_text()
    for name in ("boom0", "boom1"):
        section = text[text.index(f'id="run-{name}"'):]
        section = section[:section.index("</section>")]
        assert "diverged" in section and "no test accuracy is reported" in section and "training curves" in section
    inf = text[text.index('id="run-inf"'):]
    assert "3 of 20 embeddings are not finite" in inf[:inf.index("</section>")]
    rows = re.findall(r'<tr class="failed">.*?</tr>', text)
    assert len(rows) == 2 and all("diverged" in r for r in rows)
    assert build(out, "md", tmp_path / "r.md").is_file()


def _fake_run(root, name, recipe, acc, seed, model="cnn_small", start="imagenet:torchvision IMAGENET1K_V1",
              summary=None, config=None):
    """A finished run's summary.json and config.json only (no curves or predictions: quick to report)."""
    d = root / name
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps({
        "status": "complete", "recipe": recipe, "model": model, "dataset": "synthetic", "classes": ["a", "b"],
        "test_acc": acc, "train_time_s": 5.0, "epochs": 2, "started_from": start, **(summary or {})}))
    (d / "config.json").write_text(json.dumps({"config": {"recipe": recipe, "model": model, "seed": seed,
                                                          **(config or {})}}))
    return d


def test_findings_json_matches_welch_on_independent_run_sets(tmp_path):
    """Three fabricated pairs with known accuracies: clearly different, overlapping, and two seeds. Each entry's p
    equals scipy's Welch test on the accuracies written into the summaries, and the verdicts follow p < 0.05."""
    sets = {"clear": ([0.60, 0.61, 0.62], [0.80, 0.81, 0.83]), "overlap": ([0.60, 0.66, 0.63], [0.62, 0.65, 0.61]),
            "two": ([0.50, 0.51], [0.70, 0.72])}
    for model, (lin, ft) in sets.items():
        for recipe, accs in (("linear", lin), ("finetune", ft)):
            for s, a in enumerate(accs):
                _fake_run(tmp_path / "runs", f"{model}-{recipe}-s{s}", recipe, a, s, model=model)
    build(tmp_path / "runs", "html", tmp_path / "r.html", embedding="none")
    entries = {e["a"].split(",")[0]: e for e in json.loads((tmp_path / "r.findings.json").read_text())}
    assert set(entries) == set(sets)
    for model, e in entries.items():
        assert e["question"] == "transfer" and e["metric"] == "accuracy"
        assert e["a"] == f"{model}, full fine-tuning, all" and e["b"] == f"{model}, the linear probe, all"
        lin, ft = sets[model]
        assert e["a_values"] == ft and e["b_values"] == lin
        assert e["diff_points"] == pytest.approx(100 * (statistics.fmean(ft) - statistics.fmean(lin)))
    clear, overlap, two = entries["clear"], entries["overlap"], entries["two"]
    for e, (lin, ft) in ((clear, sets["clear"]), (overlap, sets["overlap"])):
        ref = sps.ttest_ind(ft, lin, equal_var=False)
        assert e["p_value"] == pytest.approx(float(ref.pvalue), rel=1e-9) and e["test"] == "welch"
        lo, hi = ref.confidence_interval(0.95)
        assert e["ci95_points"] == pytest.approx([100 * lo, 100 * hi])
    assert clear["p_value"] < 0.05 and clear["verdict"] == "a better" and "beats" in clear["sentence"]
    assert overlap["p_value"] >= 0.05 and overlap["verdict"] == "no significant difference"
    assert "no significant difference" in overlap["sentence"]
    assert (two["verdict"], two["p_value"], two["test"], two["ci95_points"]) == ("not tested", None, None, None)
    assert "not tested" in two["sentence"]


def test_a_malicious_run_name_is_escaped_everywhere(runs_dir, tmp_path):
    evil = '<img src=x onerror=alert(1)>"'
    root = tmp_path / "runs"
    shutil.copytree(runs_dir / "scratch-cnn_small-ds-s0", root / evil)
    text = build(root, "html", tmp_path / "r.html", embedding="none").read_text()
    assert evil not in text and "<img src=x" not in text
    assert 'id="run-&lt;img src=x onerror=alert(1)&gt;&#34;"' in text
    md = build(root, "md", tmp_path / "r.md", embedding="none").read_text()
    assert "<img src=x" not in md and "&lt;img src=x onerror=alert(1)&gt;" in md


def test_progress_line_on_stderr_only_when_asked(tmp_path, capsys):
    for s in range(2):
        _fake_run(tmp_path / "runs", f"r{s}", "scratch", 0.5, s, start="none")
    build(tmp_path / "runs", "html", tmp_path / "off.html", embedding="none", progress="off")
    assert capsys.readouterr().err == ""
    build(tmp_path / "runs", "html", tmp_path / "auto.html", embedding="none")  # auto: stderr is not a terminal
    assert capsys.readouterr().err == ""
    build(tmp_path / "runs", "html", tmp_path / "on.html", embedding="none", progress="on")
    err = capsys.readouterr().err
    assert "report: per-run analyses" in err and "2/2" in err and re.search(r"run/s|s/run", err)  # with its rate


def test_bad_options_and_missing_umap_fail_before_any_work(tmp_path):
    import importlib.util

    with pytest.raises(CifarlabError, match="progress 'sometimes' is not allowed; choose from: auto, on, off"):
        build(tmp_path / "absent", progress="sometimes")
    if importlib.util.find_spec("umap") is None:
        # the folder does not even exist: the umap error comes first, before any run is read
        with pytest.raises(CifarlabError, match=re.escape("pip install 'cifarlab[umap]'")):
            build(tmp_path / "absent", embedding="umap")
        from cifarlab.cli import main

        assert main(["report", str(tmp_path / "absent"), "--embedding", "umap", "--progress", "off"]) == 2


def test_a_cached_embedding_counts_its_computed_time_and_says_so(tmp_path):
    _fake_run(tmp_path / "runs", "hit", "linear", 0.7, 0, summary={"embed_time_s": 19.3, "embedding_cache": "hit"})
    _fake_run(tmp_path / "runs", "miss", "linear", 0.7, 1, summary={"embed_time_s": 19.3, "embedding_cache": "miss"})
    text = build(tmp_path / "runs", "html", tmp_path / "r.html", embedding="none").read_text()
    hit = text[text.index('id="run-hit"'):]
    hit = hit[:hit.index("</section>")]
    assert "embedding cached; computed in 19.3 s" in hit and "24.3 s" in hit  # 5.0 s training + 19.3 s embedding
    assert "embedding computed in 19.3 s" in text
    assert "embedding cached in 1 of 2 runs" in text  # the arm's cost note


def test_an_arms_figures_are_drawn_once_unless_all_are_asked_for(runs_dir, tmp_path):
    """--figures first-seed (the default): the lowest seed of an arm gets the curves, confusion matrix, mistakes
    and embedding; its other seeds keep their own tables and link there. --figures all draws every run's."""
    from cifarlab.analysis.perrun import analyse_all
    from cifarlab.analysis.runs import find_runs

    runs = find_runs(runs_dir)
    first = analyse_all(runs, "none", workers=1)
    every = analyse_all(runs, "none", workers=1, figures="all")
    by = {r.name: str(r.path) for r in runs}
    s0, s1 = by["scratch-cnn_small-ds-s0"], by["scratch-cnn_small-ds-s1"]
    names = [f.name for f in first[s0]["figures"]]
    assert "confusion" in names and "curves" in names and first[s0]["figures_in"] == ""
    assert first[s1]["figures"] == [] and first[s1]["figures_in"] == "scratch-cnn_small-ds-s0"
    assert first[s1]["per_class"] is not None and first[s1]["pairs"] == every[s1]["pairs"]  # its own tables
    assert [f.name for f in every[s1]["figures"]] == names
    assert first[by["rot"]]["figures"]  # an arm of one run draws its own
    html_text = build(runs_dir, "html", tmp_path / "r.html", embedding="none").read_text()
    section = re.search(r'<section id="run-scratch-cnn_small-ds-s1">.*?</section>', html_text, re.S).group(0)
    assert 'href="#run-scratch-cnn_small-ds-s0"' in section and "data:image/png" not in section


def test_per_class_and_confusion_views_are_per_arm_with_runs_one_click_away(tmp_path, monkeypatch):
    """Four arms of three seeds: the heatmap gets one row per arm (the mean over its seeds), the arms table links
    every run's page, and the regimes section names its reference and what each arm fixes against it."""
    import numpy as np

    from cifarlab.analysis import plots

    from tests.analysis.fabricated import fabricate_study

    root = fabricate_study(tmp_path / "runs", seeds=3, arms=("scratch", "linear", "supcon", "supcon-control"))
    drawn = {}
    real = plots.per_class_heatmap
    monkeypatch.setattr(plots, "per_class_heatmap", lambda acc, *a: drawn.update(acc) or real(acc, *a))
    text = build(root, "html", tmp_path / "r.html", embedding="none").read_text()
    assert len(drawn) == 4 and all("(3 seeds)" in label for label in drawn)
    scratch = next(v for k, v in drawn.items() if "scratch" in k)
    per_seed = []
    for s in range(3):
        p = np.load(root / f"scratch-s{s}" / "predictions.npz")
        per_seed.append([(p["preds"][p["labels"] == c] == c).mean() for c in range(10)])
    assert np.allclose(scratch, np.mean(per_seed, axis=0))
    pairs = re.search(r'<table id="pairs">.*?</table>', text, re.S).group(0)
    assert len(re.findall(r"<tr><td>", pairs)) == 4
    for arm in ("scratch", "linear", "supcon", "supcon-control"):
        for s in range(3):
            assert f'<a href="#run-{arm}-s{s}">' in pairs and f'id="run-{arm}-s{s}"' in text
    regimes_html = re.search(r'<section id="regimes">.*?</section>', text, re.S).group(0)
    assert regimes_html.count("data:image/png;base64,") == 2  # each arm's confusion, and the differences
    assert "Reference: cnn_small scratch (3 seeds), the from-scratch arm" in regimes_html
    assert len(re.findall(r'<p class="finding">[^<]* against cnn_small scratch \(3 seeds\): fewer ', regimes_html)) == 3
