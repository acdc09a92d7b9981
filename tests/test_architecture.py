"""The package's shape: the layer order ARCHITECTURE.md states (a module imports only layers above its own), and
no module imports, directly or through others, a module that imports it back.

Every import statement counts, those inside functions included (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pdl

ROOT = Path(pdl.__file__).resolve().parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The pdl modules ``name`` imports: ``from a import b`` counts as a.b when that is a module, else a."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return {m for m in found if m in known and m != name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_checker_finds_a_cycle_and_reads_relative_and_lazy_imports(tmp_path: Path) -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    pkg = tmp_path / "pdl" / "sub"
    pkg.mkdir(parents=True)
    (pkg / "m.py").write_text("def f():\n    from ..errors import X\n    from . import other\n")
    known = {"pdl.errors", "pdl.sub.other", "pdl.sub.m", "pdl.sub"}
    assert imports("pdl.sub.m", pkg / "m.py", known) == {"pdl.errors", "pdl.sub.other"}


def test_no_module_of_pdl_imports_itself_back() -> None:
    found = modules()
    graph = {name: imports(name, path, set(found)) for name, path in found.items()}
    assert len(graph) > 20 and graph["pdl.loaders.process"] >= {"pdl.loaders.shm", "pdl.loaders.worker"}
    assert cycles(graph) == []


def test_the_core_never_imports_the_cli_typer_or_rich() -> None:
    """Layers: the library raises and returns; only ``pdl.cli`` prints (STYLE.md, habit 11)."""
    offenders = []
    for name, path in modules().items():
        if name.startswith("pdl.cli") or name == "pdl.__main__":  # the CLI, and `python -m pdl` that runs it
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module if not node.level else "." * node.level + node.module]
            offenders += [f"{name}: {n}" for n in names if n.split(".")[0] in ("typer", "rich") or ".cli" in n]
    assert offenders == []


def layers() -> dict[str, int]:
    """ARCHITECTURE.md's layer block: each line's names (before the description) → that line's number."""
    text = (ROOT.parent.parent / "ARCHITECTURE.md").read_text(encoding="utf-8")
    block = text.split("## Layers", 1)[1].split("```", 2)[1]
    order: dict[str, int] = {}
    level = 0
    for line in block.splitlines():
        names = line.split("  ", 1)[0].strip()
        if not names:
            continue  # a description's second line
        order |= {name.strip().rstrip("/"): level for name in names.split(",")}
        level += 1
    return order


def top(module: str) -> str:
    """The layer unit of a module: pdl.loaders.process → loaders; pdl → pdl."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def against_layers(graph: dict[str, set[str]], order: dict[str, int]) -> list[str]:
    """Every import that points up or sideways, as 'a → b (layer i → j)'; a unit missing from the order too."""
    found = []
    for name, deps in sorted(graph.items()):
        a = top(name)
        if a not in order:
            found.append(f"{name}: not in ARCHITECTURE.md's layers")
            continue
        for dep in sorted(deps):
            b = top(dep)
            if a != b and b in order and order[b] >= order[a]:
                found.append(f"{name} → {dep} (layer {order[a]} → {order[b]})")
    return found


def test_every_import_follows_the_layer_order_architecture_md_states() -> None:
    found = modules()
    graph = {name: imports(name, path, set(found)) for name, path in found.items()}
    order = layers()
    assert order["errors"] == 0 and order["loaders"] < order["measure"] < order["gate"] < order["report"] < order["cli"]
    assert against_layers(graph, order) == []


def test_a_planted_upward_import_is_named() -> None:
    found = modules()
    graph = {name: imports(name, path, set(found)) for name, path in found.items()}
    planted = {**graph, "pdl.records": graph["pdl.records"] | {"pdl.measure"}}  # records (data) importing measure
    order = layers()
    assert against_layers(planted, order) == [f"pdl.records → pdl.measure (layer {order['records']} → {order['measure']})"]
    sideways = {**graph, "pdl.gate": graph["pdl.gate"] | {"pdl.experiments"}}  # the same layer: not allowed either
    assert against_layers(sideways, order) == [f"pdl.gate → pdl.experiments (layer {order['gate']} → {order['gate']})"]
