"""Issue 23's structural acceptance, checked on the source itself: no function takes more than 8 parameters,
`data/` and `engine/` import nothing from `config`, `recipes` or `analysis` (not even inside a function), and the
package's module-level imports form no cycle."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "cifarlab"
LOWER = ("data", "engine")
UPPER = ("cifarlab.config", "cifarlab.recipes", "cifarlab.analysis")


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


def test_module_level_imports_have_no_cycle():
    modules = _modules()
    graph = {name: {m for node in tree.body for m in _imported(name, node) if m in modules and m != name}
             for name, tree in modules.items()}
    # a package's __init__ importing its own submodules is how a package exposes them, not a cycle
    graph = {n: {m for m in deps if not (m.startswith(n + ".") and n.count(".") < m.count("."))}
             for n, deps in graph.items()}
    seen, stack, cycles = set(), [], []

    def visit(node):
        if node in stack:
            cycles.append(stack[stack.index(node):] + [node])
            return
        if node in seen:
            return
        seen.add(node)
        stack.append(node)
        for m in sorted(graph[node]):
            visit(m)
        stack.pop()

    for n in sorted(graph):
        visit(n)
    assert not cycles, cycles[:5]
