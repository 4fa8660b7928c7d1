"""The package's import graph has no circle, lazy imports (inside functions) included.

An edge runs from a module to each module of the package it imports, as import checkers count it:
`from thesislib.study.config import X` depends on thesislib.study.config, `from thesislib import
claims` on thesislib.claims; imports under `if TYPE_CHECKING:` are left out (they never run).
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "thesislib"


def _modules(root: Path) -> dict[str, Path]:
    out = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _nearest(name: str, modules: dict) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports(name: str, path: Path, modules: dict) -> set[str]:
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out |= {_nearest(a.name, modules) for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [_nearest(f"{base}.{a.name}", modules) for a in node.names]
            out |= set(names) if all(n != base for n in names) else {_nearest(base, modules), *names}
    return {m for m in out if m and m != name}


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    modules = _modules(root)
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The graph's strongly connected components of more than one module (Tarjan), and self-loops."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_package_imports_without_a_circle():
    found = circles(import_graph())
    assert not found, "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def test_a_circle_is_found(tmp_path):
    pkg = tmp_path / "thesislib"
    (pkg / "study").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "study" / "__init__.py").write_text("from thesislib.study.grids import grid\n")
    (pkg / "study" / "grids.py").write_text("def grid():\n    from thesislib import tables\n")
    (pkg / "tables.py").write_text("from thesislib.study.grids import grid\nfrom . import design\n")
    (pkg / "design.py").write_text("import json\n")
    graph = import_graph(pkg)
    assert graph["thesislib.tables"] == {"thesislib.study.grids", "thesislib.design"}
    assert circles(graph) == [["thesislib.study.grids", "thesislib.tables"]]


def test_no_module_of_the_package_is_over_500_lines():
    sizes = {p.relative_to(PACKAGE).as_posix(): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert len(sizes) > 40
    over = {name: n for name, n in sizes.items() if n > 500}
    assert not over, f"modules over 500 lines (split them by job): {over}"
