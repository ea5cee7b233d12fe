"""The Slurm executor: each run of a study is one Slurm job, submitted with submitit (``pip install
"cifarlab[slurm]"``).

Design choices, and why:

- **Dependencies are Slurm ``afterok`` dependencies**, not waited for by the submitting process. The whole study is
  in the queue at once, so the scheduler sees every job, a fine-tune is eligible the moment its rotation run ends
  (no second trip through the queue) and the jobs go on if the submitting shell on the login node is closed. With
  ``kill-on-invalid-dep=yes`` Slurm cancels the jobs whose dependency failed; they are listed as skipped. Executors
  that have no dependencies (submitit's local executor, used by the tests) get the same study by the submitter
  waiting for a run's dependencies before submitting it.
- **A job runs its run in submitit's own process** (:class:`RunJob`; one interpreter start per job), or, when the
  job has G > 1 GPUs, ``cifarlab train`` under ``torchrun --standalone --nproc-per-node=G`` as a child (one node,
  one Slurm task; torchrun sets the ranks the engine reads, so a multi-GPU run is the same DDP run as on a
  workstation, and ``tests/engine``'s DDP equivalence covers it).
- **Preemption and time limits resume exactly through cifarlab's own resume.** Runs checkpoint every epoch
  (atomically) and ``--resume`` continues bit-exact from the last checkpoint; a job decides ``resume`` when it starts
  from the run directory's state, so any restart continues the run. Slurm sends ``USR2`` ``signal_delay_s`` before
  the time limit: submitit calls :meth:`RunJob.checkpoint` (the run's last epoch checkpoint is on disk already; the
  partial epoch is redone) and requeues the job. On preemption (or ``scontrol requeue``) Slurm sends SIGTERM, the run
  stops at once (left ``running``; submitit alone would ignore the signal until the kill) and Slurm requeues the
  job itself. Either way the requeued job resumes the run from its last checkpoint (``tests/studies/test_slurm.py``
  preempts a job mid-training and compares the final weights with an uninterrupted run's).
- **The submitter follows the jobs** (``squeue``/``scontrol``, no accounting database needed), records each run's job
  id and state in ``study.json``, prints each run's headline result as its job ends and builds the report when the
  last one has ended. With ``wait=False`` it returns after submitting; ``cifarlab report OUT`` builds the report
  later, and submitting the study again follows the jobs still queued instead of submitting them twice.
"""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cifarlab.engine.rundir import read_json
from cifarlab.errors import CifarlabError, ConfigError
from cifarlab.studies.local import Reporter, dependencies, headline, record_run, run_command, status
from cifarlab.studies.plan import PlannedRun

LIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "COMPLETING",
               "SUSPENDED", "RESIZING", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD", "PREEMPTED", "UNKNOWN"}
KILLED_WAIT_S = 300  # a job whose run was killed by a signal waits this long for Slurm to requeue or end it


@dataclass
class SlurmSettings:
    """What each run's job asks Slurm for (the study file's ``[slurm]`` table; CLI flags override it)."""

    partition: str = ""  # '' = the cluster's default partition
    time: str = "60"  # time limit in Slurm's formats: minutes, M:S, H:M:S, D-H, D-H:M, D-H:M:S
    gpus_per_job: int = 1  # > 1: the run is one torchrun DDP run over that many GPUs of one node
    cpus_per_job: int = 8
    mem: str = ""  # e.g. '32G'; '' = the partition's default
    account: str = ""
    qos: str = ""
    signal_delay_s: int = 120  # USR2 this long before the time limit: the job requeues itself and resumes
    sbatch: dict[str, str] = field(default_factory=dict)  # any other sbatch option, e.g. {constraint = "a100"}
    setup: list[str] = field(default_factory=list)  # shell lines run before the job's run, e.g. 'module load cuda'

    def minutes(self) -> int:
        """The time limit in whole minutes (what submitit takes), from any of Slurm's formats: M, M:S, H:M:S, D-H,
        D-H:M, D-H:M:S (seconds round up)."""
        m = re.fullmatch(r"(?:(\d+)-)?(\d+(?::\d+){0,2})", str(self.time).strip())
        if not m:
            raise ConfigError(f"slurm time={self.time!r}: use Slurm's formats: minutes, M:S, H:M:S, D-H, D-H:M or "
                              "D-H:M:S")
        parts = [int(x) for x in m.group(2).split(":")]
        if m.group(1) is not None:  # D-H[:M[:S]]
            hours, mins, secs = (parts + [0, 0])[:3]
        elif len(parts) == 3:  # H:M:S
            hours, mins, secs = parts
        else:  # M or M:S
            hours, mins, secs = 0, parts[0], parts[1] if len(parts) == 2 else 0
        return int(m.group(1) or 0) * 1440 + hours * 60 + mins + (1 if secs else 0)

    def parameters(self) -> dict[str, Any]:
        """submitit ``SlurmExecutor`` parameters."""
        params: dict[str, Any] = {"time": self.minutes(), "nodes": 1, "ntasks_per_node": 1,
                                  "cpus_per_task": self.cpus_per_job, "signal_delay_s": self.signal_delay_s,
                                  "additional_parameters": {"requeue": True, "kill-on-invalid-dep": "yes",
                                                            **self.sbatch}}
        if self.gpus_per_job:
            params["gpus_per_node"] = self.gpus_per_job
        for key in ("partition", "mem", "account", "qos"):
            if getattr(self, key):
                params[key] = getattr(self, key)
        if self.setup:
            params["setup"] = list(self.setup)
        return params

    def sbatch_lines(self) -> list[str]:
        """The job's options as ``#SBATCH`` lines (what ``--dry-run`` shows)."""
        p = self.parameters()
        opts: dict[str, Any] = {"time": p["time"], "nodes": 1, "ntasks-per-node": 1,
                                "cpus-per-task": p["cpus_per_task"], "signal": f"USR2@{self.signal_delay_s}"}
        opts.update({k.replace("_", "-"): p[k] for k in ("gpus_per_node", "partition", "mem", "account", "qos")
                     if k in p})
        opts.update(p["additional_parameters"])
        return [f"#SBATCH --{k}" if v is True else f"#SBATCH --{k}={shlex.quote(str(v))}" for k, v in opts.items()]


def settings(table: dict[str, Any] | None, where: str, overrides: dict[str, Any] | None = None) -> SlurmSettings:
    """:class:`SlurmSettings` from a ``[slurm]`` table (``where`` names it in errors), then ``overrides``."""
    allowed = {f.name: f for f in fields(SlurmSettings)}
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    values = {**(table or {}), **given}
    if isinstance((table or {}).get("sbatch"), dict) and isinstance(given.get("sbatch"), dict):
        values["sbatch"] = {**table["sbatch"], **given["sbatch"]}  # --sbatch adds to the file's options
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} in [slurm]; allowed: {', '.join(allowed)}")
    kinds = {"partition": str, "time": (str, int), "gpus_per_job": int, "cpus_per_job": int, "mem": str,
             "account": str, "qos": str, "signal_delay_s": int, "sbatch": dict, "setup": list}
    for key, value in values.items():
        if not isinstance(value, kinds[key]) or isinstance(value, bool):
            raise ConfigError(f"{where}: [slurm] {key}={value!r} has the wrong type; expected "
                              f"{getattr(kinds[key], '__name__', 'str or int')}")
        if key in ("gpus_per_job", "cpus_per_job", "signal_delay_s") and value < (0 if key != "cpus_per_job" else 1):
            raise ConfigError(f"{where}: [slurm] {key}={value} must be {'1' if key == 'cpus_per_job' else '0'} "
                              "or more")
    out = SlurmSettings(**{**values, "time": str(values.get("time", SlurmSettings.time))})
    out.minutes()  # a bad time limit fails here, before anything is submitted
    return out


class RunJob:
    """What one Slurm job runs: ``cifarlab train`` for one planned run, resuming when its directory has a run.

    Checkpointable as submitit understands it (it has :meth:`checkpoint`): on the time-limit signal submitit calls
    it and requeues the job with the returned submission, which resumes the run."""

    def __init__(self, name: str, recipe: str, keys: dict[str, Any], out: str, nproc: int) -> None:
        self.name, self.recipe, self.keys, self.out, self.nproc = name, recipe, keys, out, nproc

    def __call__(self) -> dict[str, Any]:
        out = Path(self.out)
        resume = status(out, self.name) is not None
        if self.nproc > 1:
            proc = subprocess.run(run_command(PlannedRun(self.name, self.recipe, self.keys, None), resume,
                                              self.nproc), check=False)
            if proc.returncode < 0:
                # killed by a signal: Slurm is preempting or requeueing this job (submitit's handler here takes the
                # time-limit signal); ending now would report a failure for a run that is about to resume
                print(f"cifarlab: run {self.name} was stopped by signal {-proc.returncode}; waiting for Slurm to "
                      "requeue or end this job", flush=True)
                time.sleep(KILLED_WAIT_S)
        else:  # in this process: one interpreter start per job (submitit's own already imported torch)
            from cifarlab.config import make_config
            from cifarlab.recipes.execute import execute

            before = signal.signal(signal.SIGTERM, _stop)  # submitit ignores SIGTERM; a preempted run stops now
            try:
                execute(make_config(self.recipe, overrides={**self.keys, "resume": resume}))
            except CifarlabError:
                pass  # the run's summary holds its status and error, raised below
            finally:
                signal.signal(signal.SIGTERM, before)
        summary = read_json(out / self.name / "summary.json")
        if summary.get("status") != "complete":
            raise CifarlabError(f"run {self.name}: {headline(summary)}: {summary.get('error') or 'see its log'}")
        return summary

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """The run checkpoints every epoch by itself; the requeued job runs this again and resumes from it."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def _stop(signum: int, frame: Any) -> None:
    """SIGTERM (preemption, requeue, scancel): leave the run ``running`` with its last epoch checkpoint, so the
    requeued job resumes it; SystemExit passes the run's own error handling and submitit's result file."""
    print(f"cifarlab: signal {signum} (preempted, requeued or cancelled): stopping; a requeued job resumes from the "
          "last checkpoint", flush=True)
    raise SystemExit(128 + signum)


def make_executor(out: Path, slurm: SlurmSettings) -> Any:
    """A submitit ``SlurmExecutor`` writing its job files under ``out/.slurm``."""
    try:
        import submitit
    except ImportError:
        raise CifarlabError('--executor slurm needs submitit: pip install "cifarlab[slurm]"') from None
    executor = submitit.SlurmExecutor(folder=out / ".slurm" / "%j")
    executor.update_parameters(**slurm.parameters())
    return executor


def slurm_state(job_id: str) -> str:
    """Slurm's state of a job (squeue while it is queued or running, then scontrol while Slurm keeps it), ``ENDED``
    once Slurm no longer knows it, ``UNKNOWN`` while the controller does not answer."""
    q = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, check=False)
    if q.returncode == 0 and q.stdout.strip():
        return q.stdout.split()[0]
    if q.returncode != 0 and "invalid job id" not in q.stderr.lower():
        return "UNKNOWN"  # the controller did not answer (restarting, busy): counted as live, asked again
    s = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, check=False)
    m = re.search(r"JobState=(\S+)", s.stdout)
    return m.group(1) if m else "ENDED"


def test_only(slurm: SlurmSettings) -> str:
    """Whether sbatch would accept a job with these options (``sbatch --test-only``: nothing is submitted). Every run's
    job has the same options (its dependency aside), so one answer holds for all of them."""
    import shutil
    import tempfile

    if not shutil.which("sbatch"):
        return "sbatch --test-only: not run (no sbatch on this machine)"
    with tempfile.NamedTemporaryFile("w", suffix=".sh") as script:
        script.write("\n".join(["#!/bin/sh", *slurm.sbatch_lines(), "true", ""]))
        script.flush()
        done = subprocess.run(["sbatch", "--test-only", script.name], capture_output=True, text=True)
    said = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    if done.returncode == 0:
        return "sbatch --test-only: accepted" + (f" ({said[-1]})" if said else "")
    reason = next((line for line in said if "error" in line.lower()), said[-1] if said else "no reason given")
    return f"sbatch --test-only: REFUSED: {reason}; {refusal_advice(reason, slurm)}"


def plan_lines(planned: list[PlannedRun], out: Path, slurm: SlurmSettings) -> list[str]:
    """What ``--dry-run`` adds for Slurm: the job options, then per run whether it is submitted and after what."""
    deps = dependencies(planned)
    jobs = read_json(out / "study.json").get("runs", {})
    lines = ["slurm job options (each run):", *(f"  {line}" for line in slurm.sbatch_lines()), test_only(slurm)]
    for run in planned:
        if status(out, run.name) == "complete":
            continue
        after = [d for d in deps[run.name] if status(out, d) != "complete"]
        queued = jobs.get(run.name, {}).get("job_id")
        lines.append(f"  submit {run.name}" + (f" (afterok: {', '.join(after)})" if after else "")
                     + (f" unless job {queued} is still queued" if queued else ""))
    return lines


def run_slurm(planned: list[PlannedRun], out: Path, slurm: SlurmSettings, say: Reporter, executor: Any = None,
              wait: bool = True, poll_s: float = 2.0) -> list[str]:
    """Submit every run not complete as a job, follow the jobs to their end; returns the runs that did not complete.

    Args:
        executor: a submitit executor (default :func:`make_executor`); a non-Slurm one (the tests' local executor)
            gets dependencies by the submitter waiting, as it has no ``afterok``.
        wait: follow the jobs until they end (False: return after submitting what can be submitted now).
    """
    import submitit

    executor = executor or make_executor(out, slurm)
    on_slurm = isinstance(executor, submitit.SlurmExecutor)
    nproc = max(1, slurm.gpus_per_job)
    deps = dependencies(planned)
    earlier = read_json(out / "study.json").get("runs", {})
    done = {p.name for p in planned if status(out, p.name) == "complete"}
    for name in done:
        record_run(out, name, state="complete")
    pending = [p for p in planned if p.name not in done]
    jobs: dict[str, Any] = {}  # run name -> submitit job, or a job id (string) of an earlier submission
    failed: list[str] = []
    while pending or jobs:
        for run in list(pending):
            if deps[run.name] & set(failed):
                pending.remove(run)
                failed.append(run.name)
                record_run(out, run.name, state="skipped")
                say(f"run {run.name} skipped: it starts from a run that did not complete")
                continue
            old = earlier.get(run.name, {}).get("job_id")
            if on_slurm and old and slurm_state(old) in LIVE_STATES:  # submitted before and still queued/running
                pending.remove(run)
                jobs[run.name] = old
                say(f"{run.name}: job {old} from an earlier submission is still {slurm_state(old)}; following it")
                continue
            waiting = [d for d in deps[run.name] if d not in done]
            if waiting and not (on_slurm and all(d in jobs for d in waiting)):
                continue  # its dependencies are not complete (or not submitted yet)
            after = [_job_id(jobs[d]) for d in waiting]
            if on_slurm:
                executor.update_parameters(dependency=f"afterok:{':'.join(after)}" if after else None)
            job = _submit(executor, RunJob(run.name, run.recipe, run.keys, str(out), nproc), out, slurm)
            pending.remove(run)
            jobs[run.name] = job
            record_run(out, run.name, job_id=str(job.job_id), state="submitted",
                       **({"after": after} if after else {}))
            say(f"submitted {run.name} as job {job.job_id}" + (f" (afterok: {', '.join(after)})" if after else ""))
        if on_slurm:
            executor.update_parameters(dependency=None)
        if not wait:
            break
        for name, job in list(jobs.items()):
            if on_slurm:
                state = slurm_state(_job_id(job))
                live = state in LIVE_STATES
            else:  # submitit's local or debug executors (done() runs a debug job)
                live = not job.done()
                state = job.state
            if live:
                if earlier.get(name, {}).get("job_state") != state:
                    record_run(out, name, job_state=state)
                    earlier.setdefault(name, {})["job_state"] = state
                continue
            del jobs[name]
            record_run(out, name, job_state=state)
            if say.ended(out, name, f" (job {_job_id(job)}, {state})") == "complete":
                done.add(name)
            else:
                failed.append(name)
        if pending or jobs:
            time.sleep(poll_s)
    return failed


def _submit(executor: Any, job: RunJob, out: Path, slurm: SlurmSettings) -> Any:
    """``executor.submit(job)``; a job sbatch refuses is recorded in study.json (the runs submitted before it stay
    recorded as submitted) and ends the submission with one line: sbatch's reason and the setting to change."""
    import contextlib
    import io

    from submitit.core.utils import FailedJobError

    said = io.StringIO()  # submitit also prints sbatch's stderr itself: it goes into the one line instead
    try:
        with contextlib.redirect_stderr(said):
            return executor.submit(job)
    except FailedJobError as exc:
        lines = [line.strip() for line in f"{exc}\n{said.getvalue()}".splitlines() if line.strip()]
        reason = next((line for line in lines if "error" in line.lower()), lines[-1] if lines else "no reason given")
        record_run(out, job.name, state="refused", error=reason)
        raise CifarlabError(f"sbatch refused job {job.name}: {reason}; {refusal_advice(reason, slurm)}") from None


def refusal_advice(reason: str, slurm: SlurmSettings) -> str:
    """The setting to change for sbatch's ``reason`` (its ``sbatch: error:`` line)."""
    low = reason.lower()
    if "gres" in low or "gpu" in low:
        return (f"this job asks for {slurm.gpus_per_job} GPU(s): use --gpus-per-job 0 on a partition without GPUs, "
                "or --partition for one with them")
    if "account" in low or "qos" in low:
        return "check --account and --qos (sacctmgr show assoc user=$USER)"
    if "partition" in low:
        return "choose a partition that exists and you may use: --partition (sinfo lists them)"
    if "time limit" in low:
        return f"lower --time (now {slurm.time}) to the partition's limit (sinfo -o '%P %l')"
    if "memory" in low or "mem" in low:
        return "lower --mem to what the partition's nodes have (sinfo -o '%P %m')"
    if "node configuration" in low or "cpu" in low:
        return (f"this job asks for {slurm.cpus_per_job} CPUs and {slurm.gpus_per_job} GPU(s): lower --cpus-per-job "
                "(and --gpus-per-job, --mem) to what one node of the partition has (sinfo -o '%P %c %G %m')")
    return "check the [slurm] settings (--partition, --time, --gpus-per-job, --cpus-per-job, --mem)"


def _job_id(job: Any) -> str:
    return job if isinstance(job, str) else str(job.job_id)

