"""benchmarks/gpu_check.sh's study modes as a CPU smoke run (`curriculum`; `rotnet` is the same functions with
another study): synthetic data instead of the
staged CIFAR-10 (CL_DATASET), a one-run study instead of the GPU-scale one (STUDY_FILE), logs and runs in a
temporary folder (LOG, RUNS). Each mode runs its study, writes the report, summarises the runs and packs them into
$OUT, so a lent session finds the script working unchanged."""

import sys
import tarfile

import pytest

from tests.conftest import run_gpu_check


@pytest.mark.heavy  # ~25 s: a study, its report and a Chromium screenshot (.ci/run's heavy step runs it)
@pytest.mark.skipif(sys.platform != "linux", reason="bash script")
def test_the_curriculum_mode_runs_reports_and_packs_its_runs(tmp_path):
    mode = "curriculum"
    done = run_gpu_check(mode, tmp_path, '[study]\nname = "one"\n[defaults]\nprogress = "off"\nepochs = 1\n'
                         'model = "cnn_small"\nembed_samples = 8\n[[runs]]\nrecipe = "scratch"\nname = "sc-s{seed}"\n',
                         "synthetic:4:24:8")
    out = tmp_path / "out"
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"== {mode}: rc 0" in done.stdout and f"== {mode}-report: rc 0" in done.stdout, done.stdout
    assert "0 failed" in (tmp_path / "logs" / f"{mode}.log").read_text()
    assert (out / f"{mode}-report.html").stat().st_size > 1000
    with tarfile.open(out / f"{mode}.tgz") as packed:
        names = packed.getnames()
    assert f"runs/{mode}/sc-s0/summary.json" in names and f"logs/{mode}.log" in names
