"""Command line: parses, resolves the config, calls the Python API. Every action is a function in ``cifarlab.api``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cifarlab import api
from cifarlab.errors import CifarlabError

# flags shared by the recipes -> config keys (a flag a recipe does not know is rejected by the config layer)
RUN_FLAGS = {
    "model": str, "dataset": str, "data_root": str, "epochs": int, "batch_size": int, "lr": float, "seed": int,
    "device": str, "out": str, "name": str, "per_class": int, "train_fraction": float, "val_fraction": float,
    "weights": str, "init": str, "resolution": int, "augment": str, "image_size": int, "progress": str,
}
BOOL_FLAGS = ("resume", "overwrite", "compile", "deterministic")


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", help="regime to run: " + ", ".join(api.recipe_names()))
    p.add_argument("--config", help="TOML file of config keys")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config key")
    for key, typ in RUN_FLAGS.items():
        p.add_argument("--" + key.replace("_", "-"), dest=key, type=typ, default=None)
    for key in BOOL_FLAGS:
        p.add_argument("--" + key, dest=key, action="store_const", const=True, default=None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cifarlab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="run one regime into a run directory")
    _add_run_flags(train)
    keys = sub.add_parser("keys", help="list the config keys of a recipe with defaults and allowed values")
    keys.add_argument("--recipe", default="scratch")
    rep = sub.add_parser("report", help="write a report of the run directories under RUNS_DIR")
    rep.add_argument("runs_dir")
    rep.add_argument("-o", "--output", default=None, help="output file (default RUNS_DIR/report.html or .md)")
    rep.add_argument("--format", choices=("html", "md"), default="html")
    rep.add_argument("--embedding", choices=("tsne", "umap", "none"), default="tsne",
                     help="2-D projection of test embeddings (umap needs umap-learn)")
    st = sub.add_parser("study", help="run a study file (TOML), skipping complete runs, then write the report")
    st.add_argument("study_file")
    st.add_argument("--out", required=True, help="folder for the study's run directories and report")
    st.add_argument("--no-report", action="store_true")
    st.add_argument("--dry-run", action="store_true", help="check the file and list its runs (with their status in "
                                                           "OUT) without running anything")
    st.add_argument("--gpus", default=None, help="comma-separated CUDA devices (or 'cpu' slots) to run independent "
                                                 "runs concurrently, one per device, e.g. 0,1,2,3")
    b = sub.add_parser("bench", help="hot-loop throughput vs the notebook pipeline, TFLOP/s and MFU (CUDA)")
    b.add_argument("--dataset", default=None, help="default: $CIFARLAB_DATASET or cifar10")
    b.add_argument("--data-root", default=None)
    b.add_argument("--device", default="auto")
    b.add_argument("--model", default="resnet18")
    b.add_argument("--batch-size", type=int, default=512)
    b.add_argument("--steps", type=int, default=10, help="optimizer steps (or embedding batches) per repeat")
    b.add_argument("--repeats", type=int, default=3)
    b.add_argument("--workers", type=int, default=2, help="DataLoader workers of the notebook pipeline")
    b.add_argument("--probe-model", default="efficientnet_lite0")
    b.add_argument("--resolution", type=int, default=128)
    sub.add_parser("models", help="list registered models")
    sub.add_parser("recipes", help="list recipes")
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    flags = {k: getattr(args, k) for k in (*RUN_FLAGS, *BOOL_FLAGS) if getattr(args, k, None) is not None}
    return flags


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            cfg = api.make_config(args.recipe, args.config, _overrides(args), args.set)
            result = api.train(cfg)
            s = result.summary
            metric = next((f"{k} {100 * s[k]:.2f}%" for k in ("test_acc", "linear_acc", "rotation_test_acc")
                           if isinstance(s.get(k), float)), "")
            print(f"{result.path}: {s.get('status')} {metric} (train {s.get('train_time_s', 0):.1f}s)")
        elif args.command == "report":
            out = args.output or str(Path(args.runs_dir) / f"report.{args.format}")
            print(api.report(args.runs_dir, out, args.format, args.embedding))
        elif args.command == "study":
            if args.dry_run:
                print(api.study_plan(args.study_file, args.out))
                return 0
            gpus = [g.strip() for g in args.gpus.split(",") if g.strip()] if args.gpus else None
            failed, report = api.study(args.study_file, args.out, not args.no_report, gpus)
            if failed:
                print(f"error: {len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)
                return 1
        elif args.command == "bench":
            print(api.bench(args.dataset, args.data_root, args.device, args.model, args.batch_size, args.steps,
                            args.repeats, args.workers, args.probe_model, args.resolution))
        elif args.command == "keys":
            print(api.keys_help(args.recipe))
        elif args.command == "models":
            print("\n".join(api.model_names()) + "\n(and any timm architecture as timm:NAME)")
        elif args.command == "recipes":
            print(api.recipes_help())
    except CifarlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
