"""The seams hold: modality-specific code lives in ``discotok/modalities/``, roles call each other through
their contracts, and the package's module-level imports form no cycle.

Read from the source (``ast``), so a new branch on a modality's name, a new signature probe or a new
import cycle fails here with the file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import discotok

PACKAGE = Path(discotok.__file__).parent
MODALITY_NAMES = {"image", "audio", "video"}
ROLES = ("encoder", "decoder", "quantizer", "modality")


def sources() -> dict[str, ast.Module]:
    """Every module of the package: dotted name -> parsed tree."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text(), filename=str(path))
    return out


def where(name: str, node: ast.AST) -> str:
    return f"{name}:{node.lineno}"


def test_no_modality_name_is_compared_outside_the_modalities():
    found = []
    for name, tree in sources().items():
        if name.startswith("discotok.modalities"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                parts = [node.left, *node.comparators]
                if any(isinstance(p, ast.Constant) and p.value in MODALITY_NAMES for p in parts):
                    found.append(where(name, node))
            elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
                if node.slice.value in MODALITY_NAMES:  # a table keyed by modality name
                    found.append(where(name, node))
    assert found == []


def test_components_are_not_probed_by_signature_or_attribute():
    found = []
    for name, tree in sources().items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if ast.unparse(func) == "inspect.signature" and name != "discotok.registry":
                found.append(where(name, node))  # inspect.signature: only the registry checks keyword arguments
            if isinstance(func, ast.Name) and func.id in ("getattr", "hasattr") and node.args:
                target = ast.unparse(node.args[0])
                if any(role in target for role in ROLES):
                    found.append(f"{where(name, node)} {ast.unparse(node)}")
    assert found == []


def module_imports(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """The package modules ``name`` imports when it is imported (top level, ``TYPE_CHECKING`` blocks left out)."""
    out = set()
    package = name if name in known and any(k.startswith(name + ".") for k in known) else name.rpartition(".")[0]
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                if target in known:
                    out.add(target)
                elif base in known:
                    out.add(base)
    return out - {name}


def test_the_import_graph_has_no_cycle():
    trees = sources()
    known = set(trees)
    graph = {name: module_imports(name, tree, known) for name, tree in trees.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert cycles == []


def test_the_ground_floor_imports_nothing_above_it():
    trees = sources()
    known = set(trees)
    ground = ("discotok.layout", "discotok.registry", "discotok.encoders.base", "discotok.decoders.base",
              "discotok.modalities.base")
    allowed = {"discotok.layout", "discotok.registry", "discotok.atomic"}
    for name in ground:
        above = module_imports(name, trees[name], known) - allowed
        assert above == set(), f"{name} imports {sorted(above)}"


def room(module: str) -> str:
    """The folder (``discotok.eval``) or top-level module (``discotok.layout``) a module belongs to."""
    return ".".join(module.split(".")[:2])


def test_folders_import_each_other_in_one_direction():
    """Every import anywhere in a file (inside functions and ``TYPE_CHECKING`` blocks too) counts: no folder
    reaches back to one that reaches it, so the package reads as floors."""
    trees = sources()
    edges: dict[str, set[str]] = {}
    for name, tree in trees.items():
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [node.module]
            for target in targets:
                if target.startswith("discotok.") and room(target) != room(name) and room(name) != "discotok":
                    edges.setdefault(room(name), set()).add(room(target))
    reach: dict[str, set[str]] = {}

    def reachable(start: str) -> set[str]:
        if start not in reach:
            reach[start] = set()
            todo = list(edges.get(start, ()))
            while todo:
                nxt = todo.pop()
                if nxt not in reach[start]:
                    reach[start].add(nxt)
                    todo += edges.get(nxt, ())
        return reach[start]

    back = sorted(f"{a} -> {b}" for a, targets in edges.items() for b in targets if a in reachable(b))
    assert back == []
