"""Small, safe arithmetic for computed fields (`expr:` in a field mapping).

An expression is parsed with Python's own parser (`ast.parse`, which never runs
code) and then evaluated here, node by node, over a short allow-list: numbers,
record properties (dotted paths such as `stats.sent`), `+ - * /`, unary minus,
parentheses and the functions `round(x, digits)`, `abs`, `min`, `max` and
`coalesce`. Anything else (attribute calls, subscripts, comparisons, strings,
lambdas, ...) is refused when the mapping is loaded.

Evaluation is in `Decimal`. A null or absent operand makes the result null, and
so does a division by zero (`clicked / sent` with no sends is "no rate", not an
error); `coalesce(a, b, ...)` returns its first non-null argument. A value that
is not a number (a non-numeric string, a boolean, an object) is an error.
"""

from __future__ import annotations

import ast
import dataclasses
import decimal
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Callable

MAX_LENGTH: Final = 500
MAX_DIGITS: Final = 10
FUNCTIONS: Final = ("abs", "coalesce", "max", "min", "round")
_CONTEXT: Final = decimal.Context(prec=28, rounding=decimal.ROUND_HALF_UP)


class ExpressionError(ValueError):
    """An expression that cannot be compiled, or an operand that is no number."""


@dataclasses.dataclass(frozen=True)
class Expression:
    """A compiled expression: its text, syntax tree and the properties it reads."""

    text: str
    tree: ast.expr = dataclasses.field(compare=False, repr=False)
    names: tuple[str, ...] = ()

    def evaluate(self, lookup: Callable[[str], Any]) -> decimal.Decimal | None:
        """The value for one record; `lookup(path)` returns a property or None.

        Raises:
            ExpressionError: an operand that is not a number.
        """
        return _eval(self.tree, lookup)


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _check(node: ast.expr, names: list[str]) -> None:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            msg = f"only numbers are allowed as constants, not {node.value!r}"
            raise ExpressionError(msg)
        return
    path = _dotted(node)
    if path is not None:
        if path.split(".", 1)[0] in FUNCTIONS:
            msg = f"{path!r} is a function; call it with arguments"
            raise ExpressionError(msg)
        names.append(path)
        return
    if isinstance(node, ast.BinOp):
        if not isinstance(node.op, ast.Add | ast.Sub | ast.Mult | ast.Div):
            msg = "only + - * / are allowed"
            raise ExpressionError(msg)
        _check(node.left, names)
        _check(node.right, names)
        return
    if isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, ast.USub | ast.UAdd):
            msg = "only unary + and - are allowed"
            raise ExpressionError(msg)
        _check(node.operand, names)
        return
    if isinstance(node, ast.Call):
        _check_call(node, names)
        return
    msg = f"{type(node).__name__} is not allowed"
    raise ExpressionError(msg)


def _check_call(node: ast.Call, names: list[str]) -> None:
    func = node.func.id if isinstance(node.func, ast.Name) else None
    if func not in FUNCTIONS or node.keywords:
        msg = f"only the functions {', '.join(FUNCTIONS)} are allowed"
        raise ExpressionError(msg)
    arity = {"abs": (1, 1), "round": (1, 2)}.get(func, (1, 100))
    if not arity[0] <= len(node.args) <= arity[1]:
        msg = f"{func}() takes {arity[0]} to {arity[1]} arguments"
        raise ExpressionError(msg)
    if func == "round" and len(node.args) > 1:
        digits = node.args[1]
        if not (
            isinstance(digits, ast.Constant)
            and type(digits.value) is int
            and 0 <= digits.value <= MAX_DIGITS
        ):
            msg = f"round()'s digits must be a whole number 0 to {MAX_DIGITS}"
            raise ExpressionError(msg)
    for arg in node.args:
        _check(arg, names)


def compile_expression(text: object) -> Expression:
    """Parse and check an expression (no evaluation).

    Raises:
        ExpressionError: a syntax error or a construct outside the allow-list.
    """
    if not isinstance(text, str) or not text.strip():
        msg = "an expression must be a non-empty string"
        raise ExpressionError(msg)
    if len(text) > MAX_LENGTH:
        msg = f"an expression is at most {MAX_LENGTH} characters"
        raise ExpressionError(msg)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        msg = f"invalid expression {text!r}: {exc.msg}"
        raise ExpressionError(msg) from None
    names: list[str] = []
    try:
        _check(tree.body, names)
    except ExpressionError as exc:
        msg = f"invalid expression {text!r}: {exc}"
        raise ExpressionError(msg) from None
    return Expression(text=text, tree=tree.body, names=tuple(dict.fromkeys(names)))


def _number(path: str, value: object) -> decimal.Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool | dict | list):
        msg = f"{path!r} is {value!r}, not a number"
        raise ExpressionError(msg)
    try:
        number = decimal.Decimal(str(value).strip())
    except decimal.InvalidOperation:
        msg = f"{path!r} is {value!r}, not a number"
        raise ExpressionError(msg) from None
    if not number.is_finite():
        msg = f"{path!r} is {value!r}, not a finite number"
        raise ExpressionError(msg)
    return number


def _eval(node: ast.expr, lookup: Callable[[str], Any]) -> decimal.Decimal | None:
    if isinstance(node, ast.Constant):
        return decimal.Decimal(str(node.value))
    path = _dotted(node)
    if path is not None:
        return _number(path, lookup(path))
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, lookup)
        if operand is None:
            return None
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp):
        return _eval_binary(node, lookup)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return _call(node.func.id, node.args, lookup)
    # unreachable for a compiled expression: _check allows nothing else
    msg = f"{type(node).__name__} is not allowed"
    raise ExpressionError(msg)


def _eval_binary(
    node: ast.BinOp, lookup: Callable[[str], Any]
) -> decimal.Decimal | None:
    left = _eval(node.left, lookup)
    right = _eval(node.right, lookup)
    if left is None or right is None:
        return None
    if isinstance(node.op, ast.Add):
        return _CONTEXT.add(left, right)
    if isinstance(node.op, ast.Sub):
        return _CONTEXT.subtract(left, right)
    if isinstance(node.op, ast.Mult):
        return _CONTEXT.multiply(left, right)
    if right == 0:
        return None
    return _CONTEXT.divide(left, right)


def _call(
    func: str, args: list[ast.expr], lookup: Callable[[str], Any]
) -> decimal.Decimal | None:
    values = [_eval(arg, lookup) for arg in args]
    if func == "coalesce":
        return next((v for v in values if v is not None), None)
    if any(v is None for v in values):
        return None
    present = [v for v in values if v is not None]
    if func == "abs":
        return abs(present[0])
    if func == "min":
        return min(present)
    if func == "max":
        return max(present)
    digits = int(present[1]) if len(present) > 1 else 0
    return present[0].quantize(
        decimal.Decimal(1).scaleb(-digits), rounding=decimal.ROUND_HALF_UP
    )
