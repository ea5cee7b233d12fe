"""Every notebook in examples/ runs top to bottom on synthetic data (its budget injected after the ``parameters``
cell, papermill-style) with no error cell, and draws figures; the committed notebooks are what examples/build.py
writes (regenerated, not edited by hand)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO

pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
import nbformat  # noqa: E402

EXAMPLES = REPO / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
COURSE = sorted(p.stem for p in (REPO.parent / "shared" / "course").glob("*.txt"))


def _build():
    import importlib.util

    spec = importlib.util.spec_from_file_location("examples_build", EXAMPLES / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_notebook_per_course_document():
    names = {p.stem for p in NOTEBOOKS}
    assert len(names) >= 5 and names == set(_build().NOTEBOOKS)
    if COURSE:  # the documents sit beside the repository where it was made
        assert names == set(COURSE)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_the_committed_notebook_is_the_generated_one(path):
    """Cells are those build.py writes (outputs aside, which come from one real run), and the first code cell is
    the papermill ``parameters`` cell."""
    committed = nbformat.read(path, as_version=4)
    built = _build().NOTEBOOKS[path.stem]()
    code = [c for c in committed.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    assert [c.source for c in code] == [c.source for c in built.cells]
    first = next(c for c in committed.cells if c.cell_type == "code")
    assert "parameters" in first.metadata.get("tags", [])
    assert path.stat().st_size < 1_000_000


@pytest.mark.heavy  # 25-50 s each on 2 cores: .ci/run's heavy step executes them
@pytest.mark.parametrize("name", sorted(_build().NOTEBOOKS), ids=str)
def test_notebook_runs_on_synthetic_data(name, tmp_path, monkeypatch):
    build = _build()
    nb = build.NOTEBOOKS[name]()
    build.inject(nb, dataset="synthetic:4:10:5", per_class=8, test_per_class=4, epochs=1, max_steps_per_epoch=1,
                 resolution=32, stand_in_weights=True, out=str(tmp_path / "runs"))
    monkeypatch.setenv("PYTHONPATH", str(REPO / "src"))  # the kernel imports this checkout's cifarlab
    build.execute(nb, timeout=300)  # raises CellExecutionError on the first error cell
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2, f"{name}: {len(images)} figures drawn"
    assert any("text/html" in o.get("data", {}) for o in outputs)  # a run's or the study's table
    done = [json.loads(f.read_text())["status"] for f in (tmp_path / "runs").glob("*/summary.json")]
    assert done and set(done) == {"complete"}, done
    assert (tmp_path / "runs" / "report.html").is_file()
