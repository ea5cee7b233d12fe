"""Data: sources (torchvision CIFAR, image folders, synthetic), subsets and splits, on-device batches, augmentation."""

from cifarlab.data.augment import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD, Augment, ContrastiveViews
from cifarlab.data.sources import ImageData, load_dataset
from cifarlab.data.splits import Split, make_split, stratified_sample

__all__ = ["Augment", "ContrastiveViews", "ImageData", "Split", "load_dataset", "make_split", "stratified_sample",
           "CIFAR10_MEAN", "CIFAR10_STD", "IMAGENET_MEAN", "IMAGENET_STD"]
