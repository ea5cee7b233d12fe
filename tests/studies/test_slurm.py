"""The Slurm executor: settings, dry run and submission logic without Slurm (submitit's local executor; sbatch/squeue
stand-ins that record what submitit hands them), then against a real one-node Slurm (``benchmarks/slurm_local.sh
start``; heavy, skipped when no Slurm answers): a study with a dependency, and a job preempted mid-training."""

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from mini_study import HEADER

from cifarlab import api
from cifarlab.errors import CifarlabError, ConfigError
from cifarlab.studies import slurm
from cifarlab.studies.runner import run_study

submitit = pytest.importorskip("submitit")

STUDY = HEADER + """
[slurm]
gpus_per_job = 0
cpus_per_job = 1
time = 10

[[runs]]
recipe = "rotation"
name = "rot-s{seed}"
seeds = [0]

[[runs]]
recipe = "finetune"
init = "@rot-s{seed}"
name = "ft-s{seed}"
per_class = 5
seeds = [0]
"""
SCRATCH = '\n[[runs]]\nrecipe = "scratch"\nname = "sc-s{seed}"\nseeds = [0, 1]\n'


def _summary(out, name):
    return json.loads((out / name / "summary.json").read_text())


def test_settings_from_the_table_and_flags_and_their_errors(tmp_path):
    s = slurm.settings({"partition": "gpu", "time": "1-02:00:00", "sbatch": {"constraint": "a100"}}, "f.toml",
                       {"qos": "high", "time": None, "sbatch": {"exclusive": True}})
    assert (s.partition, s.qos, s.minutes()) == ("gpu", "high", 26 * 60)
    minutes = {45: 45, "45": 45, "2:30": 3, "1:30:00": 90, "2-0": 2880, "1-1:30": 1530, "0-0:0:1": 1}  # Slurm's forms
    assert {t: slurm.settings({"time": t}, "f").minutes() for t in minutes} == minutes
    lines = s.sbatch_lines()
    for line in ("#SBATCH --partition=gpu", "#SBATCH --qos=high", "#SBATCH --gpus-per-node=1", "#SBATCH --requeue",
                 "#SBATCH --constraint=a100", "#SBATCH --exclusive", "#SBATCH --signal=USR2@120"):
        assert line in lines, (line, lines)
    with pytest.raises(ConfigError, match=r"f.toml: unknown key\(s\) \['gpus'\] in \[slurm\]; allowed: partition"):
        slurm.settings({"gpus": 2}, "f.toml")
    with pytest.raises(ConfigError, match=r"f.toml: \[slurm\] cpus_per_job='8' has the wrong type; expected int"):
        slurm.settings({"cpus_per_job": "8"}, "f.toml")
    with pytest.raises(ConfigError, match=r"with executor=slurm each run is a job: set gpus_per_job"):
        api.study(str(tmp_path / "none.toml"), str(tmp_path), executor="slurm", jobs_per_device=2)
    with pytest.raises(ConfigError, match=r"slurm time='soon': use Slurm's formats: minutes, M:S"):
        slurm.settings({"time": "soon"}, "f.toml")


def test_dry_run_shows_the_job_options_and_what_is_submitted_after_what(tmp_path, capsys):
    from cifarlab.cli import main

    f = tmp_path / "mini.toml"
    f.write_text(STUDY)
    assert main(["study", str(f), "--out", str(tmp_path / "out"), "--executor", "slurm", "--dry-run",
                 "--partition", "short", "--sbatch", "constraint=v100"]) == 0
    out = capsys.readouterr().out
    assert "#SBATCH --partition=short" in out and "#SBATCH --cpus-per-task=1" in out
    assert "#SBATCH --constraint=v100" in out and "--gpus-per-node" not in out
    assert "  submit rot-s0\n" in out and "  submit ft-s0 (afterok: rot-s0)" in out
    assert not (tmp_path / "out").exists()


def test_submitit_without_slurm_waits_for_dependencies_and_records_jobs(tmp_path, capsys):
    """The submission logic with submitit's debug executor (in this process; no afterok there, so the submitter
    waits for a run's dependency before submitting it)."""
    f = tmp_path / "mini.toml"
    f.write_text(STUDY)
    out = tmp_path / "out"
    ex = submitit.DebugExecutor(folder=tmp_path / "jobs")
    failed, report = run_study(f, out, report=False, executor="slurm", submitit_executor=ex)
    assert failed == [] and report is None
    rot, ft = _summary(out, "rot-s0"), _summary(out, "ft-s0")
    assert rot["status"] == ft["status"] == "complete" and ft["started"] >= rot["finished"]
    runs = json.loads((out / "study.json").read_text())["runs"]
    assert runs["rot-s0"]["job_id"] and runs["ft-s0"]["job_id"] != runs["rot-s0"]["job_id"]
    assert runs["rot-s0"]["state"] == runs["ft-s0"]["state"] == "complete"
    err = capsys.readouterr().err
    assert f"rot-s0: complete rotation_test_acc {100 * rot['rotation_test_acc']:.2f}%" in err
    assert f"ft-s0: complete test_acc {100 * ft['test_acc']:.2f}% (train {ft['train_time_s']:.1f}s)" in err
    # submitted again: every run is complete, nothing is submitted
    failed, _ = run_study(f, out, report=False, executor="slurm", submitit_executor=ex)
    assert failed == [] and "submitted" not in capsys.readouterr().err


def _fake_slurm(bin_dir: Path, squeue_state: str = "") -> None:
    """sbatch that keeps the script it is given and answers with the next job id; squeue that reports every job as
    ``squeue_state`` (or knows none); srun present (submitit looks for it)."""
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "sbatch").write_text(f"""#!/bin/sh
n=$(cat {bin_dir}/n 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {bin_dir}/n
cp "$1" {bin_dir}/job$n.sh; echo "Submitted batch job $n"
""")
    (bin_dir / "squeue").write_text(f"#!/bin/sh\n{'echo ' + squeue_state if squeue_state else 'true'}\n")
    (bin_dir / "scontrol").write_text("#!/bin/sh\ntrue\n")
    (bin_dir / "srun").write_text("#!/bin/sh\ntrue\n")
    for p in bin_dir.iterdir():
        p.chmod(0o755)


def test_slurm_jobs_get_afterok_dependencies_and_a_resubmission_follows_queued_jobs(tmp_path, monkeypatch, capsys):
    """What submitit hands sbatch: afterok on the rotation job, requeue, the time-limit signal, the [slurm] options;
    a study submitted again while its jobs are queued follows them instead of submitting twice."""
    bin_dir = tmp_path / "bin"
    _fake_slurm(bin_dir)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    f = tmp_path / "mini.toml"
    f.write_text(STUDY)
    out = tmp_path / "out"
    failed, report = api.study(str(f), str(out), executor="slurm", slurm={"partition": "short"}, wait=False)
    assert failed == [] and report is None
    rot, ft = (bin_dir / "job1.sh").read_text(), (bin_dir / "job2.sh").read_text()
    assert "--dependency" not in rot and "#SBATCH --dependency=afterok:1\n" in ft
    for text in (rot, ft):
        for option in ("--requeue", "--kill-on-invalid-dep=yes", "--signal=USR2@120", "--partition=short",
                       "--cpus-per-task=1", "--time=10"):
            assert f"#SBATCH {option}\n" in text, option
    doc = json.loads((out / "study.json").read_text())
    assert doc["runs"]["rot-s0"]["job_id"] == "1" and doc["runs"]["ft-s0"] == {"job_id": "2", "state": "submitted",
                                                                             "after": ["1"]}
    assert doc["slurm"]["partition"] == "short" and doc["executor"] == "slurm"
    assert "submitted ft-s0 as job 2 (afterok: 1)" in capsys.readouterr().err
    _fake_slurm(bin_dir, squeue_state="PENDING")
    api.study(str(f), str(out), executor="slurm", wait=False)
    assert not (bin_dir / "job3.sh").exists()
    assert "ft-s0: job 2 from an earlier submission is still PENDING; following it" in capsys.readouterr().err


# ---- against a real Slurm ----------------------------------------------------------------------------------------


def _slurm_up() -> bool:
    """A Slurm answers, and it is the local test cluster (or CIFARLAB_SLURM_TESTS=1 allows another one): these tests
    submit CPU jobs to the default partition and wait for them."""
    if not shutil.which("sinfo") or subprocess.run(["sinfo", "-h"], capture_output=True).returncode != 0:
        return False
    conf = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True).stdout
    return "cifarlab-local" in conf or os.environ.get("CIFARLAB_SLURM_TESTS") == "1"


needs_slurm = pytest.mark.skipif(not _slurm_up(), reason="no local Slurm answers (benchmarks/slurm_local.sh start; "
                                                         "CIFARLAB_SLURM_TESTS=1 for another cluster)")


def _slurm_record(job_id: str) -> str:
    """The job's state in Slurm's own records: sacct where accounting runs, else scontrol, else the jobcomp log."""
    acct = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "State", "-j", job_id], capture_output=True, text=True)
    if acct.returncode == 0 and acct.stdout.strip():
        return acct.stdout.split()[0]
    show = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True).stdout
    if "JobState=" in show:
        return show.split("JobState=")[1].split()[0]
    conf = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True).stdout
    loc = next(line.split("=", 1)[1].strip() for line in conf.splitlines() if line.startswith("JobCompLoc"))
    lines = [line for line in Path(loc).read_text().splitlines() if line.startswith(f"JobId={job_id} ")]
    return lines[-1].split("JobState=")[1].split()[0] if lines else "unknown to Slurm"


@pytest.mark.heavy
@pytest.mark.slurm
@needs_slurm
def test_a_study_through_slurm(tmp_path, capsys):
    """Four runs, one starting from another (afterok): Slurm's records, study.json, every run, the report."""
    f = tmp_path / "mini.toml"
    f.write_text(STUDY + SCRATCH)
    out = tmp_path / "out"
    failed, report = api.study(str(f), str(out), executor="slurm")
    assert failed == [] and report and Path(report).is_file()
    runs = json.loads((out / "study.json").read_text())["runs"]
    assert sorted(runs) == ["ft-s0", "rot-s0", "sc-s0", "sc-s1"]
    for name, entry in runs.items():
        assert _summary(out, name)["status"] == "complete" and entry["state"] == "complete"
        assert entry["job_state"] == "COMPLETED" and _slurm_record(entry["job_id"]) == "COMPLETED", name
    assert runs["ft-s0"]["after"] == [runs["rot-s0"]["job_id"]]
    assert _summary(out, "ft-s0")["started"] >= _summary(out, "rot-s0")["finished"]
    err = capsys.readouterr().err
    assert all(f"{n}: complete " in err for n in runs)
    failed, _ = api.study(str(f), str(out), executor="slurm", report=False)  # again: nothing to submit
    assert failed == [] and "submitted" not in capsys.readouterr().err


PREEMPT = STUDY.split("[[runs]]")[0].replace("epochs = 1", "epochs = 16").replace(
    "synthetic:4:30:10", "synthetic:4:64:16") + '[[runs]]\nrecipe = "scratch"\nname = "long"\ndeterministic = true\n'


@pytest.mark.heavy
@pytest.mark.slurm
@needs_slurm
@pytest.mark.parametrize("how", ["requeue", "usr2"])
def test_a_job_preempted_mid_training_ends_with_the_uninterrupted_weights(tmp_path, how):
    """After two epochs, ``scontrol requeue`` (what preemption with PreemptMode=REQUEUE does: SIGTERM, requeue) or
    USR2 (what ``--signal=USR2@S`` sends S seconds before the time limit: submitit checkpoints and requeues): the
    requeued job resumes the run from its checkpoint, and the final weights equal an uninterrupted run's."""
    import torch

    from cifarlab.engine import checkpoint

    f = tmp_path / "long.toml"
    f.write_text(PREEMPT)
    ref_out, out = tmp_path / "ref", tmp_path / "out"
    assert run_study(f, ref_out, report=False)[0] == []  # uninterrupted, in this process
    failed, _ = run_study(f, out, report=False, executor="slurm", wait=False)
    job = json.loads((out / "study.json").read_text())["runs"]["long"]["job_id"]
    metrics = out / "long" / "metrics.csv"
    deadline = time.time() + 300
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 3):  # two epochs checkpointed
        assert time.time() < deadline, "the job never trained two epochs"
        time.sleep(0.2)
    assert _summary(out, "long")["status"] == "running"
    if how == "requeue":
        subprocess.run(["scontrol", "requeue", job], check=True)
    else:
        subprocess.run(["scancel", "--signal=USR2", job], check=True)
    while slurm.slurm_state(job) != "PENDING":  # killed, then back in the queue
        assert time.time() < deadline, f"job {job} did not return to the queue"
        time.sleep(0.2)
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)  # skip the requeue delay
    failed, _ = run_study(f, out, report=False, executor="slurm")  # follows the requeued job to its end
    assert failed == []
    show = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
    assert "Restarts=1" in show and "JobState=COMPLETED" in show
    log = "".join(p.read_text() for p in (out / ".slurm" / job).glob("*_log.*"))
    assert "resuming" in log and "after epoch" in log  # the requeued job continued from a checkpoint
    assert ("signal 15" if how == "requeue" else "Caught signal SIGUSR2") in log
    ref = checkpoint.load(ref_out / "long" / "checkpoints" / "last.pt")
    got = checkpoint.load(out / "long" / "checkpoints" / "last.pt")
    for k in ref["model"]:
        assert torch.equal(ref["model"][k], got["model"][k]), k
    assert _summary(out, "long")["test_acc"] == _summary(ref_out, "long")["test_acc"]


@pytest.mark.heavy  # three interpreter starts, two of them torchrun's two processes: about a minute on 2 cores
def test_a_multi_device_job_is_one_torchrun_ddp_run_equal_to_one_process(tmp_path):
    """What a job with gpus_per_job=2 runs (torchrun, 2 processes; gloo on the CPU here) trains the same weights as
    one process on the global batch (the engine's DDP equivalence, through the job's own command)."""
    import torch

    from cifarlab.engine import checkpoint

    keys = {"dataset": "synthetic:4:32:8", "model": "cnn_small_gn", "image_size": 16, "epochs": 2, "batch_size": 16,
            "lr": 0.05, "augment": "none", "progress": "off", "embed_samples": 10, "num_threads": 1, "device": "cpu",
            "out": str(tmp_path)}
    assert slurm.RunJob("ddp", "scratch", {**keys, "name": "ddp"}, str(tmp_path), nproc=2)()["status"] == "complete"
    assert slurm.RunJob("one", "scratch", {**keys, "name": "one"}, str(tmp_path), nproc=1)()["status"] == "complete"
    a = checkpoint.load(tmp_path / "one" / "checkpoints" / "last.pt")["model"]
    b = checkpoint.load(tmp_path / "ddp" / "checkpoints" / "last.pt")["model"]
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5)
    # and it was two processes: a global batch they cannot split is refused by the engine
    with pytest.raises(CifarlabError, match="batch_size=15 must be divisible by the 2 processes"):
        slurm.RunJob("odd", "scratch", {**keys, "name": "odd", "batch_size": 15}, str(tmp_path), nproc=2)()


def _refusing_sbatch(bin_dir: Path, reason: str) -> None:
    """sbatch that accepts the first job and refuses the second as a real one does: its reason on stderr, exit 1."""
    _fake_slurm(bin_dir)
    (bin_dir / "sbatch").write_text(f"""#!/bin/sh
n=$(cat {bin_dir}/n 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {bin_dir}/n
if [ $n -ge 2 ]; then echo "sbatch: error: {reason}" >&2; exit 1; fi
echo "Submitted batch job $n"
""")


@pytest.mark.parametrize("reason, setting", [("Invalid generic resource (gres) specification", "--gpus-per-job 0"),
                                             ("Batch job submission failed: Requested node configuration is not "
                                              "available", "--cpus-per-job")])
def test_a_job_sbatch_refuses_ends_in_one_line_with_the_setting_and_is_recorded(tmp_path, monkeypatch, reason,
                                                                                 setting):
    import sys

    from cifarlab import cli

    bin_dir = tmp_path / "bin"
    _refusing_sbatch(bin_dir, reason)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    f = tmp_path / "mini.toml"
    f.write_text(STUDY)
    out = tmp_path / "out"
    err = tmp_path / "stderr.txt"
    with err.open("w") as stream:
        monkeypatch.setattr(sys, "stderr", stream)
        code = cli.main(["study", str(f), "--out", str(out), "--executor", "slurm", "--no-wait", "--yes"])
    text = err.read_text()
    assert code != 0 and "Traceback" not in text
    lines = [line for line in text.splitlines() if "sbatch" in line]
    assert len(lines) == 1, text
    assert reason in lines[0] and setting in lines[0] and "ft-s0" in lines[0]
    runs = json.loads((out / "study.json").read_text())["runs"]
    assert runs["rot-s0"]["state"] == "submitted" and runs["ft-s0"]["state"] == "refused"
    assert reason in runs["ft-s0"]["error"]


@pytest.mark.parametrize("refuse", [True, False])
def test_dry_run_asks_sbatch_test_only_whether_the_jobs_would_be_accepted(tmp_path, monkeypatch, capsys, refuse):
    from cifarlab.cli import main

    bin_dir = tmp_path / "bin"
    _fake_slurm(bin_dir)
    answer = ('echo "sbatch: error: Invalid generic resource (gres) specification" >&2; exit 1' if refuse
              else 'echo "sbatch: Job 7 to start at 2026-01-01T00:00:00 using 1 processors on nodes n1" >&2')
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\n[ "$1" = "--test-only" ] || exit 3\ncp "$2" {bin_dir}/tested.sh\n'
                                    f'{answer}\n')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    f = tmp_path / "mini.toml"
    f.write_text(STUDY.replace("gpus_per_job = 0", "gpus_per_job = 1"))
    assert main(["study", str(f), "--out", str(tmp_path / "out"), "--executor", "slurm", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "#SBATCH --gpus-per-node=1\n" in (bin_dir / "tested.sh").read_text()
    if refuse:
        assert "sbatch --test-only: REFUSED: sbatch: error: Invalid generic resource" in out
        assert "--gpus-per-job 0" in out
    else:
        assert "sbatch --test-only: accepted (sbatch: Job 7 to start at" in out
    assert not (tmp_path / "out").exists()
