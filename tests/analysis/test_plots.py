"""Chart labels that agree with the numbers drawn (units, tasks, chance levels), and plots that must stay readable
as studies grow: the accuracy-against-time scatter labels arms, not runs; the
regimes' confusion differences sit on a diverging map centred at 0."""

import matplotlib.colors
import numpy as np

from cifarlab.analysis import plots, regimes
from cifarlab.analysis.origin import Origins
from cifarlab.analysis.runs import find_runs

from tests.analysis.fabricated import ARMS, fabricate_study


def test_scatter_at_50_runs_labels_each_arm_once_and_no_run(tmp_path):
    runs = find_runs(fabricate_study(tmp_path / "runs", seeds=5, files=False))
    assert len(runs) == 50
    arms = {a.label: [(r.summary["train_time_s"], r.accuracy) for r in a.runs]
            for a in regimes.regime_arms(runs, Origins(runs))}
    assert len(arms) == len(ARMS) == 10
    fig = plots.accuracy_vs_time(arms, "t")
    ax = fig.axes[0]
    texts = [t.get_text() for t in fig.findobj(matplotlib.text.Text) if t.get_text()]
    assert not [t for t in texts if any(r.name in t for r in runs)]  # no run is named anywhere in the figure
    assert sorted(t.get_text() for t in ax.texts) == sorted(str(k + 1) for k in range(10))  # one number per arm
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert [entry.split("  ", 1)[1] for entry in legend] == list(arms)
    # every run is still drawn, as a small point of its arm
    seeds = [c for c in ax.collections if isinstance(c, matplotlib.collections.PathCollection)]
    assert sum(len(c.get_offsets()) for c in seeds) == 50


def test_confusion_difference_is_diverging_and_centred_at_zero():
    ref = np.array([[0.5, 0.5], [0.1, 0.9]])
    better = np.array([[0.9, 0.1], [0.1, 0.9]])  # the arm fixes 40 points of class 0 taken for class 1
    fig = plots.confusion_grid({"arm": better}, ["a", "b"], reference=ref)
    im = fig.axes[0].images[0]
    assert np.allclose(im.get_array(), better - ref)
    norm = im.norm
    assert isinstance(norm, matplotlib.colors.TwoSlopeNorm) and norm.vcenter == 0 and norm.vmin == -norm.vmax
    fixed, correct = (im.cmap(norm(v)) for v in (better - ref)[0, [1, 0]])
    assert fixed[2] > fixed[0] and correct[0] > correct[2]  # fewer confusions blue, more correct red
    plain = plots.confusion_grid({"x": better, "y": ref}, ["a", "b"])
    assert [ax.get_title() for ax in plain.axes if ax.images] == ["x", "y"]
    assert plain.axes[0].images[0].norm.vmin == 0 and np.allclose(plain.axes[1].images[0].get_array(), ref)


def test_the_per_class_heatmap_draws_percent_under_a_percent_colour_bar():
    fig = plots.per_class_heatmap({"a": np.array([0.5, 0.25]), "b": np.array([1.0, 0.0])}, ["cat", "dog"],
                                  "per-class test accuracy (%)")
    heat, bar = fig.axes
    image = heat.get_images()[0]
    assert image.get_clim() == (0, 100) and image.get_array().max() == 100  # the colours are in percent
    assert "%" in bar.get_ylabel() and bar.get_ylim() == (0, 100)
    assert sorted(t.get_text() for t in heat.texts) == ["0", "100", "25", "50"]  # the cells: percent too


def test_accuracy_against_time_labels_the_axis_it_is_given():
    fig = plots.accuracy_vs_time({"rotation": [(3.0, 0.7)]}, "t", ylabel="rotation accuracy (4-way, chance 25%)")
    assert fig.axes[0].get_ylabel() == "rotation accuracy (4-way, chance 25%)"
