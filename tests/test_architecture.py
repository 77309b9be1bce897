"""The package's import structure, read from the source with ``ast`` (nothing is imported).

- No import cycle between tracemux modules, counting imports inside functions too (an
  import moved into a function to dodge a cycle is still a cycle). Imports under
  ``if TYPE_CHECKING:`` are not executed and are not counted.
- No module imports another module's ``_private`` name.
- The layering of docs/architecture.md: each layer imports only from the layers below it.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "tracemux"


@dataclass(frozen=True)
class Import:
    importer: str  # module doing the import
    module: str  # tracemux module imported
    name: str | None  # the name taken from it (``from m import name``), if not a module
    line: int


def _modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        found[".".join(parts)] = (path, is_package)
    return found


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST):
    """Every node but those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def imports_of(module: str) -> list[Import]:
    path, is_package = MODULES[module]
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    found.append(Import(module, alias.name, None, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                if submodule in MODULES:
                    found.append(Import(module, submodule, None, node.lineno))
                else:
                    found.append(Import(module, target, alias.name, node.lineno))
    return found


ALL_IMPORTS = [imp for module in MODULES for imp in imports_of(module)]


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for imp in ALL_IMPORTS:
        if imp.module in MODULES and imp.module != imp.importer:
            graph[imp.importer].add(imp.module)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def _describe(cycle: list[str], graph: dict[str, set[str]]) -> str:
    members = set(cycle)
    edges = [
        f"  {imp.importer} -> {imp.module} (line {imp.line})"
        for imp in ALL_IMPORTS
        if imp.importer in members and imp.module in members and imp.module != imp.importer
    ]
    return "cycle between " + ", ".join(cycle) + ":\n" + "\n".join(sorted(set(edges)))


def test_the_checker_sees_a_cycle_and_a_function_level_import() -> None:
    """The checker itself: a cycle through an import inside a function is found."""
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
    lazy = [imp for imp in ALL_IMPORTS if imp.importer == "tracemux.cli.bench"]
    assert any(imp.module.startswith("tracemux.bench") for imp in lazy)  # inside run()


def test_no_import_cycle_inside_tracemux() -> None:
    graph = _graph()
    cycles = find_cycles(graph)
    assert not cycles, "\n".join(_describe(cycle, graph) for cycle in cycles)


def test_no_module_imports_another_modules_private_name() -> None:
    private = [
        f"{imp.importer} imports {imp.name} from {imp.module} (line {imp.line})"
        for imp in ALL_IMPORTS
        if imp.name and imp.name.startswith("_") and not imp.name.startswith("__")
    ]
    assert not private, "\n".join(private)


#: docs/architecture.md's layers, lowest first: a module may import only from its own
#: layer or a lower one. Modules are matched by the longest prefix listed.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "leaf",
        (
            "tracemux.errors",
            "tracemux.version",
            "tracemux.envparse",
            "tracemux.ratelimit",
            "tracemux.context",
            "tracemux.reaper",
        ),
    ),
    ("record", ("tracemux.model", "tracemux.capture", "tracemux.redact", "tracemux.cost")),
    ("destination interface", ("tracemux.destinations.base", "tracemux.destinations.spanmap")),
    ("destinations", ("tracemux.destinations", "tracemux.clients", "tracemux.transfer")),
    ("pipeline", ("tracemux.pipeline",)),
    ("configuration", ("tracemux.config",)),
    ("service", ("tracemux.service", "tracemux.decorators")),
    ("integrations", ("tracemux.integrations",)),
    ("package", ("tracemux",)),
    (
        "tools",
        (
            "tracemux.cli",
            "tracemux.ui",
            "tracemux.bench",
            "tracemux.threadleak",
            "tracemux.__main__",
        ),
    ),
]


def layer_of(module: str) -> int:
    best = (-1, -1)  # (prefix length, layer)
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best[0]:
                best = (len(prefix), rank)
    if best[1] < 0:
        raise AssertionError(f"{module} is in no layer of docs/architecture.md")
    return best[1]


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        layer_of(module)


def test_imports_only_go_down_the_layers() -> None:
    upward = []
    for imp in ALL_IMPORTS:
        if imp.module not in MODULES:
            continue
        low, high = layer_of(imp.importer), layer_of(imp.module)
        if high > low:
            upward.append(
                f"{imp.importer} ({LAYERS[low][0]}) imports {imp.module} "
                f"({LAYERS[high][0]}) line {imp.line}"
            )
    assert not upward, "\n".join(upward)
