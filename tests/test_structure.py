"""The package's structure, checked on the source itself: no function takes more than 8 parameters, the layers import
only downwards, and no import circle exists at any level. Every import counts: module-level, inside functions and
under ``TYPE_CHECKING``."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "cifarlab"
LOWER = ("data", "engine")
UPPER = ("cifarlab.config", "cifarlab.recipes", "cifarlab.analysis", "cifarlab.studies")
# the floor: modules every layer may use, which import no other part of the package but each other
FLOOR = ("cifarlab.errors", "cifarlab.files", "cifarlab.memory", "cifarlab.progress", "cifarlab.registry",
         "cifarlab.workers")


def _modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(), str(path))
    return found


def _imported(module: str, node: ast.AST) -> list[str]:
    """The cifarlab modules an import statement names (``from x import y``: ``x.y`` where that is a module)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.startswith("cifarlab")]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative: resolve against the importing package
            pkg = module.split(".")[: -node.level] if not module.endswith("__init__") else module.split(".")
            base = ".".join([*pkg, base] if base else pkg)
        if base.startswith("cifarlab"):
            return [base, *(f"{base}.{a.name}" for a in node.names)]
    return []


def test_no_function_takes_more_than_8_parameters():
    over = []
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                params = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
                params += [p.arg for p in (a.vararg, a.kwarg) if p is not None]
                params = [p for p in params if p not in ("self", "cls")]
                if len(params) > 8:
                    over.append(f"{name}.{node.name} ({len(params)})")
    assert not over, over


def test_data_and_engine_import_no_upper_layer():
    bad = []
    for name, tree in _modules().items():
        if name.split(".")[1:2] and name.split(".")[1] in LOWER:
            for node in ast.walk(tree):
                bad += [f"{name} -> {m}" for m in _imported(name, node) if m.startswith(UPPER)]
    assert not bad, bad


def _graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its source (functions and TYPE_CHECKING blocks too)."""
    modules = _modules()
    return {name: {m for node in ast.walk(tree) for m in _imported(name, node) if m in modules and m != name}
            for name, tree in modules.items()}


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else module


def test_data_does_not_import_engine_at_any_level():
    """data/ sits below engine/ (the loop reads batches); the helpers both need live on the floor."""
    bad = [f"{n} -> {m}" for n, deps in _graph().items() for m in deps
           if n.startswith("cifarlab.data") and m.startswith("cifarlab.engine")]
    assert not bad, bad


def test_the_floor_imports_nothing_above_it():
    bad = [f"{n} -> {m}" for n, deps in _graph().items() if n in FLOOR for m in deps if m not in FLOOR]
    assert not bad, bad


def test_no_circle_between_subpackages_at_any_level():
    graph: dict[str, set[str]] = {}
    for n, deps in _graph().items():
        graph.setdefault(_package(n), set()).update(_package(m) for m in deps if _package(m) != _package(n))
    graph.pop("cifarlab", None)  # the package's __init__ (its version) is read by everyone and imports nothing
    for deps in graph.values():
        deps.discard("cifarlab")
    assert not _cycles(graph), _cycles(graph)[:5]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    seen, stack, cycles = set(), [], []

    def visit(node):
        if node in stack:
            cycles.append(stack[stack.index(node):] + [node])
            return
        if node in seen:
            return
        seen.add(node)
        stack.append(node)
        for m in sorted(graph.get(node, ())):
            visit(m)
        stack.pop()

    for n in sorted(graph):
        visit(n)
    return cycles


def test_imports_at_any_level_have_no_cycle():
    graph = _graph()
    # a package's __init__ importing its own submodules is how a package exposes them, not a cycle
    graph = {n: {m for m in deps if not (m.startswith(n + ".") and n.count(".") < m.count("."))}
             for n, deps in graph.items()}
    assert not _cycles(graph), _cycles(graph)[:5]
