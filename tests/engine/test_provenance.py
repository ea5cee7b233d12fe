"""The process's age, which the first run of a process counts as its start-up."""

import time

import pytest

import cifarlab
from cifarlab.engine import provenance


def test_process_age_counts_the_interpreter_start_when_it_is_short(monkeypatch):
    since_import = time.perf_counter() - cifarlab.IMPORTED_AT
    monkeypatch.setattr(provenance, "_proc_age_s", lambda: since_import + 0.3)  # the interpreter's own start
    assert provenance.process_age_s() == pytest.approx(since_import + 0.3, abs=0.05)


def test_a_pid_that_ran_something_else_first_counts_from_cifarlabs_import(monkeypatch):
    """A shell's exec keeps the pid and its start time: `bash -c "a && b"` runs b in a's shell process."""
    since_import = time.perf_counter() - cifarlab.IMPORTED_AT
    monkeypatch.setattr(provenance, "_proc_age_s", lambda: since_import + 50.0)
    assert provenance.process_age_s() == pytest.approx(since_import, abs=0.05)
    monkeypatch.setattr(provenance, "_proc_age_s", lambda: None)  # no /proc
    assert provenance.process_age_s() == pytest.approx(since_import, abs=0.05)


def test_the_real_process_age_is_at_least_the_time_since_import():
    assert provenance.process_age_s() >= time.perf_counter() - cifarlab.IMPORTED_AT - 1e-3
