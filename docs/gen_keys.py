"""Write docs/keys.md, the config key reference, from the config dataclasses' fields and help texts.

Run from the repository root: ``PYTHONPATH=src python docs/gen_keys.py``. tests/docs/test_keys_page.py checks that
the committed page equals what this prints, so the page cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from cifarlab import config

HEADER = """# Config keys

Every flag of `cifarlab train` is a config key: `--per-class 10` and `--set per_class=10` are the same, and a study
file or `--config FILE.toml` sets the same keys. `cifarlab keys --recipe NAME` prints the same list in the terminal.
This page is generated from the config code by `docs/gen_keys.py`; do not edit it by hand.
"""


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _default(f: dataclasses.Field) -> object:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]


def _table(fields: list[dataclasses.Field]) -> list[str]:
    rows = ["| key | default | what it sets | allowed |", "|---|---|---|---|"]
    for f in fields:
        allowed = config.allowed(f.metadata).strip()[1:-1]
        rows.append(f"| `{f.name}` | `{_default(f)!r}` | {_cell(f.metadata.get('help', ''))} | {_cell(allowed)} |")
    return rows


def render() -> str:
    """The whole page: the keys every recipe shares, then per config class the keys it adds or redefines."""
    shared = {f.name: f for f in dataclasses.fields(config.RunConfig)}
    lines = [HEADER, "## Keys of every recipe", "", *_table(list(shared.values())), ""]
    classes: dict[type, list[str]] = {}
    for recipe, cls in config.RECIPE_CONFIGS.items():
        classes.setdefault(cls, []).append(recipe)
    for cls, recipes in classes.items():
        own = [f for f in dataclasses.fields(cls) if f.name not in shared
               or _default(f) != _default(shared[f.name]) or f.metadata != shared[f.name].metadata]
        names = ", ".join(f"`{r}`" for r in recipes)
        title = f"## Recipe{'s' if len(recipes) > 1 else ''} {names}"
        lines += [title, "", "Keys added, or shared keys with another default or help text:", "", *_table(own), ""]
    return "\n".join(lines)


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("keys.md")
    out.write_text(render(), encoding="utf-8")


if __name__ == "__main__":
    main()
