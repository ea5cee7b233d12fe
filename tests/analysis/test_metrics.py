import numpy as np

from cifarlab.analysis import metrics


def _planted():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 50)
    preds = labels.copy()
    cats = np.nonzero(labels == 2)[0]
    preds[cats[:20]] = 3  # planted: 20 "cat" -> "dog"
    dogs = np.nonzero(labels == 3)[0]
    preds[dogs[:10]] = 2  # and 10 back
    preds[rng.choice(np.nonzero(labels == 0)[0], 3, replace=False)] = 1
    return labels, preds


def test_confusion_sums_and_diagonal():
    labels, preds = _planted()
    cm = metrics.confusion(labels, preds, 4)
    assert cm.sum() == len(labels)
    assert (cm.sum(1) == np.bincount(labels)).all()
    acc = metrics.per_class_accuracy(cm)
    for k in range(4):
        assert acc[k] == (preds[labels == k] == k).mean()
    assert np.allclose(metrics.normalise_rows(cm).sum(1), 1)


def test_top_confused_pair_is_the_planted_one():
    labels, preds = _planted()
    pairs = metrics.top_confused_pairs(metrics.confusion(labels, preds, 4), ["plane", "car", "cat", "dog"], 2)
    assert (pairs[0]["a"], pairs[0]["b"], pairs[0]["count"]) == ("cat", "dog", 30)
    assert (pairs[0]["a_as_b"], pairs[0]["b_as_a"]) == (20, 10)
    assert (pairs[1]["a"], pairs[1]["b"], pairs[1]["count"]) == ("plane", "car", 3)


def test_silhouette_separates_clusters_from_noise():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    centres = np.eye(3, 8) * 10
    clustered = centres[labels] + rng.normal(size=(120, 8))
    noise = rng.normal(size=(120, 8))
    assert metrics.embedding_silhouette(clustered, labels) > 0.5 > metrics.embedding_silhouette(noise, labels)
