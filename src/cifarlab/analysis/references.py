"""Published figures (``references.toml``) and the arms they are shown beside, with how their settings differ.

A reference is never a measurement of a run: the report shows it in its own table, marked "published"."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from cifarlab.analysis.findings import Arm, Finding
from cifarlab.analysis.origin import Origins
from cifarlab.errors import CifarlabError

REQUIRED = ("id", "value", "metric", "question", "recipe", "start", "models", "source", "setting")
STARTS = ("imagenet", "rotation", "none", "any")
COMPARED = ("resolution", "epochs", "train_images", "test_images")


@dataclass(frozen=True)
class Reference:
    id: str
    value: float  # percent
    metric: str
    question: str
    recipe: str
    start: str
    models: tuple[str, ...]
    source: str
    setting: str
    approx: bool = False
    model: str | None = None
    architecture: str | None = None
    dataset: str | None = None
    resolution: int | None = None
    epochs: int | None = None
    train_images: int | None = None
    test_images: int | None = None

    @property
    def figure(self) -> str:
        return f"{'~' if self.approx else ''}{self.value:.2f}%"


def parse(entries: list[dict[str, Any]], where: str) -> dict[str, Reference]:
    """References by id from the ``[[reference]]`` tables of ``where``; a missing or unknown key, a bad start or a
    repeated id is an error naming the file and the entry."""
    known = set(Reference.__dataclass_fields__)
    out: dict[str, Reference] = {}
    for k, e in enumerate(entries):
        name = e.get("id", f"entry {k + 1}")
        if missing := [key for key in REQUIRED if key not in e]:
            raise CifarlabError(f"{where}: reference {name!r} lacks {', '.join(missing)}")
        if unknown := sorted(set(e) - known):
            raise CifarlabError(f"{where}: reference {name!r} has unknown key(s) {', '.join(unknown)}; allowed: "
                                f"{', '.join(sorted(known))}")
        if e["start"] not in STARTS:
            raise CifarlabError(f"{where}: reference {name!r}: start {e['start']!r} is not one of {', '.join(STARTS)}")
        if name in out:
            raise CifarlabError(f"{where}: reference id {name!r} appears twice")
        out[name] = Reference(**{**e, "value": float(e["value"]), "models": tuple(e["models"])})
    return out


@cache
def load() -> dict[str, Reference]:
    """The package's references.toml."""
    text = resources.files("cifarlab.analysis").joinpath("references.toml").read_text(encoding="utf-8")
    return parse(tomllib.loads(text).get("reference", []), "cifarlab/analysis/references.toml")


@dataclass(frozen=True)
class Match:
    arm: Arm
    reference: Reference
    differences: list[str]
    named: bool  # named by the run's config key `reference`, not matched by question/recipe/model


def _arm_start(arm: Arm, origins: Origins) -> str:
    kind = origins.kind(arm.runs[0])
    return "imagenet" if kind in ("imagenet", "file") else kind


def _resolution(arm: Arm) -> Any:
    return arm.first.get("resolution") or arm.runs[0].config.get("dataset", {}).get("image_size")


def differences(ref: Reference, arm: Arm, origins: Origins) -> list[str]:
    """How the reference's setting differs from the arm's, in the keys both record."""
    s, model = arm.first, str(arm.first.get("model"))
    out = []
    if ref.model != model:
        out.append(f"architecture {ref.architecture or ref.model} (this arm: {model})")
    if ref.dataset:
        data = f"{arm.runs[0].config.get('dataset', {}).get('name', '')} {arm.dataset}".lower()
        if "cifar10" not in data.replace("-", "") or "cifar100" in data.replace("-", ""):
            out.append(f"dataset {ref.dataset} (this arm: {arm.dataset})")
    if origins.kind(arm.runs[0]) == "file" and ref.start == "imagenet":
        out.append("weights: ImageNet's (this arm: given weights, " + str(s.get("started_from"))[5:] + ")")
    mine = {"resolution": _resolution(arm), "epochs": s.get("epochs"), "train_images": s.get("num_train"),
            "test_images": s.get("num_test")}
    words = {"resolution": "{:,} px", "epochs": "{:,} epochs", "train_images": "{:,} training images",
             "test_images": "{:,} test images"}
    for key in COMPARED:
        theirs = getattr(ref, key)
        if theirs is not None and mine[key] is not None and theirs != mine[key]:
            out.append(f"{words[key].format(theirs)} (this arm: {words[key].format(mine[key])})")
        elif theirs is not None and mine[key] is None:
            out.append(f"{words[key].format(theirs)} (this arm: unrecorded)")
    return out


def _named(arm: Arm, refs: dict[str, Reference]) -> list[str]:
    ids: list[str] = []
    for r in arm.runs:
        value = r.key("reference")
        for ref_id in ([value] if value else []) if isinstance(value, str) else (value or []):
            if ref_id not in refs:  # '' (the key's default) names none
                raise CifarlabError(f"{r.path / 'config.json'}: config key reference = {ref_id!r} is not a known "
                                    f"reference; choose from: {', '.join(sorted(refs))}")
            if ref_id not in ids:
                ids.append(ref_id)
    return ids


def matches(f: Finding, origins: Origins, refs: dict[str, Reference] | None = None) -> list[Match]:
    """Every (arm, reference) pair of a question: references named by the arm's runs, then those matching the
    arm's question, recipe, start and model (contrastive controls match nothing: they are not a method)."""
    refs = load() if refs is None else refs
    out = []
    for arm in f.arms:
        named = _named(arm, refs)
        recipe, model = arm.first.get("recipe"), str(arm.first.get("model"))
        found = [] if arm.first.get("control") else [
            ref.id for ref in refs.values()
            if ref.question == f.key and ref.recipe == recipe and (ref.start in ("any", _arm_start(arm, origins)))
            and ("*" in ref.models or model in ref.models) and ref.id not in named]
        out += [Match(arm, refs[i], differences(refs[i], arm, origins), i in named) for i in named + found]
    return out
