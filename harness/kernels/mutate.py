"""Single-point mutants of an implementation's source, made with Python's ast module (`python -m harness mutate`).

Each mutant changes one expression of the module's source text; the operator classes:

  operator     a + b <-> a - b, * <-> /, // -> /, % -> //, & <-> |, ^ -> |, >> <-> <<, -x -> x, not x -> x
  comparison   < <-> <=, > <-> >=, == <-> !=, is <-> is not, in <-> not in
  constant     an int n -> n + 1 and n - 1 (0 -> 1 only); a float c -> 2 c (0.0 -> 1.0)
  mask         mask=a & b -> mask=a and mask=b (a conjunct of a load or store mask dropped); mask=... removed
  fill         other=x -> other=1.0 (other=1.0 -> 0.0); float("-inf"), float("inf"), math.inf -> 0.0
  exp-scale    exp <-> exp2, log <-> log2 (a call's function, any module)
  range        range(a, b) -> range(a, b - 1) and range(a + 1, b); range(b) -> range(b - 1); static_range too
  swap         f(x, y, ...) -> f(y, x, ...) for two adjacent positional arguments

Which code is mutated: the entry function and every top-level function and constant of its module that it reaches
by name, transitively (a kernel the wrapper launches is mutated; another op's code in the same module is not).
Skipped: input validation (`raise` and `assert` statements, `if` blocks whose body only raises, calls of `check_*`
functions: conformance passes valid inputs only, and suites/conformance/test_bad_inputs.py covers them),
decorators, docstrings, strings, launch-tuning values (num_warps, num_stages, as keywords or dict entries: no
effect on the result), and
obviously equivalent swaps (the arguments of min/max/maximum/minimum, transpose/swapaxes/swapdims and promote_types, two
arguments that read the same).
"""
from __future__ import annotations

import ast
import difflib
import inspect
import random
from dataclasses import dataclass
from typing import Callable, Iterator

OPERATORS = ("operator", "comparison", "constant", "mask", "fill", "exp-scale", "range", "swap")

_BINOP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Div,
          ast.Mod: ast.FloorDiv, ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd, ast.BitXor: ast.BitOr,
          ast.RShift: ast.LShift, ast.LShift: ast.RShift}
_CMPOP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
          ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn, ast.NotIn: ast.In}
_EXP = {"exp": "exp2", "exp2": "exp", "log": "log2", "log2": "log"}
# calls whose two arguments can be swapped with no effect
_SYMMETRIC = {"min", "max", "maximum", "minimum", "transpose", "swapaxes", "swapdims", "promote_types"}
_TUNING = {"num_warps", "num_stages", "num_ctas", "maxnreg"}


@dataclass(frozen=True)
class Mutant:
    """One single-point mutant: `source` is the whole mutated module."""

    key: str  # stable across edits elsewhere in the file: "function:operator:original -> replacement[#n]"
    operator: str
    function: str
    line: int
    original: str
    replacement: str
    source: str

    def diff(self, original_source: str, path: str = "") -> str:
        """The unified diff of this mutant against the original module (one line of context)."""
        return "".join(difflib.unified_diff(original_source.splitlines(True), self.source.splitlines(True),
                                            f"a/{path}", f"b/{path}", n=1))


def entry_point(fn: Callable) -> tuple[str, str, str]:
    """(path, source, name) of the module that defines `fn` and the top-level name to start from."""
    fn = inspect.unwrap(fn)
    path = inspect.getsourcefile(fn)
    if path is None:
        raise ValueError(f"{getattr(fn, '__qualname__', fn)!r} has no Python source file to mutate")
    with open(path, encoding="utf-8") as f:
        source = f.read()
    return path, source, fn.__qualname__.split(".")[0]


def _top_level(tree: ast.Module) -> dict[str, ast.stmt]:
    out: dict[str, ast.stmt] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        out[name.id] = node
    return out


def reachable(tree: ast.Module, entry: str) -> list[ast.stmt]:
    """The top-level statements `entry` reaches by name, transitively, in source order."""
    defs = _top_level(tree)
    if entry not in defs:
        raise ValueError(f"{entry!r} is not a top-level function of the module")
    seen, todo = {id(defs[entry])}, [defs[entry]]
    while todo:
        for node in ast.walk(todo.pop()):
            if isinstance(node, ast.Name) and node.id in defs and id(defs[node.id]) not in seen:
                seen.add(id(defs[node.id]))
                todo.append(defs[node.id])
    return [node for node in tree.body if id(node) in seen]


def _name(func: ast.expr) -> str:
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _only_raises(body: list[ast.stmt]) -> bool:
    return all(isinstance(s, (ast.Raise, ast.Pass)) for s in body) and any(isinstance(s, ast.Raise) for s in body)


def _is_inf(node: ast.expr) -> bool:
    if isinstance(node, ast.Call) and _name(node.func) == "float" and len(node.args) == 1:
        arg = node.args[0]
        return isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value.strip("+-").lower() == "inf"
    return isinstance(node, ast.Attribute) and node.attr == "inf"


def _short(node: ast.AST, width: int = 60) -> str:
    text = " ".join(ast.unparse(node).split())
    return text if len(text) <= width else text[:width - 3] + "..."


def _const(value) -> ast.Constant:
    return ast.Constant(value=value)


class _Sites(ast.NodeVisitor):
    """Collects (node, operator, replacement node or None to drop a keyword, function) over the mutable code."""

    def __init__(self):
        self.sites: list[tuple[ast.AST, str, ast.AST, str, str]] = []
        self.function = "<module>"
        self.parents: dict[int, ast.AST] = {}

    def add(self, node, operator, new, desc: str = ""):
        self.sites.append((node, operator, new, self.function, desc))

    # ---- what is skipped
    def visit_FunctionDef(self, node):
        outer, self.function = self.function, node.name if self.function == "<module>" else self.function
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]  # the docstring
        for arg in node.args.defaults + node.args.kw_defaults:
            if arg is not None:
                self.visit(arg)
        for stmt in body:
            self.visit(stmt)
        self.function = outer

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        pass  # classes are not mutated (their methods would need an instance's reachability)

    def visit_Raise(self, node):
        pass

    def visit_Assert(self, node):
        pass

    def visit_If(self, node):
        if _only_raises(node.body):
            for stmt in node.orelse:
                self.visit(stmt)
            return
        self.generic_visit(node)

    def visit_JoinedStr(self, node):
        pass

    def visit_Dict(self, node):
        for key, value in zip(node.keys, node.values):
            if isinstance(key, ast.Constant) and key.value in _TUNING:
                continue  # {"num_warps": 4}: launch tuning, like the keyword
            if key is not None:
                self.visit(key)
            self.visit(value)

    # ---- mutation sites
    def visit_BinOp(self, node):
        new = _BINOP.get(type(node.op))
        if new is not None:
            self.add(node, "operator", ast.BinOp(node.left, new(), node.right))
        self.generic_visit(node)

    def visit_UnaryOp(self, node):
        if isinstance(node.op, (ast.USub, ast.Not, ast.Invert)):
            self.add(node, "operator", node.operand)
        if isinstance(node.op, ast.USub) and _is_inf(node.operand):
            self.add(node, "fill", _const(0.0))
            return
        self.generic_visit(node)

    def visit_BoolOp(self, node):
        self.add(node, "operator", ast.BoolOp(ast.Or() if isinstance(node.op, ast.And) else ast.And(), node.values))
        self.generic_visit(node)

    def visit_Compare(self, node):
        if len(node.ops) == 1 and type(node.ops[0]) in _CMPOP:
            self.add(node, "comparison", ast.Compare(node.left, [_CMPOP[type(node.ops[0])]()], node.comparators))
        self.generic_visit(node)

    def visit_Constant(self, node):
        v = node.value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return
        if isinstance(v, int):
            self.add(node, "constant", _const(v + 1))
            if v != 0:
                self.add(node, "constant", _const(v - 1))
        else:
            self.add(node, "constant", _const(v * 2 if v != 0 else 1.0))

    def visit_Call(self, node):
        name = _name(node.func)
        if name.startswith("check_"):
            return  # input validation
        if _is_inf(node):
            self.add(node, "fill", _const(0.0))
            return
        if name in _EXP and isinstance(node.func, ast.Attribute):
            self.add(node, "exp-scale", ast.Call(ast.Attribute(node.func.value, _EXP[name], ast.Load()),
                                                 node.args, node.keywords))
        if name in ("range", "static_range") and node.args and not node.keywords:
            args = node.args
            one = _const(1)
            stop = 1 if len(args) > 1 else 0
            shorter = [*args[:stop], ast.BinOp(args[stop], ast.Sub(), one), *args[stop + 1:]]
            self.add(node, "range", ast.Call(node.func, shorter, []))
            if len(args) > 1:
                self.add(node, "range", ast.Call(node.func, [ast.BinOp(args[0], ast.Add(), one), *args[1:]], []))
        positional = node.args
        if name not in _SYMMETRIC:
            for i in range(len(positional) - 1):
                a, b = positional[i], positional[i + 1]
                if isinstance(a, ast.Starred) or isinstance(b, ast.Starred) or ast.dump(a) == ast.dump(b):
                    continue
                swapped = list(positional)
                swapped[i], swapped[i + 1] = b, a
                self.add(node, "swap", ast.Call(node.func, swapped, node.keywords),
                         f"{_short(node.func)}(...): {_short(a)} <-> {_short(b)}")
        for kw in node.keywords:
            if kw.arg == "mask":
                self.add(node, "mask", ast.Call(node.func, node.args, [k for k in node.keywords if k is not kw]),
                         f"{_short(node.func)}(...): drop mask={_short(kw.value)}")
                if isinstance(kw.value, ast.BinOp) and isinstance(kw.value.op, ast.BitAnd):
                    for part in (kw.value.left, kw.value.right):
                        self.add(kw.value, "mask", part)
            elif kw.arg == "other":
                fill = 0.0 if isinstance(kw.value, ast.Constant) and kw.value.value == 1.0 else 1.0
                self.add(kw.value, "fill", _const(fill))
        for child in [node.func, *node.args]:
            self.visit(child)
        for kw in node.keywords:
            if kw.arg not in _TUNING and not (kw.arg == "other" and isinstance(kw.value, ast.Constant)):
                self.visit(kw.value)


def _segment(lines: list[bytes], node: ast.AST) -> tuple[int, int, int, int]:
    return node.lineno, node.col_offset, node.end_lineno, node.end_col_offset


def _splice(lines: list[bytes], pos: tuple[int, int, int, int], text: str) -> str:
    """Replace the (1-based lines, UTF-8 byte columns) span `pos` of `lines` by `text`."""
    l0, c0, l1, c1 = pos
    head, tail = lines[l0 - 1][:c0], lines[l1 - 1][c1:]
    return b"".join(lines[:l0 - 1] + [head + text.encode() + tail] + lines[l1:]).decode()


def _text(node: ast.AST) -> str:
    text = ast.unparse(node)
    simple = isinstance(node, (ast.Constant, ast.Name, ast.Attribute, ast.Call, ast.Subscript))
    negative = isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and node.value < 0
    return text if simple and not negative else f"({text})"


def _statement_lines(tree: ast.Module) -> dict[int, tuple[int, int]]:
    """For each line, the lines of its innermost statement (the header only, for a compound statement)."""
    out: dict[int, tuple[int, int]] = {}
    for stmt in ast.walk(tree):
        if not isinstance(stmt, ast.stmt):
            continue
        end = stmt.end_lineno
        bodies = [getattr(stmt, f) for f in ("body", "orelse", "finalbody", "handlers") if getattr(stmt, f, None)]
        if bodies and isinstance(bodies[0], list) and bodies[0] and hasattr(bodies[0][0], "lineno"):
            end = max(stmt.lineno, bodies[0][0].lineno - 1)
        for line in range(stmt.lineno, end + 1):
            out[line] = (stmt.lineno, end)  # ast.walk visits outer statements first: the innermost wins
    return out


def generate(source: str, entry: str, executed: set[int] | None = None) -> tuple[list[Mutant], int]:
    """Every mutant of the code `entry` reaches, in source order; and how many were left out because their line
    never ran (`executed`: the lines a run of the unmutated code executed; None: keep everything)."""
    tree = ast.parse(source)
    lines = source.encode().splitlines(keepends=True)
    visitor = _Sites()
    for stmt in reachable(tree, entry):
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            visitor.visit(stmt)
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)) and stmt.value is not None:
            visitor.visit(stmt.value)
    span = _statement_lines(tree)
    mutants, unrun, seen = [], 0, {}
    for node, operator, new, function, desc in visitor.sites:
        lo, hi = span.get(node.lineno, (node.lineno, node.end_lineno))
        if executed is not None and function != "<module>" and not any(n in executed for n in range(lo, hi + 1)):
            unrun += 1
            continue
        original = ast.get_source_segment(source, node) or ast.unparse(node)
        replacement = _text(new)
        if replacement == original or ast.unparse(new) == ast.unparse(node):
            continue
        if not desc:
            desc = f"{_short(node, 80)} -> {_short(new, 80)}"
        key = f"{function}:{operator}:{desc}"
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            key = f"{key}#{seen[key]}"
        mutated = _splice(lines, _segment(lines, node), replacement)
        try:
            compile(mutated, "<mutant>", "exec")
        except SyntaxError:
            continue
        mutants.append(Mutant(key, operator, function, node.lineno, original, replacement, mutated))
    return mutants, unrun


def sample(mutants: list[Mutant], max_mutants: int | None, seed: int) -> list[Mutant]:
    """At most `max_mutants` of `mutants`, drawn with `seed` (the same seed, the same sample), in source order."""
    if max_mutants is None or len(mutants) <= max_mutants:
        return list(mutants)
    picked = set(random.Random(seed).sample(range(len(mutants)), max_mutants))
    return [m for i, m in enumerate(mutants) if i in picked]


def iter_operators(mutants: list[Mutant]) -> Iterator[tuple[str, int]]:
    """(operator class, count) in OPERATORS order, for the classes that occur."""
    for op in OPERATORS:
        n = sum(m.operator == op for m in mutants)
        if n:
            yield op, n
