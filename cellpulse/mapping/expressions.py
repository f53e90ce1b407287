"""The expression language of a mapping's columns: numbers, + - * /, parentheses, min(),
max(), first() and source columns, parsed with Python's own parser, checked against what is
allowed, and compiled to a polars expression."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable

import polars as pl

from cellpulse.echo import shown
from cellpulse.errors import MappingError

_BRACKETED = re.compile(r"\[([^\[\]]+)\]")
# first(a, b, …): the first of its arguments that is not null (a counter or its alternative).
_FUNCTIONS: dict[str, Callable[[list[pl.Expr]], pl.Expr]] = {
    "min": pl.min_horizontal,
    "max": pl.max_horizontal,
    "first": pl.coalesce,
}
# Bounds on an expression, so that parsing and compiling it can never exhaust the stack: a
# sum of a hundred counters nests a hundred deep, far more than an export needs.
MAX_EXPRESSION_CHARS = 4000
MAX_EXPRESSION_DEPTH = 100


# The syntax an expression may use: arithmetic on numbers, columns and calls.
_ALLOWED = (
    ast.Expression,
    ast.BinOp,
    ast.UnaryOp,
    ast.Constant,
    ast.Name,
    ast.Load,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.USub,
    ast.UAdd,
    ast.Call,
)


def parse_expression(text: str, target: str = "?") -> tuple[ast.Expression, dict[str, str]]:
    """Parse `100 * [RRU.PrbUsedDl] / [RRU.PrbAvailDl]`: numbers, + - * /, parentheses,
    min(...), max(...), first(...), and source columns in [brackets] (or bare if they are
    identifiers). Raises MappingError naming the target column and what is not allowed.

    Args:
        text: The expression as the mapping writes it.
        target: The contract column it feeds, for the error messages.

    Returns:
        The tree and every source column it reads, bare or bracketed (by the name the tree
        uses for it).
    """
    where = f"expression for {target}"
    if len(text) > MAX_EXPRESSION_CHARS:
        raise MappingError(
            f"{where}: {len(text)} characters, more than {MAX_EXPRESSION_CHARS}; split the "
            "computation or simplify it"
        )
    tree, bracketed = _parse_bracketed(text, where)
    if _depth(tree) > MAX_EXPRESSION_DEPTH:
        raise MappingError(f"{where}: nested more than {MAX_EXPRESSION_DEPTH} deep; simplify it")
    for node in ast.walk(tree):
        _check_node(node, where)
    return tree, bracketed | _bare_columns(tree, bracketed)


def _parse_bracketed(text: str, where: str) -> tuple[ast.Expression, dict[str, str]]:
    """The tree of `text` with each [bracketed column] replaced by an identifier
    (`__c0`, `__c1`, …), and those identifiers' column names."""
    names: dict[str, str] = {}

    def stash(m: re.Match[str]) -> str:
        key = f"__c{len(names)}"
        names[key] = m.group(1)
        return key

    try:
        return ast.parse(_BRACKETED.sub(stash, text), mode="eval"), names
    except SyntaxError as exc:
        raise MappingError(f"{where}: cannot parse {shown(text, 200)!r}") from exc
    except (RecursionError, MemoryError) as exc:
        raise MappingError(
            f"{where}: nested more than {MAX_EXPRESSION_DEPTH} deep; simplify it"
        ) from exc


def _check_node(node: ast.AST, where: str) -> None:
    """MappingError unless `node` is syntax an expression may use: a number, a column, an
    arithmetic operator, or a call of min, max or first with arguments."""
    if not isinstance(node, _ALLOWED):
        raise MappingError(
            f"{where}: {type(node).__name__} is not allowed "
            "(use numbers, columns, + - * /, min, max, first)"
        )
    if isinstance(node, ast.Constant) and not isinstance(node.value, int | float):
        raise MappingError(f"{where}: only numeric constants")
    if isinstance(node, ast.Call) and not (
        isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS
    ):
        raise MappingError(f"{where}: only min(), max() and first() may be called")
    if isinstance(node, ast.Call) and not node.args:
        assert isinstance(node.func, ast.Name)
        raise MappingError(f"{where}: {node.func.id}() needs at least one argument")


def _bare_columns(tree: ast.Expression, bracketed: dict[str, str]) -> dict[str, str]:
    """The source columns `tree` names without brackets: its identifiers that are neither
    called functions nor stand-ins for bracketed columns."""
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return {
        node.id: node.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and id(node) not in called and node.id not in bracketed
    }


def _depth(tree: ast.AST) -> int:
    """How deep `tree` nests, found without recursion (a deep tree is what is checked)."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def compile_expression(node: ast.AST, names: dict[str, str]) -> pl.Expr:
    """A checked tree (`parse_expression`) as a polars expression over the source columns
    `names` maps its identifiers to, computed in float64."""
    if isinstance(node, ast.Expression):
        return compile_expression(node.body, names)
    if isinstance(node, ast.Constant):
        assert isinstance(node.value, int | float)  # parse_expression allows nothing else
        return pl.lit(float(node.value))
    if isinstance(node, ast.Name):
        return as_number(pl.col(names[node.id]))
    if isinstance(node, ast.UnaryOp):
        inner = compile_expression(node.operand, names)
        return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)
        return _FUNCTIONS[node.func.id]([compile_expression(a, names) for a in node.args])
    assert isinstance(node, ast.BinOp)
    left, right = compile_expression(node.left, names), compile_expression(node.right, names)
    if isinstance(node.op, ast.Add):
        return left + right
    if isinstance(node.op, ast.Sub):
        return left - right
    if isinstance(node.op, ast.Mult):
        return left * right
    # A zero denominator gives null (not reported), never inf.
    return pl.when(right != 0).then(left / right).otherwise(None)


def as_number(expr: pl.Expr) -> pl.Expr:
    """`expr` read as a float64 number; text that is not a number becomes null."""
    return expr.cast(pl.Float64, strict=False)
