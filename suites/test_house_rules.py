"""House rules, checked from the source alone (suites/house_rules.py: AST, nothing imported or run): the modules of
reference/, optimized/, harness/, fixtures/, ci/ and suites/ (every subpackage and subfolder) import each other
without a cycle (function-local imports included), none uses another module's private `_` names, and harness/ keeps
its layers: core modules at the top, family packages that never import each other, the leaderboard build and the
CLI above them; suites/harness/ mirrors its packages. The checker itself must report a planted cycle, planted
private imports and planted layer breaks, so a quiet result means something."""
from __future__ import annotations

import textwrap
from pathlib import Path

from suites.house_rules import (FAMILIES, PACKAGES, find_cycles, harness_group, import_graph, layer_violations,
                                 modules, private_imports)

ROOT = Path(__file__).resolve().parent.parent


def test_project_modules_have_no_import_cycle():
    graph = import_graph(ROOT)
    assert len(graph) > 100 and sum(map(len, graph.values())) > 200, "the scan found too few modules or imports"
    cycles = find_cycles(graph)
    assert not cycles, "import cycles (move what both sides need into a module both import):\n" + "\n".join(
        " -> ".join(c) for c in cycles)


def test_no_module_uses_another_modules_private_names():
    found = private_imports(ROOT)
    assert not found, ("private names used outside their module (give the shared helper a public name and a "
                       "docstring, move it where it belongs, or test through the public API):\n"
                       + "\n".join(map(str, found)))


def test_every_project_package_is_scanned():
    names = modules(ROOT)
    for top in ("reference", "optimized", "harness", "fixtures", "suites"):
        assert any(n == top or n.startswith(top + ".") for n in names), top
    assert "harness.boards.leaderboard" in names and "reference.kv" in names and "ci.tune_fourier_spectral" in names
    assert {"harness.kv.run_niah", "harness.executors.local", "suites.harness.core.test_cli"} <= set(names)  # nested
    assert set(PACKAGES) >= {"reference", "optimized", "harness", "fixtures", "ci"}


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


PLANTED = {
    "pkg/__init__.py": '"""A package whose modules break both rules."""\n',
    # a -> b (module level) -> c (inside a function) -> a (relative import): one cycle of three
    "pkg/a.py": """
        from pkg.b import helper

        def _secret():
            return 1

        def _other():
            return 2
        """,
    "pkg/b.py": """
        def helper():
            from pkg import c
            return c
        """,
    "pkg/c.py": """
        import pkg.a
        from . import a as alias
        from pkg.a import _secret

        def use(monkeypatch):
            monkeypatch.setattr(alias, "_other", None)
            return pkg.a._other() + _secret()
        """,
    # fine: its own private names, a dunder, a third-party private name, a sibling's public name
    "pkg/d.py": """
        from os import _exit
        from pkg.e import __doc__ as doc, public

        def _mine():
            return public, doc, _exit

        VALUE = _mine()
        """,
    "pkg/e.py": """
        def public():
            return 0
        """,
    # a folder without __init__.py (scripts, tests): a bare sibling import is still an edge
    "scripts/one.py": "import two\n",
    "scripts/two.py": "from one import _hidden\n",
}


def test_checker_reports_a_planted_cycle_and_private_imports(tmp_path):
    _write(tmp_path, PLANTED)
    packages = ("pkg", "scripts")
    graph = import_graph(tmp_path, packages)
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.c"} and graph["pkg.c"] == {"pkg.a"}
    cycles = sorted(find_cycles(graph))
    assert cycles == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"], ["scripts.one", "scripts.two", "scripts.one"]], cycles

    found = sorted(str(v) for v in private_imports(tmp_path, packages))
    assert found == [
        "pkg/c.py:4: from pkg.a import _secret",
        "pkg/c.py:7: setattr(alias, '_other') (private to pkg.a)",
        "pkg/c.py:8: pkg.a._other (private to pkg.a)",
        "scripts/two.py:1: from scripts.one import _hidden",
    ], found


def test_checker_is_quiet_on_a_clean_package(tmp_path):
    _write(tmp_path, {k: v for k, v in PLANTED.items() if k in ("pkg/__init__.py", "pkg/d.py", "pkg/e.py")})
    graph = import_graph(tmp_path, ("pkg",))
    assert graph["pkg.d"] == {"pkg.e"}
    assert find_cycles(graph) == [] and private_imports(tmp_path, ("pkg",)) == []


def test_harness_keeps_its_layers():
    """Core imports no family; a family imports core, lm and the boards' page helpers, never another family; the
    leaderboard build and the CLI sit above what they assemble; reference and optimized never import harness."""
    graph = import_graph(ROOT)
    assert {harness_group(n) for n in graph if n.startswith("harness.")} == {
        "core", "lm", "boards", *FAMILIES, "boards build", "entry"}
    found = layer_violations(graph)
    assert not found, ("imports across the layers of harness/ (move what both sides need down a layer, into core or "
                       "the boards' page helpers, or let the CLI or the build join them):\n" + "\n".join(found))


def test_layer_checker_reports_planted_breaks():
    graph = {
        "harness.store": {"harness.kv.niah"},  # core -> a family
        "harness.kv.niah": {"harness.store", "harness.lm.model", "harness.boards.page", "harness.kv.ruler"},  # fine
        "harness.kv.ruler": {"harness.dllm.tasks"},  # a family -> another family
        "harness.dllm.tasks": set(),
        "harness.lm.model": {"harness.boards.page"},  # lm -> the page helpers: same layer, another group
        "harness.boards.page": set(),
        "harness.boards.leaderboard": {"harness.kv.niah", "harness.boards.page"},  # the build: fine
        "harness.boards.pareto_rows": {"harness.boards.leaderboard"},  # a page helper -> the build
        "harness.cli": {"harness.boards.leaderboard", "harness.kv.niah"},  # fine
        "harness.helpers": set(),  # a new top-level module nobody placed
        "reference.kv": {"harness.store"},  # reference -> harness
        "suites.test_x": {"harness.cli", "harness.kv.niah"},  # tests may import anything
    }
    assert layer_violations(graph) == [
        "harness.boards.pareto_rows (boards, layer 1) imports harness.boards.leaderboard (boards build, layer 3)",
        "harness.helpers has no layer (put it in a family package, or name it in HARNESS_CORE)",
        "harness.kv.ruler (kv, layer 2) imports harness.dllm.tasks (dllm, layer 2)",
        "harness.lm.model (lm, layer 1) imports harness.boards.page (boards, layer 1)",
        "harness.store (core, layer 0) imports harness.kv.niah (kv, layer 2)",
        "reference.kv imports harness.store (reference and optimized never import harness)",
    ]


def test_harness_tests_mirror_its_packages():
    """suites/harness/ holds one folder per package of harness/ (core for the modules at the top), each with tests,
    and no test file of its own; the shared helpers and conftest.py stay beside the folders."""
    harness, tests = ROOT / "harness", ROOT / "suites" / "harness"
    packages = {p.name for p in harness.iterdir() if (p / "__init__.py").is_file()} - {"executors", "suites"}
    folders = {p.name for p in tests.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == packages | {"core"}, folders ^ (packages | {"core"})
    assert all(any((tests / f).glob("test_*.py")) for f in folders)
    assert not list(tests.glob("test_*.py")), "a test at the top of suites/harness/: put it in its package's folder"
