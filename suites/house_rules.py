"""House rules read from the source alone (AST; nothing is imported or executed): the project's modules import each
other without cycles, no module uses another module's private `_` names, and harness/ keeps its layers.

`import_graph(root, packages)` builds the graph of every import between project modules (every .py file under the
named folders, subpackages included), function-local imports included; `find_cycles(graph)` returns each cycle as a
path `a -> b -> ... -> a`; `private_imports(root, packages)` lists `from x import _y`, `x._y` (x a project module
bound by an import) and `setattr/getattr/monkeypatch.setattr(x, "_y")` where `_y` is private to another module;
`layer_violations(graph)` lists the imports that break the layers of harness/ (core; lm and the boards' page
helpers; the families kv, kernels, dllm, scheduling, which never import each other; the leaderboard build; the
CLI and the registered suites). Run `python -m suites.house_rules` for a report.
"""
from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("reference", "optimized", "harness", "fixtures", "ci", "suites")


@dataclass(frozen=True)
class Module:
    name: str  # dotted, e.g. "harness.store"; a package is named by its __init__.py
    path: Path
    is_package: bool


@dataclass(frozen=True)
class Violation:
    where: str  # "path:line"
    text: str

    def __str__(self) -> str:
        return f"{self.where}: {self.text}"


def modules(root: Path, packages=PACKAGES) -> dict[str, Module]:
    """Every .py file under the named top-level folders of `root`, by dotted name."""
    found = {}
    for top in packages:
        base = root / top
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if any(p.startswith(".") or p == "__pycache__" for p in parts):
                continue
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            found[".".join(parts)] = Module(".".join(parts), path, is_package)
    return found


def _parse(module: Module) -> ast.Module:
    return ast.parse(module.path.read_text(encoding="utf-8"), filename=str(module.path))


def _package_of(module: Module) -> str:
    return module.name if module.is_package else module.name.rpartition(".")[0]


def _resolve(name: str, module: Module, known: dict[str, Module]) -> str | None:
    """The project module an absolute dotted name refers to (the longest known prefix), or None for a third-party
    module. In a folder without __init__.py (scripts, test folders: their runner puts the folder on sys.path), a
    bare name is also tried as a file beside this one."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in known:
            return ".".join(parts[:end])
    folder = _package_of(module)
    if folder and folder not in known:  # not a package: a sibling file is importable by its bare name
        for end in range(len(parts), 0, -1):
            candidate = ".".join([folder, *parts[:end]])
            if candidate in known:
                return candidate
    return None


def _from_base(node: ast.ImportFrom, module: Module) -> str:
    """The absolute module name a `from ... import` reads from (relative levels resolved)."""
    if not node.level:
        return node.module or ""
    package = _package_of(module).split(".") if _package_of(module) else []
    base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: Module, tree: ast.Module, known: dict[str, Module]):
    """(line, project module imported, {local name: project module} it binds, names imported from it) for every
    import statement of the file that reaches a project module: at module level, in a function, a class or an `if`.
    Third-party imports are skipped; `importlib.import_module(...)` (plugin loading at run time) is not a statement
    and not counted."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name, module, known)
                if target is None:
                    continue
                if alias.asname:
                    binding = {alias.asname: target}
                else:  # `import a.b.c` binds `a`; `a.b.c` is then reached by attribute access
                    top = alias.name.split(".")[0]
                    binding = {top: _resolve(top, module, known) or top}
                yield node.lineno, target, binding, ()
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(node, module)
            base_target = _resolve(base, module, known) if base else None
            for alias in node.names:
                sub = _resolve(f"{base}.{alias.name}", module, known) if base else None
                if sub is not None and sub != base_target:  # `from package import submodule`
                    yield node.lineno, sub, {alias.asname or alias.name: sub}, ()
                elif base_target is not None:  # `from module import name`
                    yield node.lineno, base_target, {}, (alias.name,)


def import_graph(root: Path, packages=PACKAGES) -> dict[str, set[str]]:
    """module -> the project modules it imports (at module level or inside a function, class or `if`)."""
    known = modules(root, packages)
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, module in known.items():
        for _, target, _, _ in _imports(module, _parse(module), known):
            if target != name:
                graph[name].add(target)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module, as a path that returns to its start."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph) + 100))

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_in(component, graph) for component in components]


def _cycle_in(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first within the component)."""
    members, start = set(component), component[0]
    parent = {start: None}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    path = [v]
                    while parent[path[-1]] is not None:
                        path.append(parent[path[-1]])
                    return [start, *reversed(path[:-1]), start] if len(path) > 1 else [start, v, start]
                if w not in parent:
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    return component  # unreachable for a strongly connected component


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _dotted(node: ast.expr) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(parts)]
    return None


def private_imports(root: Path, packages=PACKAGES) -> list[Violation]:
    """Every use of a private name of another project module: `from x import _y`, `import x._y`, `x._y`, and
    `setattr(x, "_y", ...)` / `getattr(x, "_y")` / `monkeypatch.setattr(x, "_y", ...)` where x is a bound module."""
    known = modules(root, packages)
    found = []
    for name, module in known.items():
        tree = _parse(module)
        where = module.path.relative_to(root).as_posix()
        bound: dict[str, str] = {}  # local name -> project module (file-wide: good enough for a lint)
        for line, target, binding, names in _imports(module, tree, known):
            bound.update(binding)
            for imported in names:
                if _is_private(imported) and target != name:
                    found.append(Violation(f"{where}:{line}", f"from {target} import {imported}"))
            for local, mod in binding.items():
                if any(_is_private(p) for p in mod.split(".")[1:]) and mod != name and not mod.startswith(name + "."):
                    found.append(Violation(f"{where}:{line}", f"imports private module {mod}"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _is_private(node.attr):
                chain = _dotted(node)
                if chain is None or chain[0] not in bound:
                    continue
                owner = ".".join([bound[chain[0]], *chain[1:-1]])
                owner = _resolve(owner, module, known) or owner
                if owner in known and owner != name:
                    found.append(Violation(f"{where}:{node.lineno}", f"{'.'.join(chain)} (private to {owner})"))
            elif isinstance(node, ast.Call) and len(node.args) >= 2:
                func = _dotted(node.func)
                if not func or func[-1] not in ("setattr", "getattr", "delattr", "hasattr"):
                    continue
                target, attr = node.args[0], node.args[1]
                chain = _dotted(target)
                if (isinstance(attr, ast.Constant) and isinstance(attr.value, str) and _is_private(attr.value)
                        and chain and chain[0] in bound):
                    owner = ".".join([bound[chain[0]], *chain[1:]])
                    owner = _resolve(owner, module, known) or owner
                    if owner in known and owner != name:
                        found.append(Violation(f"{where}:{node.lineno}",
                                               f"{func[-1]}({'.'.join(chain)}, {attr.value!r}) (private to {owner})"))
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                func = _dotted(node.func)  # monkeypatch.setattr("pkg.mod._name", ...)
                value = node.args[0].value
                if func and func[-1] in ("setattr", "delattr") and isinstance(value, str) and "." in value:
                    *mod_parts, attr = value.split(".")
                    owner = _resolve(".".join(mod_parts), module, known)
                    if owner and owner != name and _is_private(attr) and owner == ".".join(mod_parts):
                        found.append(Violation(f"{where}:{node.lineno}", f"{func[-1]}({value!r}) (private to {owner})"))
    return found


# ---------------------------------------------------------------- layers of harness/
# harness/ is core modules at the top and family packages. Each module has a layer and a group; an import goes to a
# lower layer, or stays inside its group. So families never import each other, the core imports no family, and the
# build and the entry points sit above everything they assemble. reference/ and optimized/ import no harness module.
FAMILIES = ("kv", "kernels", "dllm", "scheduling")
HARNESS_CORE = ("argtypes", "checks", "cpu_load", "executors", "gpu_timing", "provenance", "stats", "store", "suite", "worker_cache")
BOARDS_BUILD = ("leaderboard", "pareto_board")  # the rest of harness.boards is what every family's boards use
HARNESS_ENTRY = ("__main__", "cli", "suites")
LAYERS = {  # group -> layer
    "core": 0, "lm": 1, "boards": 1, **{family: 2 for family in FAMILIES}, "boards build": 3, "entry": 4}


def harness_group(name: str) -> str | None:
    """The group of a harness module (a key of LAYERS); None outside harness/ or for an unplaced module."""
    parts = name.split(".")
    if parts[0] != "harness" or len(parts) == 1:
        return "core" if parts == ["harness"] else None
    top = parts[1]
    if top in HARNESS_CORE:
        return "core"
    if top in HARNESS_ENTRY:
        return "entry"
    if top == "boards":
        return "boards build" if len(parts) > 2 and parts[2] in BOARDS_BUILD else "boards"
    if top == "lm" or top in FAMILIES:
        return top
    return None


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import that breaks the layers of harness/ (an import upward, or sideways into another group), every
    harness module with no group (a new top-level module must be placed: a family package, or HARNESS_CORE), and
    every import of harness from reference/ or optimized/."""
    found = []
    for name in sorted(graph):
        group = harness_group(name)
        if name.split(".")[0] in ("reference", "optimized"):
            found += [f"{name} imports {t} (reference and optimized never import harness)"
                      for t in sorted(graph[name]) if t.split(".")[0] == "harness"]
            continue
        if name.split(".")[0] != "harness":
            continue
        if group is None:
            found.append(f"{name} has no layer (put it in a family package, or name it in HARNESS_CORE)")
            continue
        for target in sorted(graph[name]):
            other = harness_group(target)
            if other is None or other == group or LAYERS[other] < LAYERS[group]:
                continue
            found.append(f"{name} ({group}, layer {LAYERS[group]}) imports {target} ({other}, layer {LAYERS[other]})")
    return found


def report(root: Path, packages=PACKAGES) -> str:
    graph = import_graph(root, packages)
    cycles = find_cycles(graph)
    private = private_imports(root, packages)
    layers = layer_violations(graph)
    lines = [f"{len(cycles)} import cycle(s)"] + ["  " + " -> ".join(c) for c in cycles]
    lines += [f"{len(private)} use(s) of another module's private names"] + [f"  {v}" for v in private]
    lines += [f"{len(layers)} import(s) across the layers of harness/"] + [f"  {v}" for v in layers]
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(Path(__file__).resolve().parent.parent))
