"""``cifarlab seeds RUNS --detect POINTS`` on fabricated pilot runs whose standard deviations are known: the seeds per
arm equal the analytic answer (statsmodels' power solve for equal sds, Welch's power otherwise), the alpha follows
the report's family, and arms without a standard deviation are flagged."""

import math

import pytest
from statsmodels.stats.power import TTestIndPower

from cifarlab import cli
from cifarlab.analysis.stats import welch_power

from tests.analysis.test_findings import IMAGENET, _run


def _rotation_pilot(root, sd_points, seeds=3, offset=0.10):
    """One comparison (rotation init vs random init, full fine-tuning): each arm's accuracies are mean ± sd around
    its centre, so each arm's sample sd is exactly ``sd_points``."""
    rot = _run(root, "rot", "rotation", acc=0.6, start="none")
    spread = [(i - (seeds - 1) / 2) for i in range(seeds)]
    scale = sd_points / 100 / math.sqrt(sum(x * x for x in spread) / (seeds - 1))
    for s, x in enumerate(spread):
        _run(root, f"init-rot-s{s}", "finetune", acc=0.40 + offset + scale * x, start=f"init:{rot}", per_class=20,
             seed=s)
        _run(root, f"init-random-s{s}", "finetune", acc=0.40 + scale * x, start="none", per_class=20, seed=s)


def _seeds(capsys, root, detect) -> tuple[int, str]:
    rc = cli.main(["seeds", str(root), "--detect", str(detect)])
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


def _row(out: str, text: str) -> str:
    (line,) = [r for r in out.splitlines() if text in r]
    return line


@pytest.mark.parametrize("sd, detect", [(2.0, 3.0), (1.0, 1.0), (3.0, 2.0)])
def test_equal_known_sds_give_the_ceiling_of_statsmodels_power_solve(tmp_path, capsys, sd, detect):
    _rotation_pilot(tmp_path, sd)
    rc, out = _seeds(capsys, tmp_path, detect)
    assert rc == 0
    # one comparison in the report: alpha 0.05, and Welch's df equals the pooled df at equal sds and n
    n = TTestIndPower().solve_power(effect_size=detect / sd, nobs1=None, ratio=1.0, alpha=0.05, power=0.8)
    row = _row(out, "rotation init")
    assert row.split()[0] == "rotation" and row.endswith(f"3, 3         {sd:.2f}, {sd:.2f}  {max(3, math.ceil(n))}")
    head = " ".join(out.split())
    assert "alpha 0.05/1 = 0.05:" in head and "pilot estimate" in head and "sample standard deviation" in head


def test_unequal_sds_give_the_smallest_n_with_80_percent_welch_power_at_the_familys_alpha(tmp_path, capsys):
    # three transfer arms of 3 seeds with sds 1, 2 and 4 points: 3 comparisons, so alpha 0.05/3
    for recipe, sd in (("linear", 1.0), ("partial", 2.0), ("finetune", 4.0)):
        for s, x in enumerate((-1, 0, 1)):
            _run(tmp_path, f"{recipe}-s{s}", recipe, acc=0.7 + x * sd / 100, seed=s, start=IMAGENET, per_class=100)
    rc, out = _seeds(capsys, tmp_path, 2.5)
    assert rc == 0 and "alpha 0.05/3 = 0.01667" in " ".join(out.split())
    for a, b, sa, sb in (("the last block", "the linear probe", 2.0, 1.0),
                         ("full fine-tuning", "the linear probe", 4.0, 1.0),
                         ("full fine-tuning", "the last block", 4.0, 2.0)):
        row = _row(out, f"{a}, 100/class vs cnn_small, {b}")
        n = int(row.split()[-1])
        assert row.split()[-3:-1] == [f"{sa:.2f},", f"{sb:.2f}"]
        assert welch_power(2.5, sa, sb, n, n, 0.05 / 3) >= 0.8 > welch_power(2.5, sa, sb, n - 1, n - 1, 0.05 / 3)


def test_an_arm_with_one_seed_is_flagged_without_a_number(tmp_path, capsys):
    for name, lin, control in (("sc", 0.45, False), ("ctl-s0", 0.33, True), ("ctl-s1", 0.35, True)):
        _run(tmp_path, name, "supcon", acc=lin, seed=int(name[-1]) if name[-1].isdigit() else 0,
             summary={"linear_acc": lin, "knn_acc": lin - 0.05,
                      **({"control": "random-init encoder"} if control else {})})
    rc, out = _seeds(capsys, tmp_path, 2.0)
    row = _row(out, "(linear_acc)")
    assert rc == 0 and "1, 2" in row and "–, 1.41" in row
    assert row.endswith("no sd: an arm has fewer than 2 pilot seeds (run at least 2 to estimate it)")


def test_bad_input_is_one_line_naming_the_value(tmp_path, capsys):
    rc, out = _seeds(capsys, tmp_path, 2.0)
    assert rc == 2 and out.strip() == f"error: no run directories (with summary.json) under {tmp_path}"
    with pytest.raises(SystemExit) as exc:
        cli.main(["seeds", str(tmp_path), "--detect", "0"])
    assert exc.value.code == 2 and "--detect: '0': expected a positive number of points" in capsys.readouterr().err
