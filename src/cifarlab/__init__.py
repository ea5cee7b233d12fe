"""cifarlab: train and compare representation-learning regimes on small image datasets."""
__version__ = "0.1.0"
