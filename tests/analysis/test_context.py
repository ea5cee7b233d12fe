"""The report's context: a 4-way rotation score never shares an axis with a class accuracy."""

import json

from cifarlab.analysis import context, findings, origin
from cifarlab.analysis.runs import find_runs

from tests.analysis.test_findings import _run


def _axis(fig) -> str:
    import io

    import matplotlib.image

    assert matplotlib.image.imread(io.BytesIO(fig.png)).size  # a real PNG was drawn
    return fig.alt


def test_rotation_runs_get_their_own_overview_chart_with_the_task_and_chance(tmp_path):
    _run(tmp_path, "rot", "rotation", acc=0.7)
    _run(tmp_path, "ft", "finetune", acc=0.6, start="init:" + str(tmp_path / "rot"), init=str(tmp_path / "rot"))
    runs = find_runs(tmp_path)
    figs = context.overview_figures(runs, origin.Origins(runs))
    assert [f.name for f in figs] == ["overview", "overview-rotation"]
    assert _axis(figs[0]).startswith("test accuracy (4 classes, chance 25%)")
    assert _axis(figs[1]).startswith(context.ROTATION_AXIS)
    rot = [r for r in runs if r.name == "rot"]
    assert context.accuracy_axis(rot) == "rotation accuracy (4-way pretext, chance 25%)"


def test_a_rotation_question_charts_pretext_and_class_accuracy_apart_and_tags_the_pretext_cell(tmp_path):
    for i in range(3):
        _run(tmp_path, f"rot-s{i}", "rotation", acc=0.7, seed=i)
    runs = find_runs(tmp_path)
    f = findings.Finding("rotation", "Rotation pretraining", "?")
    findings.add_arms(f, "pretext", runs)
    ft = tmp_path / "ft"
    _run(ft, "ft-s0", "finetune", acc=0.6, start="init:x", init="x")
    f.arms.append(findings.Arm("fine-tune", find_runs(ft)))
    charts = context.finding_charts(f, runs)
    assert [c.name for c in charts] == ["rotation", "rotation-pretext"]
    assert "test accuracy (4 classes" in charts[0].alt and context.ROTATION_AXIS in charts[1].alt
    q = context._question(f, charts, [])
    cells = {a["label"]: a["cells"][0] for a in q["arms"]}
    assert cells["pretext"].endswith("(rotation, 4-way)") and not cells["fine-tune"].endswith("4-way)")
    json.dumps(q["arms"][0]["facts"])  # the arm's recipe facts are plain strings
