"""No import cycle between the repository's top-level packages (docs/ARCHITECTURE layout:
firmware, home_unit, backend, sim, hw): a cycle means neither side can be read, tested or
installed without the other, and a piece both need belongs where both can import it.

Every import statement counts, a lazy one inside a function too (that is how a cycle hides)."""

from __future__ import annotations

import ast
import graphlib
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The tests import everything and nothing imports them: they are not part of the graph.
NOT_CODE = {"tests"}

# (importing package, imported package) -> where: "path:line"
Edges = dict[tuple[str, str], list[str]]


def top_level_packages(root: Path) -> set[str]:
    return {p.parent.name for p in root.glob("*/__init__.py")} - NOT_CODE


def imported_names(tree: ast.AST) -> list[tuple[str, int]]:
    """The absolute module names a module imports, with their line (relative imports stay in
    their own package, so they cannot make a cycle between packages)."""
    out: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.module, node.lineno))
    return out


def package_edges(root: Path) -> Edges:
    packages = top_level_packages(root)
    edges: Edges = defaultdict(list)
    for pkg in sorted(packages):
        for path in sorted((root / pkg).rglob("*.py")):
            tree = ast.parse(path.read_bytes(), str(path))
            for name, line in imported_names(tree):
                target = name.partition(".")[0]
                if target in packages and target != pkg:
                    edges[(pkg, target)].append(f"{path.relative_to(root)}:{line}")
    return edges


def find_cycle(edges: Edges) -> list[str] | None:
    """A cycle of packages (first and last the same), or None."""
    deps: dict[str, set[str]] = defaultdict(set)
    for src, dst in edges:
        deps[src].add(dst)
    try:
        graphlib.TopologicalSorter(deps).prepare()
    except graphlib.CycleError as e:
        return list(e.args[1])
    return None


def describe(cycle: list[str], edges: Edges) -> str:
    # graphlib lists a cycle against the edges' direction (each entry is a dependency of
    # the one after it); the report follows the imports.
    hops = list(zip(cycle[1:], cycle, strict=False))
    return "; ".join(f"{a} -> {b} ({', '.join(edges[(a, b)][:3])})" for a, b in hops)


def test_no_import_cycle_between_top_level_packages() -> None:
    edges = package_edges(ROOT)
    assert {"firmware", "home_unit", "backend", "sim", "hw"} <= top_level_packages(ROOT)
    assert ("hw", "sim") in edges  # the graph sees real imports (the virtual board's tag)
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle between packages: " + describe(cycle, edges)


def test_a_cycle_is_found_even_through_a_lazy_import(tmp_path: Path) -> None:
    for pkg, body in {
        "alpha": "from beta import thing\n",
        "beta": "import gamma.part\n",
        "gamma": "def later():\n    from alpha import x\n",
        "delta": "import alpha\nfrom . import local\n",
    }.items():
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text(body)
    edges = package_edges(tmp_path)
    assert set(edges) == {("alpha", "beta"), ("beta", "gamma"), ("gamma", "alpha"),
                          ("delta", "alpha")}  # fmt: skip
    cycle = find_cycle(edges)
    assert cycle is not None and set(cycle) == {"alpha", "beta", "gamma"}
    assert cycle[0] == cycle[-1]
    text = describe(cycle, edges)
    for hop in ("alpha -> beta", "beta -> gamma", "gamma -> alpha (gamma/__init__.py:2)"):
        assert hop in text
    del edges[("gamma", "alpha")]
    assert find_cycle(edges) is None
