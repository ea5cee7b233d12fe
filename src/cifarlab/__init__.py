"""cifarlab: train and compare representation-learning regimes on small image datasets."""
import time as _time

__version__ = "0.1.0"
IMPORTED_AT = _time.perf_counter()  # before torch and the rest are imported: the start-up's import share counts
