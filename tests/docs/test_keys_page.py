"""docs/keys.md is generated from the config code by docs/gen_keys.py; the committed page must equal it."""

import dataclasses
import importlib.util
from pathlib import Path

from cifarlab import config

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _gen_keys():
    spec = importlib.util.spec_from_file_location("gen_keys", DOCS / "gen_keys.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_keys_page_equals_generated():
    assert (DOCS / "keys.md").read_text(encoding="utf-8") == _gen_keys().render(), (
        "docs/keys.md is stale: run PYTHONPATH=src python docs/gen_keys.py")


def test_generated_page_lists_every_key_of_every_recipe_with_its_help():
    page = _gen_keys().render()
    for cls in set(config.RECIPE_CONFIGS.values()):
        for f in dataclasses.fields(cls):
            assert f"| `{f.name}` |" in page, f.name
            assert f.metadata["help"].replace("|", "\\|") in page, f.name
