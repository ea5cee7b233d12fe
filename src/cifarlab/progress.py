"""The package's one progress bar: tqdm on stderr, one line with its rate, switched by the ``progress`` key.

Modes: ``on`` always shows it, ``off`` never, ``auto`` when stderr is a terminal (so piped or logged output and the
test suite, whose stderr is captured, stay quiet). Every phase that can take more than a few seconds (decoding,
embedding, evaluation, a study's runs) wraps its loop in :func:`bar`.
"""

from __future__ import annotations

import sys
from typing import NamedTuple

from tqdm import tqdm

MODES = ("auto", "on", "off")


class Line(NamedTuple):
    """What a phase shows: its bar's mode (``on`` | ``off`` | ``auto``) and label (:func:`bar`'s ``desc``)."""

    mode: str = "off"
    desc: str = ""


def enabled(mode: str) -> bool:
    """Whether a bar shows under ``mode`` (``auto``: stderr is a TTY).

    Raises:
        ValueError: ``mode`` is not one of :data:`MODES`.
    """
    if mode not in MODES:
        raise ValueError(f"progress={mode!r}; choose from: {', '.join(MODES)}")
    if mode == "auto":
        return sys.stderr.isatty()
    return mode == "on"


def bar(total: int | None, desc: str, mode: str = "off", unit: str = "img") -> tqdm:
    """A tqdm bar on stderr (one line: count, rate in ``unit``/s, elapsed and remaining time), disabled unless
    :func:`enabled`. Use as a context manager and call ``update(n)`` per step.

    Args:
        total: steps (e.g. images) expected; None when unknown.
        desc: what is being done, e.g. ``"embedding 128px"``.
        mode: ``on`` | ``off`` | ``auto``.
        unit: what one step counts, shown in the rate.
    """
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, file=sys.stderr, disable=not enabled(mode),
                leave=False, dynamic_ncols=True, mininterval=0.5)
