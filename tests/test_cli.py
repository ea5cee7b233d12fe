"""The command line: `python -m cifarlab`, and a normal run that prints no warning or traceback."""

import shlex
import subprocess
import sys
import warnings

import pytest

from cifarlab import cli
from cifarlab.cli import main


def test_python_dash_m_cifarlab_works_like_the_command():
    out = subprocess.run([sys.executable, "-m", "cifarlab", "recipes"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "scratch" in out.stdout and "supcon" in out.stdout


def test_a_normal_run_and_its_report_print_no_warning(tmp_path, capsys):
    """A contrastive run (its curves have no accuracy panel to label) and a report over it: no Python warning is
    raised and nothing that looks like a warning or a traceback reaches the terminal."""
    common = ["--dataset", "synthetic:4:20:10", "--model", "cnn_small", "--image-size", "16", "--epochs", "2",
              "--out", str(tmp_path), "--progress", "off"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["train", "--recipe", "supcon", *common, "--set", "linear_epochs=2", "--name", "sc"]) == 0
        assert main(["train", "--recipe", "scratch", *common, "--preset", "fast", "--name", "sx"]) == 0
        assert main(["report", str(tmp_path), "-o", str(tmp_path / "r.html")]) == 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert not [str(w.message) for w in caught]
    assert "warning" not in text.lower() and "Traceback" not in text
    assert out.out.count("complete") == 2  # one closing line per run
    import json

    sx = json.loads((tmp_path / "sx" / "summary.json").read_text())
    assert f"sx: complete test_acc {100 * sx['test_acc']:.2f}% (train {sx['train_time_s']:.1f}s)" in out.out
    keys = json.loads((tmp_path / "sx" / "config.json").read_text())["config"]
    assert (keys["preset"], keys["ema"], keys["epochs"]) == ("fast", 0.99, 2)  # the flag's preset; --epochs wins


def test_a_closed_pipe_does_not_kill_the_run(tmp_path):
    """`cifarlab train ... 2>&1 | head -c 1`: the reader goes away at once; the run still trains to the end and
    completes, its output to the closed pipe dropped."""
    import json

    cmd = [sys.executable, "-m", "cifarlab.cli", "train", "--recipe", "scratch", "--dataset", "synthetic:4:20:10",
           "--model", "cnn_small", "--image-size", "16", "--epochs", "3", "--out", str(tmp_path), "--name", "piped",
           "--progress", "on"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    proc.stdout.read(1)
    proc.stdout.close()  # the pipe's reader is gone: every later write hits a closed pipe
    assert proc.wait(timeout=300) == 0
    s = json.loads((tmp_path / "piped" / "summary.json").read_text())
    assert s["status"] == "complete" and s["epochs"] == 3


def test_a_mistyped_key_gets_the_closest_keys_first():
    from cifarlab import api
    from cifarlab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"unknown config key 'batchsize'; did you mean: batch_size"):
        api.make_config("scratch", sets=["batchsize=64"])
    with pytest.raises(ConfigError, match=r"'head_init' is a key of recipe finetune, linear, partial|head_init is a "
                                          r"key of recipe finetune, linear, partial"):
        api.make_config("scratch", overrides={"head_init": "random"})


def test_every_train_flag_has_the_help_text_of_its_config_field():
    from cifarlab import api, config

    text = subprocess.run([sys.executable, "-m", "cifarlab", "train", "--help"], capture_output=True, text=True,
                          timeout=120).stdout
    flat = " ".join(text.split())
    import dataclasses

    helps: dict[str, list[str]] = {}  # a key's help per recipe class (a recipe may restate it for itself)
    for cls in {api.config_class(r) for r in api.recipe_names()}:
        for f in dataclasses.fields(cls):
            if f.name != "recipe":
                helps.setdefault(f.name, []).append(" ".join(f.metadata["help"].split()[:4]))
    for key, firsts in helps.items():
        assert f"--{key.replace('_', '-')}" in text, key
        assert any(words in flat for words in firsts), (key, firsts)
    assert config.allowed(config.RunConfig.__dataclass_fields__["optimizer"].metadata) in flat


def test_equivalence_margin_reaches_the_report_and_the_study(tmp_path, monkeypatch):
    """--equivalence-margin on `report` is recorded in findings.json; on `study` it is handed to the study's
    report; a margin that is not a positive number is refused by the parser with one line."""
    import json

    import pytest

    from cifarlab import api

    from tests.analysis.test_findings import _family_set

    _family_set(tmp_path / "runs")
    assert main(["report", str(tmp_path / "runs"), "-o", str(tmp_path / "r.md"), "--format", "md", "--embedding",
                 "none", "--progress", "off", "--equivalence-margin", "1.5"]) == 0
    entries = json.loads((tmp_path / "r.findings.json").read_text())
    assert entries and all(e["equivalence_margin_points"] == 1.5 for e in entries)
    seen = {}
    monkeypatch.setattr(api, "study", lambda *a, **kw: (seen.update(kw), ([], None))[1])
    monkeypatch.setattr(cli, "_announce_cost", lambda args: True)  # no study file: only the flag's path is tested
    assert main(["study", "s.toml", "--out", str(tmp_path / "o"), "--equivalence-margin", "0.75"]) == 0
    assert seen["equivalence_margin"] == 0.75
    with pytest.raises(SystemExit):
        main(["report", str(tmp_path / "runs"), "--equivalence-margin", "-2"])
@pytest.mark.parametrize("argv, line", [
    (["train", "--epcohs", "3"], "error: unknown option --epcohs; did you mean --epochs?"),
    (["train", "--per_class", "3"], "error: unknown option --per_class; did you mean --per-class?"),
    (["train", "--learning-rate", "0.1"], "error: unknown option --learning-rate; did you mean --lr?"),
    (["train", "--epcohs=3"], "error: unknown option --epcohs; did you mean --epochs?"),
    (["train", "--epochs", "2.5"], "error: --epochs: expected an integer, got '2.5'"),
    (["train", "--lr", "fast"], "error: --lr: expected a number, got 'fast'"),
    (["study", "s.toml", "--out", "o", "--dry-runn"], "error: unknown option --dry-runn; did you mean --dry-run?"),
    (["trian"], "error: unknown command 'trian'; did you mean train? (choose from: train, keys, report, study, "
                "bench, seeds, models, recipes)"),
])
def test_a_mistyped_flag_gets_one_line_that_says_the_fix(argv, line, capsys):
    """A mistyped flag or a value of the wrong type: one line naming the fix, exit code 2, no usage dump."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err == line + "\n"  # the whole output: no usage, no traceback


def test_the_installed_command_prints_the_same_one_line():
    out = subprocess.run([sys.executable, "-m", "cifarlab", "train", "--epcohs", "3"], capture_output=True,
                         text=True, timeout=120)
    assert (out.returncode, out.stdout, out.stderr) == (2, "", "error: unknown option --epcohs; did you mean "
                                                                "--epochs?\n")


def test_a_key_named_as_elsewhere_suggests_ours_without_listing_every_key(capsys):
    assert main(["train", "--set", "learning_rate=0.01"]) == 2
    err = capsys.readouterr().err
    assert err == ("error: unknown config key 'learning_rate'; did you mean: lr? (every key of scratch: cifarlab "
                   "keys --recipe scratch)\n")


def test_ctrl_c_leaves_an_interrupted_run_and_prints_the_command_that_resumes_it(tmp_path):
    """SIGINT (Ctrl-C) a training process: it exits 130 with status 'interrupted' (not 'failed') and prints the
    exact --resume command line; running that line finishes the run from its checkpoint."""
    import json
    import os
    import signal

    args = ["train", "--dataset", "synthetic:4:20:10", "--model", "cnn_small", "--image-size", "16", "--epochs", "4",
            "--batch-size", "16", "--out", str(tmp_path), "--name", "r", "--progress", "off", "--set",
            "num_threads=1", "--set", "embed_samples=10", "--overwrite"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "cifarlab", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env,
                            # Python raises KeyboardInterrupt only where SIGINT is not ignored (a background shell)
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in proc.stdout:
        if line.startswith("epoch   2/4"):
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.stdout.read()
    assert proc.wait(timeout=120) == 130, rest
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["status"] == "interrupted" and "--resume" in summary["error"]
    lines = rest.splitlines()
    i = lines.index(f"interrupted: {tmp_path / 'r'} (status interrupted); continue it with:")
    resume = lines[i + 1].strip()
    assert "Traceback" not in rest
    # the exact command: the same arguments, --overwrite (which would start over) dropped, --resume added
    expected = [sys.executable, "-m", "cifarlab", *args[:-1], "--resume"]
    assert shlex.split(resume) == expected
    done = subprocess.run(shlex.split(resume), capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stderr
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["epochs"] == 4


def test_an_interrupted_study_says_the_command_that_resumes_it(monkeypatch, capsys):
    from cifarlab import api

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "study", interrupted)
    monkeypatch.setattr(cli, "_announce_cost", lambda args: True)  # no study file: only the interruption is tested
    assert main(["study", "my study.toml", "--out", "o"]) == 130
    err = capsys.readouterr().err
    python = shlex.quote(sys.executable)
    assert err == f"study interrupted; resume it with the same command: {python} -m cifarlab study 'my study.toml' " \
                  "--out o\n"
