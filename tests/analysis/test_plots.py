"""Chart labels that agree with the numbers drawn: units, tasks and chance levels."""

import numpy as np

from cifarlab.analysis import plots


def test_the_per_class_heatmap_draws_percent_under_a_percent_colour_bar():
    fig = plots.per_class_heatmap({"a": np.array([0.5, 0.25]), "b": np.array([1.0, 0.0])}, ["cat", "dog"],
                                  "per-class test accuracy (%)")
    heat, bar = fig.axes
    image = heat.get_images()[0]
    assert image.get_clim() == (0, 100) and image.get_array().max() == 100  # the colours are in percent
    assert "%" in bar.get_ylabel() and bar.get_ylim() == (0, 100)
    assert sorted(t.get_text() for t in heat.texts) == ["0", "100", "25", "50"]  # the cells: percent too


def test_accuracy_against_time_labels_the_axis_it_is_given():
    fig = plots.accuracy_vs_time([("r", "rotation", 3.0, 0.7)], "t", ylabel="rotation accuracy (4-way, chance 25%)")
    assert fig.axes[0].get_ylabel() == "rotation accuracy (4-way, chance 25%)"
