"""Command line: parses, resolves the config, calls the Python API. Every action is a function in ``cifarlab.api``."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import re
import shlex
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


def _points(text: str) -> float:
    """A positive difference in points (an equivalence margin, a difference to detect)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive number of points, e.g. 1.5")
    return value


def _add_margin_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--equivalence-margin", type=_points, default=None, metavar="POINTS",
                   help="where no difference is called, test equivalence within ±POINTS (TOST; default: none)")
_TYPE_NAMES = {"int": "an integer", "float": "a number"}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors that say how to fix them: an unknown option names the closest one (difflib
    and the config keys' synonyms), a wrong type names the type expected; never the whole usage. Its subcommands'
    parsers are of this class too (argparse builds them with the parent's class)."""

    commands: dict[str, argparse.ArgumentParser]

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        ns, extras = self.parse_known_args(args, namespace)
        if extras:  # argparse collects a subcommand's unknown arguments here, at the top level
            sub = getattr(self, "commands", {}).get(getattr(ns, "command", None), self)
            sub.exit(2, f"error: {_unknown_option(sub, extras)}\n")
        return ns

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"error: {_readable(self, message)}\n")


def _unknown_option(parser: argparse.ArgumentParser, extras: list[str]) -> str:
    """'unknown option --epcohs; did you mean --epochs?' for the first unknown argument."""
    word = next((e for e in extras if e.startswith("-")), None)
    if word is None:
        return f"unexpected argument {extras[0]!r} (options: {parser.prog} --help)"
    flag = word.split("=", 1)[0]
    flags = [f for f in parser._option_string_actions if f.startswith("--")]
    norm = "--" + flag.lstrip("-").replace("_", "-")
    keys = [f[2:].replace("-", "_") for f in flags]
    close = ["--" + k.replace("_", "-") for k in config.closest_keys(norm[2:], keys, n=1)]
    close += [f for f in difflib.get_close_matches(norm, flags, n=1, cutoff=0.6) if f not in close]
    if close:
        return f"unknown option {flag}; did you mean {close[0]}?"
    return f"unknown option {flag} (options: {parser.prog} --help)"


def _readable(parser: argparse.ArgumentParser, message: str) -> str:
    """argparse's own message made short: a wrong type or choice of an option, or an unknown subcommand."""
    bad_type = re.fullmatch(r"argument (\S+): invalid (\w+) value: (.*)", message)
    if bad_type:
        flag, kind, value = bad_type.groups()
        return f"{flag.split('/')[0]}: expected {_TYPE_NAMES.get(kind, kind)}, got {value}"
    choice = re.fullmatch(r"argument (\S+): invalid choice: '?(.*?)'? \(choose from (.*)\)", message)
    if choice:
        flag, value, options = choice.groups()
        allowed = [o.strip().strip("'") for o in options.split(",")]
        close = difflib.get_close_matches(value, allowed, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        what = "unknown command" if flag in ("command", "{" + ",".join(allowed) + "}") else f"{flag}: unknown value"
        return f"{what} {value!r}{hint} (choose from: {', '.join(allowed)})"
    short = re.sub(r"^argument (\S+): ", r"\1: ", message)
    return f"{short} (see {parser.prog} --help)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cifarlab", description=__doc__.splitlines()[0])
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
    _add_margin_flag(rep)
    st = sub.add_parser("study", help="run a study file (TOML), skipping complete runs, then write the report")
    _add_margin_flag(st)
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
    st.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config key for every run whose recipe has it, over [defaults] and the run tables "
                         "(repeatable; recorded in study.json and each run's config.json)")
    st.add_argument("--rerun-changed", action="store_true",
                    help="re-run the runs whose directories hold a different run, and the runs that start from "
                         "them; the old directories are kept as NAME.replaced-N")
    st.add_argument("--executor", choices=("local", "slurm"), default="local",
                    help="local: this machine; slurm: one Slurm job per run (submitit), dependencies as afterok")
    st.add_argument("--yes", action="store_true", help="start a study estimated above an hour without asking")
    st.add_argument("--no-calibrate", action="store_true",
                    help="estimate from cached measurements or the FLOP table only (no timing steps)")
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
    se = sub.add_parser("seeds", help="seeds per arm each comparison of RUNS' report needs to detect a difference "
                                      "with 80%% power, from the pilot runs' standard deviations")
    se.add_argument("runs_dir", metavar="RUNS")
    se.add_argument("--detect", type=_points, required=True, metavar="POINTS", help="the difference to detect")
    sub.add_parser("models", help="list registered models")
    sub.add_parser("recipes", help="list recipes")
    parser.commands = sub.choices
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


def _command(argv: list[str] | None, drop: tuple[str, ...] = ()) -> str:
    """The command line that ran (``argv``, or this process's arguments), as one could type it again; options in
    ``drop`` (and ``--set`` of those keys) left out."""
    args = list(sys.argv[1:] if argv is None else argv)
    kept: list[str] = []
    while args:
        word = args.pop(0)
        if word == "--set" and args and args[0].split("=", 1)[0].replace("-", "_") in drop:
            args.pop(0)
        elif word.split("=", 1)[0] not in {"--" + d for d in drop} | {"--no-" + d for d in drop}:
            kept.append(word)
    script = Path(sys.argv[0]).name == "cifarlab"
    return " ".join(["cifarlab" if script else f"{shlex.quote(sys.executable)} -m cifarlab", *map(shlex.quote, kept)])


def _say_interrupted(cfg: config.RunConfig, argv: list[str] | None) -> None:
    """After Ctrl-C: where the run stands and the exact command that continues it."""
    from cifarlab.recipes.execute import run_name
    from cifarlab.studies.local import status

    if not distributed.get().is_main:
        return
    out = Path(cfg.out)
    if status(out, run_name(cfg)) != "interrupted":  # stopped before its run directory held a run
        print("interrupted", file=sys.stderr)
        return
    resume = _command(argv, drop=("resume", "overwrite")) + " --resume"
    print(f"interrupted: {out / run_name(cfg)} (status interrupted); continue it with:\n  {resume}", file=sys.stderr)
def _announce_cost(args: argparse.Namespace) -> bool:
    """A study's estimated time per run and in all (studies/cost.py); above an hour, ask (or say so) with the
    --set that brings it under ten minutes. False: the user declined."""
    from cifarlab import config as config_mod
    from cifarlab.studies import cost

    sets = config_mod.parse_overrides(getattr(args, "set", None) or [])
    est, runs = cost.announce(args.study_file, args.out, sets, args.seed_offset, log=print if args.dry_run else None,
                              measure_missing=not args.no_calibrate)
    hint = cost.suggest_overrides(runs, cost.run_device(runs)) if est.total_s > cost.CONFIRM_ABOVE_S else None
    if args.dry_run or args.executor != "local":
        if hint:
            print(f"  under 10 min here: {cost.set_flags(hint[0])} (about {cost.duration(hint[1])})")
        return True
    return cost.check_budget(est, hint, args.yes)


def main(argv: list[str] | None = None) -> int:
    if not isinstance(sys.stdout, _DroppingStream):
        sys.stdout, sys.stderr = _DroppingStream(sys.stdout), _DroppingStream(sys.stderr)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            cfg = api.make_config(args.recipe, args.config, _overrides(args), args.set)
            try:
                result = api.train(cfg)
            except KeyboardInterrupt:
                _say_interrupted(cfg, argv)
                return 130
            if distributed.get().is_main:  # under torchrun, one closing line, not one per rank
                print(f"{result.path}: {headline(result.summary)}")
        elif args.command == "report":
            out = args.output or str(Path(args.runs_dir) / f"report.{args.format}")
            print(api.report(args.runs_dir, out, args.format, args.embedding, args.progress, args.figures,
                             args.equivalence_margin))
        elif args.command == "study":
            slurm = _slurm_flags(args)
            sets = config.parse_overrides(args.set)
            if args.dry_run:
                print(api.study_plan(args.study_file, args.out, args.seed_offset, args.executor, slurm, sets))
            if not _announce_cost(args):
                return 1
            if args.dry_run:
                return 0
            gpus = [g.strip() for g in args.gpus.split(",") if g.strip()] if args.gpus else None
            try:
                failed, report = api.study(args.study_file, args.out, not args.no_report, gpus,
                                           executor=args.executor, jobs_per_device=args.jobs_per_device,
                                           seed_offset=args.seed_offset, slurm=slurm, wait=not args.no_wait,
                                           overrides=sets, rerun_changed=args.rerun_changed,
                                           equivalence_margin=args.equivalence_margin)
            except KeyboardInterrupt:  # complete runs are skipped and the interrupted one resumes on a re-run
                print(f"study interrupted; resume it with the same command: {_command(argv)}", file=sys.stderr)
                return 130
            if failed:
                print(f"error: {len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)
                return 1
        elif args.command == "bench":
            opts = BenchOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(BenchOptions)})
            print(api.bench(opts, log=lambda m: print(m, file=sys.stderr, flush=True)))
        elif args.command == "seeds":
            print(api.seeds(args.runs_dir, args.detect))
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
