"""Command line: parses, resolves the config, calls the Python API. Every action is a function in ``cifarlab.api``."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from cifarlab import api, config
from cifarlab.bench import BenchOptions
from cifarlab.engine import distributed
from cifarlab.errors import CifarlabError
from cifarlab.studies.local import headline


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    """One flag per config key of any recipe (``--per-class`` for ``per_class``), its help text and type taken from
    the config field; a key the chosen recipe does not have is rejected by the config layer, by name."""
    p.add_argument("--recipe", help="regime to run: " + ", ".join(api.recipe_names()))
    p.add_argument("--config", help="TOML file of config keys")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config key")
    for key, (typ, meta, recipes) in config_fields().items():
        flag = "--" + key.replace("_", "-")
        where = "" if len(recipes) == len(api.recipe_names()) else f" (recipes: {', '.join(recipes)})"
        text = (meta.get("help", "") + config.allowed(meta) + where).replace("%", "%%")
        if typ is bool:
            p.add_argument(flag, dest=key, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif typ is list:
            p.add_argument(flag, dest=key, default=None, metavar="A,B", help=text)
        else:
            extra = {"nargs": "?", "const": "on"} if key == "compile" else {}  # a bare --compile means on
            p.add_argument(flag, dest=key, type=typ, default=None, help=text, **extra)


def config_fields() -> dict[str, tuple[type, dict, list[str]]]:
    """Every config key over all recipes: its type, its field's metadata and the recipes that have it."""
    out: dict[str, tuple[type, dict, list[str]]] = {}
    for name in api.recipe_names():
        cls = api.config_class(name)
        types = config.field_types(cls)
        for f in dataclasses.fields(cls):
            if f.name == "recipe":
                continue
            prev = out.get(f.name)
            out[f.name] = (types[f.name], dict(f.metadata), [*(prev[2] if prev else []), name])
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cifarlab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="run one regime into a run directory")
    _add_run_flags(train)
    keys = sub.add_parser("keys", help="list the config keys of a recipe with defaults and allowed values")
    keys.add_argument("--recipe", default="scratch")
    rep = sub.add_parser("report", help="write a report of the run directories under RUNS_DIR")
    rep.add_argument("runs_dir")
    rep.add_argument("-o", "--output", default=None, help="output file (default RUNS_DIR/report.html, .md or .pdf)")
    rep.add_argument("--format", choices=("html", "md", "pdf"), default="html",
                     help="pdf: the HTML report printed to A4 (needs WeasyPrint: pip install 'cifarlab[pdf]')")
    rep.add_argument("--embedding", choices=("tsne", "umap", "none"), default="tsne",
                     help="2-D projection of test embeddings (umap needs umap-learn: pip install 'cifarlab[umap]')")
    rep.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                     help="a progress line for the per-run analyses on stderr (auto: only on a terminal)")
    rep.add_argument("--figures", choices=("first-seed", "all"), default="first-seed",
                     help="whose curves, confusion matrix, mistakes and 2-D embedding are drawn: each arm's lowest "
                          "seed (the other seeds keep their tables and link there), or every run's")
    st = sub.add_parser("study", help="run a study file (TOML), skipping complete runs, then write the report")
    st.add_argument("study_file")
    st.add_argument("--out", required=True, help="folder for the study's run directories and report")
    st.add_argument("--no-report", action="store_true")
    st.add_argument("--dry-run", action="store_true", help="check the file and list its runs (with their status in "
                                                           "OUT) without running anything")
    st.add_argument("--gpus", default=None, help="comma-separated CUDA devices (or 'cpu' slots) to run independent "
                                                 "runs concurrently, one per device, e.g. 0,1,2,3")
    st.add_argument("--jobs-per-device", type=int, default=1, metavar="K",
                    help="runs at once per --gpus entry (or on the one device), as separate processes")
    st.add_argument("--seed-offset", type=int, default=0, metavar="N", help="add N to every run's seeds")
    st.add_argument("--executor", choices=("local", "slurm"), default="local",
                    help="local: this machine; slurm: one Slurm job per run (submitit), dependencies as afterok")
    sl = st.add_argument_group("slurm (over the study file's [slurm] table)")
    for flag, kind, what in (("partition", str, "partition"), ("time", str, "time limit per job: minutes, H:M:S or "
                             "D-H:M:S"), ("gpus-per-job", int, "GPUs per job (>1: torchrun DDP in the job)"),
                             ("cpus-per-job", int, "CPUs per job"), ("mem", str, "memory per job, e.g. 32G"),
                             ("account", str, "account"), ("qos", str, "quality of service")):
        sl.add_argument("--" + flag, type=kind, default=None, help=what)
    sl.add_argument("--sbatch", action="append", default=[], metavar="OPTION=VALUE",
                    help="any other sbatch option, e.g. --sbatch constraint=a100 (repeatable)")
    sl.add_argument("--no-wait", action="store_true", help="return once the jobs are submitted (report later with "
                                                           "cifarlab report OUT)")
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
    return {k: getattr(args, k) for k in config_fields() if getattr(args, k, None) is not None}


class _DroppingStream:
    """A stream whose writes are dropped once its reader has gone (``cifarlab train ... | head``): a closed pipe
    must not kill a run, whose results go to its run directory anyway."""

    def __init__(self, stream) -> None:
        self._stream, self.closed_pipe = stream, False

    def write(self, text: str) -> int:
        if not self.closed_pipe:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._drop()
        return len(text)

    def flush(self) -> None:
        if not self.closed_pipe:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._drop()

    def _drop(self) -> None:
        import os

        self.closed_pipe = True
        try:  # the interpreter's own flush at exit must not fail either
            os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())
        except (OSError, ValueError):
            pass

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _slurm_flags(args: argparse.Namespace) -> dict[str, object]:
    """The study's Slurm flags that were given, as ``SlurmSettings`` keys."""
    flags = {k: getattr(args, k) for k in ("partition", "time", "gpus_per_job", "cpus_per_job", "mem", "account",
                                           "qos") if getattr(args, k) is not None}
    extra = {}
    for item in args.sbatch:
        key, sep, value = item.partition("=")
        if not key:
            raise CifarlabError(f"--sbatch {item!r}: expected OPTION=VALUE (or OPTION), e.g. constraint=a100")
        extra[key.lstrip("-")] = value if sep else True
    return {**flags, **({"sbatch": extra} if extra else {})}


def main(argv: list[str] | None = None) -> int:
    if not isinstance(sys.stdout, _DroppingStream):
        sys.stdout, sys.stderr = _DroppingStream(sys.stdout), _DroppingStream(sys.stderr)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            cfg = api.make_config(args.recipe, args.config, _overrides(args), args.set)
            result = api.train(cfg)
            if distributed.get().is_main:  # under torchrun, one closing line, not one per rank
                print(f"{result.path}: {headline(result.summary)}")
        elif args.command == "report":
            out = args.output or str(Path(args.runs_dir) / f"report.{args.format}")
            print(api.report(args.runs_dir, out, args.format, args.embedding, args.progress, args.figures))
        elif args.command == "study":
            slurm = _slurm_flags(args)
            if args.dry_run:
                print(api.study_plan(args.study_file, args.out, args.seed_offset, args.executor, slurm))
                return 0
            gpus = [g.strip() for g in args.gpus.split(",") if g.strip()] if args.gpus else None
            failed, report = api.study(args.study_file, args.out, not args.no_report, gpus, executor=args.executor,
                                       jobs_per_device=args.jobs_per_device, seed_offset=args.seed_offset,
                                       slurm=slurm, wait=not args.no_wait)
            if failed:
                print(f"error: {len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)
                return 1
        elif args.command == "bench":
            opts = BenchOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(BenchOptions)})
            print(api.bench(opts, log=lambda m: print(m, file=sys.stderr, flush=True)))
        elif args.command == "keys":
            print(api.keys_help(args.recipe))
        elif args.command == "models":
            print(api.models_help())
        elif args.command == "recipes":
            print(api.recipes_help())
    except CifarlabError as exc:
        print(f"error: {getattr(exc, 'cli_message', None) or exc}", file=sys.stderr)  # flags, not keys
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
