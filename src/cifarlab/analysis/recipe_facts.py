"""What each run and arm did, read from its run directory: the epochs and steps, the images it trained on, the
optimiser and rate, the schedule and warm-up, the augmentation, the layers it trained and the seeds.

Everything comes from ``config.json``'s ``resolved`` block (the values the run used, any ``--set`` of a study
included) and ``summary.json``, never from a study file or the code's defaults, so a shrunk or overridden run is
described as it ran.
"""

from __future__ import annotations

from typing import Any

from cifarlab.analysis.runs import Run

# (key, column label) of the arm tables, in the order a reader scans a recipe
FACT_COLUMNS = [("epochs", "epochs (steps)"), ("images", "train images"), ("optimiser", "optimiser, rate"),
                ("schedule", "schedule"), ("augment", "augmentation"), ("trained", "trained layers")]


def _num(x: Any) -> str:
    return f"{x:,}" if isinstance(x, int) and not isinstance(x, bool) else "?"


def _resolved(run: Run) -> dict[str, Any]:
    return run.config.get("resolved") or run.config.get("config") or {}


def run_facts(run: Run) -> dict[str, str]:
    """One run's recipe as it ran, one string per column of :data:`FACT_COLUMNS`."""
    r, s = _resolved(run), run.summary
    epochs, steps = r.get("epochs", s.get("epochs")), r.get("steps_per_epoch")
    total = f" ({_num(epochs * steps)} steps)" if isinstance(epochs, int) and isinstance(steps, int) else ""
    split = run.config.get("split") or {}
    n_train, n_val = split.get("num_train", s.get("num_train")), split.get("num_val", s.get("num_val"))
    images = _num(n_train) + (f" (+{_num(n_val)} validation)" if n_val else " (no validation split)")
    return {"epochs": f"{_num(epochs)}{total}", "images": images, "optimiser": optimiser_text(r, s),
            "schedule": schedule_text(r, s), "augment": augment_text(r), "trained": trained_text(s)}


def optimiser_text(r: dict[str, Any], s: dict[str, Any]) -> str:
    """'adam 0.001', 'sgd 0.1 (momentum 0.9, Nesterov), wd 5e-4', with the lowest group's rate where rates differ."""
    name = str(r.get("optimizer", "?"))
    lr = s.get("peak_lr", r.get("lr"))
    text = f"{name} {lr:.4g}" if isinstance(lr, (int, float)) else name
    if name in ("sgd", "muon") and isinstance(r.get("momentum"), (int, float)):
        text += f" (momentum {r['momentum']:g}{', Nesterov' if r.get('nesterov') else ''})"
    rates = [v for v in (s.get("lr_groups") or {}).values() if isinstance(v, (int, float))]
    if rates and min(rates) < max(rates):
        text += f", lowest group {min(rates):.4g}"
    if r.get("weight_decay"):
        text += f", wd {r['weight_decay']:g}"
    return text


def schedule_text(r: dict[str, Any], s: dict[str, Any]) -> str:
    """'constant, no warm-up', 'cosine, warm-up 352 steps', 'multistep x0.1 at 0.5, 0.75, no warm-up'."""
    name = str(r.get("schedule", "?"))
    if name == "multistep":
        name += f" x{r.get('gamma', '?')} at {', '.join(f'{m:g}' for m in r.get('milestones') or [])}"
    warm = r.get("warmup_steps", s.get("warmup_steps"))
    text = f"{name}, " + (f"warm-up {_num(warm)} steps" if warm else "no warm-up")
    if r.get("ema"):
        text += f", EMA {r['ema']:g}"
    return text


def augment_text(r: dict[str, Any]) -> str:
    """'cropflip at 32 px', 'autoaugment_flip at 224 px', plus cutout and, for rotation, which rotations."""
    text = f"{r.get('augment', '?')} at {r.get('resolution', '?')} px"
    if r.get("cutout"):
        text += f", cutout {r['cutout']} px"
    if r.get("recipe") == "rotation":
        text += {"random": ", one random rotation per image", "all": ", all four rotations per image"}.get(
            str(r.get("rotations", "all")), "")
    return text


def trained_text(s: dict[str, Any]) -> str:
    """'head only' (linear probe), 'layer4 + head' (the last block), or 'all layers'."""
    recipe = s.get("recipe")
    if recipe == "linear":
        return "head only"
    if recipe == "partial" and s.get("trainable_blocks"):
        return " + ".join(s["trainable_blocks"]) + " + head"
    return "all layers"


def arm_facts(runs: list[Run]) -> dict[str, str]:
    """An arm's recipe: each column's value, or its distinct values joined by ' / ' where the runs differ; its seeds;
    and the ``--set`` keys that replaced the study file's values, where a study recorded some."""
    per_run = [run_facts(r) for r in runs]
    out = {k: " / ".join(dict.fromkeys(f[k] for f in per_run)) for k, _ in FACT_COLUMNS}
    seeds = sorted({r.key("seed") for r in runs if isinstance(r.key("seed"), int)})
    out["seeds"] = ", ".join(str(x) for x in seeds) or "?"
    sets = [(r.config.get("study") or {}).get("overrides") or {} for r in runs]
    out["overrides"] = " / ".join(dict.fromkeys(", ".join(f"{k}={v}" for k, v in x.items()) for x in sets if x))
    return out
