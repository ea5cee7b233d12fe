"""The command line: `python -m cifarlab`, and a normal run that prints no warning or traceback."""

import subprocess
import sys
import warnings

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

    keys = json.loads((tmp_path / "sx" / "config.json").read_text())["config"]
    assert (keys["preset"], keys["ema"], keys["epochs"]) == ("fast", 0.99, 2)  # the flag's preset; --epochs wins
