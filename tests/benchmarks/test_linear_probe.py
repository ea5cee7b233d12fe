"""benchmarks/linear_probe.py: the plain script's figures are read off its own output, the cifarlab side runs the
user's command and its figures come from that run's summary.json; the ratio and the target follow from them."""

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import load_benchmark


def test_parse_anchor_reads_the_last_result_line_and_refuses_output_without_one():
    lp = load_benchmark("linear_probe")
    out = ("warming up\nanchor lite0+logreg 500/class 128px: test_acc=79.25% decode_s=15 feature_s=140 fit_s=11.2 "
           "total_s=167\n")
    assert lp.parse_anchor(out) == (79.25, 167.0)
    with pytest.raises(ValueError, match="printed no 'test_acc"):
        lp.parse_anchor("Traceback ...")


def test_compare_meets_the_target_only_when_faster_enough_and_not_less_accurate():
    lp = load_benchmark("linear_probe")
    script = {"wall_s": 100.0, "test_acc": 80.0}
    assert lp.compare(script, {"wall_s": 80.0, "test_acc": 80.0}) == {"ratio": 0.8, "meets_target": True}
    assert not lp.compare(script, {"wall_s": 81.0, "test_acc": 90.0})["meets_target"]
    assert not lp.compare(script, {"wall_s": 50.0, "test_acc": 79.9})["meets_target"]


def test_both_sides_run_and_the_cifarlab_figures_come_from_its_run(tmp_path, monkeypatch, capsys):
    """A stand-in plain script (subprocess) and the real cifarlab command on a tiny synthetic dataset (run in this
    process, so the test does not pay a second interpreter's imports)."""
    from cifarlab import cli

    lp = load_benchmark("linear_probe")
    anchor = tmp_path / "anchor.py"
    anchor.write_text("import sys\nprint(f'anchor: test_acc=12.50% decode_s=0 fit_s=0.0 total_s=3 ({sys.argv[1]})')\n")
    real_timed, commands, summaries = lp.timed, [], []

    def timed(cmd, env=None):
        commands.append(cmd)
        if cmd[1:3] != ["-m", "cifarlab.cli"]:
            return real_timed(cmd, env)
        assert cli.main(cmd[3:]) == 0
        summaries.append(json.loads((Path(cmd[cmd.index("--out") + 1]) / "probe" / "summary.json").read_text()))
        return 4.0, ""  # a fixed wall time: the ratio below is checked exactly

    monkeypatch.setattr(lp, "timed", timed)
    result = lp.main(["--dataset", "synthetic:3:30:15", "--anchor", str(anchor), "--model", "cnn_small",
                      "--resolution", "0", "--per-class", "8", "--set", "weights=none", "--set", "epochs=1",
                      "--set", "image_size=16", "--set", "embed_samples=0"])
    assert commands[0] == [sys.executable, str(anchor), "synthetic:3:30:15"]
    assert commands[1][1:9] == ["-m", "cifarlab.cli", "train", "--recipe", "linear", "--model", "cnn_small",
                                "--resolution"]
    assert result["script"] == {"wall_s": pytest.approx(result["script"]["wall_s"]), "test_acc": 12.5,
                                "own_total_s": 3.0}
    assert result["script"]["wall_s"] > 0
    assert result["ratio"] == pytest.approx(4.0 / result["script"]["wall_s"])
    printed = capsys.readouterr().out
    assert "wall-time ratio cifarlab/script" in printed and "12.50%" in printed
    assert summaries[0]["recipe"] == "linear" and summaries[0]["status"] == "complete"
    assert result["cifarlab"]["test_acc"] == pytest.approx(100 * summaries[0]["test_acc"])
    assert f"{result['cifarlab']['test_acc']:.2f}%" in printed
    assert json.dumps(result)  # plain data
