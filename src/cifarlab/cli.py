"""Command line: parses, resolves the config, calls the Python API. Every action is a function in ``cifarlab.api``."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from cifarlab import api, config
from cifarlab.engine import distributed
from cifarlab.engine.bench import BenchOptions
from cifarlab.errors import CifarlabError

# flags shared by the recipes -> config keys (a flag a recipe does not know is rejected by the config layer);
# their types are the config fields' own
RUN_FLAGS = ("model", "dataset", "data_root", "epochs", "batch_size", "lr", "seed", "device", "out", "name",
             "per_class", "train_fraction", "val_fraction", "weights", "init", "resolution", "augment", "image_size",
             "progress", "compile", "preset")
BOOL_FLAGS = ("resume", "overwrite", "deterministic")


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", help="regime to run: " + ", ".join(api.recipe_names()))
    p.add_argument("--config", help="TOML file of config keys")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config key")
    types = config_types()
    for key in RUN_FLAGS:
        extra = {"nargs": "?", "const": "on"} if key == "compile" else {}  # a bare --compile means on
        p.add_argument("--" + key.replace("_", "-"), dest=key, type=types[key], default=None, **extra)
    for key in BOOL_FLAGS:
        p.add_argument("--" + key, dest=key, action="store_const", const=True, default=None)


def config_types() -> dict[str, type]:
    """Every config key's type, over all recipes' config classes."""
    types: dict[str, type] = {}
    for name in api.recipe_names():
        types.update(config.field_types(api.config_class(name)))
    return types


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
                     help="2-D projection of test embeddings (umap needs umap-learn: pip install 'cifarlab[umap]')")
    rep.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                     help="a progress line for the per-run analyses on stderr (auto: only on a terminal)")
    st = sub.add_parser("study", help="run a study file (TOML), skipping complete runs, then write the report")
    st.add_argument("study_file")
    st.add_argument("--out", required=True, help="folder for the study's run directories and report")
    st.add_argument("--no-report", action="store_true")
    st.add_argument("--dry-run", action="store_true", help="check the file and list its runs (with their status in "
                                                           "OUT) without running anything")
    st.add_argument("--gpus", default=None, help="comma-separated CUDA devices (or 'cpu' slots) to run independent "
                                                 "runs concurrently, one per device, e.g. 0,1,2,3")
    b = sub.add_parser("bench", help="each regime's hot loop: images/s, TFLOP/s, MFU (CUDA), warm-up seconds apart")
    for f in dataclasses.fields(BenchOptions):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            b.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            b.add_argument(flag, dest=f.name, type=type(f.default), default=f.default)
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
            if distributed.get().is_main:  # under torchrun, one closing line, not one per rank
                print(f"{result.path}: {s.get('status')} {metric} (train {s.get('train_time_s', 0):.1f}s)")
        elif args.command == "report":
            out = args.output or str(Path(args.runs_dir) / f"report.{args.format}")
            print(api.report(args.runs_dir, out, args.format, args.embedding, args.progress))
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
            opts = BenchOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(BenchOptions)})
            print(api.bench(opts, log=lambda m: print(m, file=sys.stderr, flush=True)))
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
