"""Time to accuracy of the scratch recipe, reported as airbench reports it: test accuracy and training seconds as a
mean (± sample standard deviation) over seeds, every seed trained in this one process after an untimed warm-up
run (airbench's "run 0"), so no seed pays the imports, the CUDA start or the first cuDNN plans.

Training seconds are the run's ``train_time_s``: optimizer steps only, without the per-epoch validation and the
final test pass (airbench's timer also stops for evaluation). TTA accuracy is its own column, never mixed in.

Usage (issue 12 item 5; `benchmarks/gpu_check.sh part2` runs it on real CIFAR-10):
    python benchmarks/time_to_accuracy.py --dataset folder:/tmp/c10 --out /tmp/cl-runs/time-to-acc \
        --seeds 0,1,2 --set preset=fast [--set batch_size=256 ...] [--target 0.94]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from cifarlab import api


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--data-root", default="")
    ap.add_argument("--out", required=True, help="folder for the run directories and time_to_accuracy.json")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds, each one timed run")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="scratch config key (repeatable)")
    ap.add_argument("--warmup-epochs", type=int, default=1, help="epochs of the untimed warm-up run; 0 = none")
    ap.add_argument("--target", type=float, default=0.94, help="accuracy the report counts seeds against")
    ap.add_argument("--label", default="", help="name stem of the run directories (default: from --set)")
    args = ap.parse_args(argv)

    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    label = args.label or "-".join(s.replace("=", "") for s in args.set) or "default"
    base = {"dataset": args.dataset, "data_root": args.data_root, "out": args.out, "progress": "off",
            "overwrite": True}
    if args.warmup_epochs:  # airbench's run 0: the process's first training, untimed
        api.train(api.make_config("scratch", overrides={**base, "name": f"t2a-{label}-warmup", "seed": 10_000},
                                  sets=[*args.set, f"epochs={args.warmup_epochs}"]))
    rows = []
    for seed in seeds:
        cfg = api.make_config("scratch", overrides={**base, "name": f"t2a-{label}-s{seed}", "seed": seed},
                              sets=args.set)
        s = api.train(cfg).summary
        rows.append({"seed": seed, "status": s.get("status"), "test_acc": s.get("test_acc"),
                     "test_acc_tta": s.get("test_acc_tta"), "train_time_s": s.get("train_time_s"),
                     "epochs": cfg.epochs, "batch_size": s.get("batch_size", cfg.batch_size)})
        print(f"seed {seed}: {s.get('status')} test_acc={s.get('test_acc')} tta={s.get('test_acc_tta')} "
              f"train_time_s={s.get('train_time_s')}", flush=True)

    done = [r for r in rows if r["status"] == "complete" and r["test_acc"] is not None]
    result: dict = {"label": label, "sets": args.set, "target": args.target, "runs": rows, "seeds_complete": len(done)}
    if done:
        acc, acc_sd = mean_sd([r["test_acc"] for r in done])
        sec, sec_sd = mean_sd([r["train_time_s"] for r in done])
        result.update(test_acc_mean=acc, test_acc_sd=acc_sd, train_time_s_mean=sec, train_time_s_sd=sec_sd,
                      seeds_at_target=sum(r["test_acc"] >= args.target for r in done))
        line = (f"time-to-accuracy {label}: {100 * acc:.2f} ± {100 * acc_sd:.2f}% test accuracy in "
                f"{sec:.2f} ± {sec_sd:.2f} s of training ({len(done)} seed{'s' * (len(done) > 1)}, "
                f"{done[0]['epochs']} epoch{'s' * (done[0]['epochs'] > 1)}, batch "
                f"{done[0]['batch_size']}; {result['seeds_at_target']} of {len(done)} at >= {100 * args.target:g}%)")
        tta = [r["test_acc_tta"] for r in done if r["test_acc_tta"] is not None]
        if len(tta) == len(done):
            t, t_sd = mean_sd(tta)
            result.update(test_acc_tta_mean=t, test_acc_tta_sd=t_sd)
            line += f"; with TTA {100 * t:.2f} ± {100 * t_sd:.2f}%"
        print(line)
    else:
        print(f"time-to-accuracy {label}: no seed completed")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"time_to_accuracy-{label}.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0 if len(done) == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
