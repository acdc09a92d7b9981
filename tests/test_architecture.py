"""The package's shape: the layer order ARCHITECTURE.md states (a module imports only layers above its own), and
no module imports, directly or through others, a module that imports it back.

Every import statement counts, those inside functions included (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
import re
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
    assert len(graph) > 20 and graph["pdl.loaders.process"] >= {"pdl.loaders.ring", "pdl.loaders.worker"}
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


def layer_blocks() -> tuple[str, str]:
    """ARCHITECTURE.md's two blocks under "## Layers": the top-level order, then each package's own."""
    text = (ROOT.parent.parent / "ARCHITECTURE.md").read_text(encoding="utf-8")
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    blocks = section.split("```")[1::2]
    return blocks[0], blocks[1]


def layers() -> dict[str, dict[str, int]]:
    """Package ("pdl", "pdl.loaders", "pdl.loaders.peers", …) → its units (modules, subpackages, ``__init__``) →
    their layer number: the top block's lines, then each package line's ``→``-separated groups."""
    top_block, inner_block = layer_blocks()
    order: dict[str, dict[str, int]] = {"pdl": {}}
    level = 0
    for line in top_block.splitlines():
        names = line.split("  ", 1)[0].strip()
        if names:
            order["pdl"] |= {name.strip().rstrip("/"): level for name in names.split(",")}
            level += 1
    for line in inner_block.splitlines():
        if not line.strip():
            continue
        package, groups = line.split(None, 1)
        units = order.setdefault("pdl." + package.strip("/").replace("/", "."), {})
        for level, group in enumerate(groups.split("→")):
            units |= {name.strip().rstrip("/"): level for name in group.split(",")}
    return order


def packages() -> set[str]:
    return {module_name(p) for p in ROOT.rglob("__init__.py")}


def unit(module: str, package: str) -> str:
    """The unit of ``package`` that holds ``module``: pdl.loaders.peers.torch in pdl.loaders → peers; the
    package itself → __init__."""
    if module == package:
        return "__init__"
    return module[len(package) + 1 :].split(".")[0]


def against_layers(graph: dict[str, set[str]], order: dict[str, dict[str, int]]) -> list[str]:
    """Every import that points up or sideways, as 'a → b (package: unit i → unit j)'; a unit the order lacks too.

    An import is judged in the deepest package holding both modules (a package's ``__init__`` counts as inside it).
    """
    pkgs = packages()
    found = []
    for name, deps in sorted(graph.items()):
        for dep in sorted(deps):
            home = max(
                (p for p in pkgs if all(m == p or m.startswith(p + ".") for m in (name, dep))),
                key=len,
            )
            units = order.get(home)
            a, b = unit(name, home), unit(dep, home)
            if units is None or a not in units or b not in units:
                found.append(f"{name} → {dep}: {home} has no order for {a if units is None or a not in units else b}")
            elif a != b and units[b] >= units[a]:
                found.append(f"{name} → {dep} ({home}: {a} {units[a]} → {b} {units[b]})")
    return found


def test_every_import_follows_the_layer_order_architecture_md_states() -> None:
    found = modules()
    graph = {name: imports(name, path, set(found)) for name, path in found.items()}
    order = layers()
    top = order["pdl"]
    assert top["errors"] == 0 and top["data"] < top["loaders"] < top["bench"] < top["report"] < top["cli"]
    assert set(order) == packages()  # every package states its order
    assert against_layers(graph, order) == []


def test_every_module_is_in_its_package_order() -> None:
    order = layers()
    missing = [m for m in modules() if m != "pdl" and unit(m, m.rpartition(".")[0]) not in order[m.rpartition(".")[0]]]
    assert missing == []


def test_a_planted_upward_import_is_named() -> None:
    found = modules()
    graph = {name: imports(name, path, set(found)) for name, path in found.items()}
    order = layers()
    upward = {**graph, "pdl.data.codec": graph["pdl.data.codec"] | {"pdl.bench.timing"}}  # data importing bench
    assert against_layers(upward, order) == [
        f"pdl.data.codec → pdl.bench.timing (pdl: data {order['pdl']['data']} → bench {order['pdl']['bench']})"
    ]
    inside = {**graph, "pdl.bench.records": graph["pdl.bench.records"] | {"pdl.bench.timing"}}  # inside bench/
    assert against_layers(inside, order) == ["pdl.bench.records → pdl.bench.timing (pdl.bench: records 2 → timing 3)"]
    sideways = {**graph, "pdl.loaders.peers.torch": graph["pdl.loaders.peers.torch"] | {"pdl.loaders.peers.spdl"}}
    assert against_layers(sideways, order) == [
        "pdl.loaders.peers.torch → pdl.loaders.peers.spdl (pdl.loaders.peers: torch 1 → spdl 1)"
    ]


LIBRARY = (
    "pdl.loaders",
    "pdl.data.codec",
    "pdl.data.decoders",
    "pdl.data.folder",
    "pdl.data.lists",
    "pdl.data.pipeline",
    "pdl.data.protocol",
)
NOT_OURS = {"--shm-size"}  # docker's flag, named in the advice to enlarge /dev/shm


def flags_named(path: Path) -> list[str]:
    """The CLI flags (--name) a module's string literals name, docstrings left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef) and node.body
        and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }  # fmt: skip
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            found += [f for f in re.findall(r"(?<![\w-])--[a-z][a-z-]*", node.value) if f not in NOT_OURS]
    return found


def test_the_library_names_its_fields_not_the_cli_flags() -> None:
    """Loaders and datasets are used from training code: their errors name `num_workers`, not --workers; the CLI
    maps fields to its flags when it prints (``cli.common.as_flags``)."""
    offenders = {name: flags_named(path) for name, path in modules().items() if name.startswith(LIBRARY) and flags_named(path)}
    assert offenders == {}


def test_a_flag_in_a_loader_message_is_found(tmp_path: Path) -> None:
    planted = tmp_path / "m.py"
    planted.write_text('"""Says --timeout in its docstring: fine."""\nraise ValueError(f"stuck: raise --timeout")\n')
    assert flags_named(planted) == ["--timeout"]
