"""Results in Python: every view of a run is a matplotlib Figure drawn by the report's plot functions, with the right
arrays behind it; missing files and non-run folders fail with one line naming the file; the Jupyter view escapes;
a study's findings come as objects and as the report's findings.json rows; arms side by side."""

import json

import numpy as np
import pytest
from matplotlib.figure import Figure

from cifarlab import api
from cifarlab.analysis import plots
from cifarlab.analysis.report import build, findings_path
from cifarlab.errors import CifarlabError

from tests.analysis.test_findings import _run

EVIL = "<script>alert(1)</script>"
COMMON = {"dataset": "synthetic:4:20:10", "image_size": 16, "model": "cnn_small", "epochs": 2, "batch_size": 16,
          "progress": "off", "embed_samples": 30}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    scratch = api.train(api.make_config("scratch", overrides={**COMMON, "out": str(out)})).path
    rot = api.train(api.make_config("rotation", overrides={**COMMON, "out": str(out), "name": "rot"})).path
    return scratch, rot


def test_each_view_is_a_figure_with_its_arrays(runs):
    run = api.load_run(runs[0])
    pred = np.load(runs[0] / "predictions.npz")
    cm = run.confusion_matrix()
    assert cm.shape == (4, 4) and cm.sum() == len(pred["labels"])
    assert np.trace(cm) == int((pred["labels"] == pred["preds"]).sum())
    assert run.accuracy == pytest.approx(np.trace(cm) / cm.sum())
    acc = run.per_class_accuracy()
    assert list(acc) == run.classes and all(acc[c] == cm[i, i] / cm[i].sum() for i, c in enumerate(run.classes))
    assert [r["epoch"] for r in run.history()] == [1, 2]
    m = run.misclassified()
    assert len(m.images) == len(m.true) > 0 and (m.true != m.predicted).all()
    assert (m.true == pred["labels"][m.index]).all()
    xy, labels = run.projection()
    assert xy.shape == (len(pred["embed_idx"]), 2) and (labels == pred["labels"][pred["embed_idx"]]).all()
    for view in ("curves", "confusion", "per_class", "mistakes", "embedding"):
        assert isinstance(getattr(run, view)(), Figure), view


def test_the_confusion_view_is_the_reports_own_plot(runs, monkeypatch):
    run = api.load_run(runs[0])
    seen = {}
    real = plots.confusion_matrix

    def spy(cm, classes, title=""):
        seen["cm"] = cm
        return real(cm, classes, title)

    monkeypatch.setattr(plots, "confusion_matrix", spy)
    fig = run.confusion()
    assert isinstance(fig, Figure) and (seen["cm"] == run.confusion_matrix()).all()


def test_facts_summary_and_config(runs):
    run = api.load_run(runs[0])
    assert run.name == runs[0].name and run.path == runs[0]
    assert run.summary["status"] == "complete" and run.config["epochs"] == 2 and run.config["model"] == "cnn_small"
    facts = run.facts()
    assert facts["recipe"] == "scratch" and facts["test accuracy"] == f"{100 * run.accuracy:.2f}%"
    assert facts["images (train/val/test)"] == f"{run.summary['num_train']}/{run.summary['num_val']}/40"


def test_repr_html_escapes_every_string(runs, tmp_path):
    import shutil

    d = tmp_path / "evil"
    shutil.copytree(runs[0], d)
    s = json.loads((d / "summary.json").read_text())
    s["model"], s["error"] = EVIL, EVIL
    (d / "summary.json").write_text(json.dumps(s))
    text = api.load_run(d)._repr_html_()
    assert EVIL not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_a_rotation_run_has_an_embedding_but_no_class_views(runs):
    run = api.load_run(runs[1])
    assert isinstance(run.embedding(), Figure) and run.facts()["rotation accuracy"].endswith("%")
    with pytest.raises(CifarlabError, match="rotation run predicts rotations"):
        run.confusion()


def test_missing_files_and_folders_are_named(runs, tmp_path):
    with pytest.raises(CifarlabError, match="no such run directory"):
        api.load_run(tmp_path / "nope")
    with pytest.raises(CifarlabError, match="not a run directory: no summary.json.*use load_study"):
        api.load_run(runs[0].parent)
    import shutil

    d = tmp_path / "bare"
    shutil.copytree(runs[0], d)
    (d / "predictions.npz").unlink()
    (d / "metrics.csv").unlink()
    run = api.load_run(d)
    with pytest.raises(CifarlabError, match=r"has no predictions.npz \(written by every recipe, once the run"):
        run.confusion()
    with pytest.raises(CifarlabError, match=r"has no metrics.csv \(written by every recipe, after each epoch"):
        run.curves()


def _study(root):
    for i, (a, b) in enumerate([(0.80, 0.70), (0.82, 0.71), (0.81, 0.69)]):
        _run(root, f"ft-s{i}", "finetune", acc=a, seed=i, start="imagenet:torchvision IMAGENET1K_V1")
        _run(root, f"lin-s{i}", "linear", acc=b, seed=i, start="imagenet:torchvision IMAGENET1K_V1")
    return root


def test_study_findings_as_objects_and_as_the_reports_table(tmp_path):
    root = _study(tmp_path / "study")
    study = api.load_study(root)
    assert [f.key for f in study.findings] == ["transfer"]
    table = study.findings_table()
    rows = table.to_dict("records") if hasattr(table, "to_dict") else table
    report = build(root, "md", tmp_path / "r.md", embedding="none", progress="off")
    assert rows == json.loads(findings_path(report).read_text())  # the same rows the report writes
    assert any(r["verdict"] == "a better" and r["question"] == "transfer" for r in rows)


def test_compare_draws_arms_side_by_side(tmp_path, monkeypatch):
    study = api.load_study(_study(tmp_path / "study"))
    seen = {}
    real = plots.arm_bars

    def spy(groups, title="", xlabel="test accuracy"):
        seen.update(groups)
        return real(groups, title, xlabel)

    monkeypatch.setattr(plots, "arm_bars", spy)
    assert isinstance(study.compare(), Figure)
    ft = next(v for k, v in seen.items() if "full fine-tuning" in k)
    assert ft["test acc"][0] == pytest.approx(0.81) and ft["test acc"][1] == pytest.approx(0.01)
    with pytest.raises(CifarlabError, match="choose from: accuracy, per_class"):
        study.compare("nope")
    with pytest.raises(CifarlabError, match="no arm .* has class predictions"):
        study.compare("per_class")  # fabricated runs saved no predictions


def test_compare_per_class_is_the_mean_over_seeds(runs, tmp_path):
    import shutil

    root = tmp_path / "s"
    shutil.copytree(runs[0], root / "a-s0")
    shutil.copytree(runs[0], root / "a-s1")
    cfg = json.loads((root / "a-s1" / "config.json").read_text())
    cfg["config"]["seed"] = 1
    (root / "a-s1" / "config.json").write_text(json.dumps(cfg))
    study = api.load_study(root)
    acc = study.per_arm_class_accuracy()
    assert len(acc) == 1
    expected = np.array(list(api.load_run(runs[0]).per_class_accuracy().values()))
    assert np.allclose(next(iter(acc.values())), expected)
    assert isinstance(study.compare("per_class"), Figure)
    assert EVIL not in api.load_study(root)._repr_html_()


def test_a_collapsed_encoder_is_named_not_projected(runs, tmp_path):
    """All-equal embeddings (a stand-in encoder after one step) once crashed t-SNE; the view now says why."""
    import shutil

    d = tmp_path / "collapsed"
    shutil.copytree(runs[0], d)
    z = dict(np.load(d / "predictions.npz"))
    z["embeddings"] = np.zeros_like(z["embeddings"])
    np.savez(d / "predictions.npz", **z)
    with pytest.raises(CifarlabError, match="embeddings are the same vector"):
        api.load_run(d).embedding()
