"""benchmarks/gpu_check.sh's study modes as a CPU smoke run (`curriculum`; `rotnet` is the same functions with
another study): synthetic data instead of the
staged CIFAR-10 (CL_DATASET), a one-run study instead of the GPU-scale one (STUDY_FILE), logs and runs in a
temporary folder (LOG, RUNS). Each mode runs its study, writes the report, summarises the runs and packs them into
$OUT, so a lent session finds the script working unchanged."""

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.heavy  # ~25 s: a study, its report and a Chromium screenshot (.ci/run's heavy step runs it)
@pytest.mark.skipif(sys.platform != "linux", reason="bash script")
def test_the_curriculum_mode_runs_reports_and_packs_its_runs(tmp_path):
    mode = "curriculum"
    study = tmp_path / "one.toml"
    study.write_text('[study]\nname = "one"\n[defaults]\nprogress = "off"\nepochs = 1\nmodel = "cnn_small"\n'
                     'embed_samples = 8\n[[runs]]\nrecipe = "scratch"\nname = "sc-s{seed}"\n')
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "CL_DATASET": "synthetic:4:24:8", "TOTAL": "240", "STUDY_FILE": str(study),
           "LOG": str(tmp_path / "logs"), "RUNS": str(tmp_path / "runs"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh", mode], cwd=REPO, env=env, text=True,
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"== {mode}: rc 0" in done.stdout and f"== {mode}-report: rc 0" in done.stdout, done.stdout
    assert "0 failed" in (tmp_path / "logs" / f"{mode}.log").read_text()
    assert (out / f"{mode}-report.html").stat().st_size > 1000
    with tarfile.open(out / f"{mode}.tgz") as packed:
        names = packed.getnames()
    assert f"runs/{mode}/sc-s0/summary.json" in names and f"logs/{mode}.log" in names
