"""The package's shape, read from its source: imports run downhill through the layers, there is
no import cycle, and no module outside ``engine/`` uses a private name of another module."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "jinaclip_integrations"

#: the layers, lowest first; a module may import its own layer and those below it
LAYERS: list[tuple[str, ...]] = [
    ("errors", "_lazy", "_version", "progress", "settings"),
    ("engine",),
    ("fusion", "store", "ingest"),
    ("vectorizer", "qdrant", "weaviate.store", "weaviate.collection", "ray", "server"),
    ("_adapter", "langchain", "llama_index", "weaviate", "remote", "chroma"),
    ("cli",),
]


#: how the graph names the package's own ``__init__``
FACADE = "jinaclip_integrations"


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name relative to it (``qdrant.edge``); packages by
    their folder's name (``engine``). The package's own ``__init__`` (its lazy facade) is left out."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts:
            found[".".join(parts)] = path
    return found


def layer(name: str) -> int:
    """The layer of a module: that of the longest prefix named in :data:`LAYERS`."""
    best = None
    for level, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and (best is None or len(prefix) > len(best[1])):
                best = (level, prefix)
    assert best is not None, f"{name} is in no layer"
    return best[0]


def _runtime_nodes(tree: ast.AST):
    """Every node outside ``if TYPE_CHECKING:`` blocks (imports for type hints only)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def imports(name: str, path: Path) -> list[tuple[str, list[str]]]:
    """``(imported module, names taken from it)`` for every import of the package's own modules,
    at module level or inside functions (lazy imports are dependencies too)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = []
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if not (node.module or "").startswith("jinaclip_integrations"):
                    continue
                base = node.module.split(".")[1:]
            else:
                base = package[: len(package) - node.level + 1] + (node.module.split(".") if node.module else [])
            found.append((".".join(base), [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(alias.name.split(".", 1)[1], []) for alias in node.names if alias.name.startswith("jinaclip_integrations.")]  # fmt: skip
    return found


def graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (a name taken from a package that is itself a
    module, ``from .ingest import items``, counts as that module)."""
    known = modules()
    edges: dict[str, set[str]] = {}
    for name, path in known.items():
        targets = set()
        for module, names in imports(name, path):
            for taken in names or [""]:
                full = f"{module}.{taken}" if module else taken
                targets.add(full if full in known else module or FACADE)
        edges[name] = {t for t in targets if t != name}
    return edges


def test_no_module_imports_the_package_facade_or_above_its_layer():
    wrong = []
    for name, targets in graph().items():
        for target in targets:
            if target not in modules():
                wrong.append(f"{name} imports the package's facade")
            elif layer(target) > layer(name):
                wrong.append(f"{name} (layer {layer(name)}) imports {target} (layer {layer(target)})")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycle():
    edges, state, cycles = graph(), {}, []

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                cycles.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


def test_no_private_name_is_used_across_modules_outside_the_engine():
    wrong = []
    for name, path in modules().items():
        for module, names in imports(name, path):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            inside_engine = name.startswith("engine") and module.startswith("engine")
            if private and module != name and not inside_engine:
                wrong.append(f"{name} imports {private} from {module}")
            if module.startswith("engine.") and not name.startswith("engine"):
                wrong.append(f"{name} imports the engine's submodule {module} (use jinaclip_integrations.engine)")
    assert not wrong, "\n".join(wrong)
