"""The import graph of first-party packages, function-level imports included, and its cycles."""

from __future__ import annotations

import ast
from pathlib import Path


def find_modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module of `package` under `root`."""
    found: dict[str, Path] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _is_type_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join([*parts, *([node.module] if node.module else [])])


def read_imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The known modules `module` imports anywhere in its body (not under `if TYPE_CHECKING`)."""
    imported: set[str] = set()
    is_package = path.name == "__init__.py"

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if _is_type_only(child):
                continue
            if isinstance(child, ast.Import):
                imported.update(alias.name for alias in child.names if alias.name in known)
            elif isinstance(child, ast.ImportFrom):
                base = _absolute(module, is_package, child)
                for alias in child.names:
                    name = f"{base}.{alias.name}"
                    if name in known:
                        imported.add(name)
                    elif base in known:
                        imported.add(base)
            visit(child)

    visit(ast.parse(path.read_text()))
    imported.discard(module)
    return imported


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return cycles


def import_cycles(packages: list[tuple[Path, str]]) -> list[list[str]]:
    """The import cycles among the modules of the given (root, package) pairs."""
    modules: dict[str, Path] = {}
    for root, package in packages:
        modules.update(find_modules(root, package))
    known = set(modules)
    return find_cycles({name: read_imports(name, path, known) for name, path in modules.items()})
