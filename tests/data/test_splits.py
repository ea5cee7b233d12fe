import pytest
import torch

from cifarlab.data import make_split, stratified_sample
from cifarlab.errors import ConfigError

LABELS = torch.arange(10).repeat_interleave(100)


def test_per_class_is_stratified_seeded_and_disjoint():
    s = make_split(LABELS, per_class=20, val_fraction=0.1, seed=3)
    assert torch.bincount(LABELS[s.train]).tolist() == [18] * 10
    assert torch.bincount(LABELS[s.val]).tolist() == [2] * 10
    assert not set(s.train.tolist()) & set(s.val.tolist())
    again = make_split(LABELS, per_class=20, val_fraction=0.1, seed=3)
    assert s.digest() == again.digest()
    assert make_split(LABELS, per_class=20, val_fraction=0.1, seed=4).digest() != s.digest()


def test_larger_subsets_contain_smaller_ones():
    small = make_split(LABELS, per_class=20, val_fraction=0.0, seed=0)
    big = make_split(LABELS, per_class=50, val_fraction=0.0, seed=0)
    assert set(small.train.tolist()) <= set(big.train.tolist())


def test_fraction_and_too_many_per_class():
    s = make_split(LABELS, train_fraction=0.5, val_fraction=0.2, seed=0)
    assert len(s.train) + len(s.val) == 500 and len(s.val) == 100
    with pytest.raises(ConfigError, match=r"per_class=101 is more than class 0 has \(100 train images\)"):
        make_split(LABELS, per_class=101)


def test_stratified_sample_keeps_proportions():
    idx = stratified_sample(LABELS, 200, seed=0)
    assert torch.bincount(LABELS[idx]).tolist() == [20] * 10
