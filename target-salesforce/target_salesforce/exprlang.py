"""The mapping expression language: stream-map syntax (simpleeval) over one record.

target-clevertap's `when:` and target-salesforce's `when:` and `expr:` are written in
it. It is singer-sdk's stream-map language (Python expression syntax, evaluated by
simpleeval as `stream_maps` are), with the same names where the two overlap: a field
by name, `record` (or `_`: `record['First Name']`, `record.get('x')`), `config`,
`True`/`False`/`None`, and the stream-map functions `md5`, `sha256`, `datetime`,
`json`, `bool`, `int`, `float`, `str` (not `rand`/`randint`: a rerun must build the
same payloads). What the presets need beyond stream maps:

- a field absent from the record (or a dotted path through a missing value) is None;
- null-safe comparisons: an ordering with a None side is false, `==`/`!=` compare
  None by identity; numbers compare by value (`5 == 5.0 == Decimal('5.00')`, and
  `Amount == '12'` for numeric text); a date-time against a date text compares the
  date (`CloseDate >= '2024-01-15'`); `in [...]` uses the same equality;
- decimals: `+ - * /` in `Decimal` (28 digits, half-up; numeric text counts, other
  non-numbers are an error); a None operand or a division by zero gives None;
  `round(x, digits)`, `abs`, `min`, `max` (None when an argument is), `coalesce`;
- change tracking: `changed(Field)` (Field differs from the value remembered for the
  record when last seen; false on a first sighting, when Field is absent, or not yet
  remembered) and `previous(Field)` (that value, None when unknown).

Anything else (imports, lambdas, `**`, `x if c else y`, keyword arguments, other
methods, private names) is refused when the mapping loads, before any record.

Why one copy per target: each plugin installs on its own (`pip install
target-clevertap`, or Meltano's `pip_url: -e ./target-clevertap`); a third
distribution for one module would have to be published and versioned in step with
both. So `target_clevertap/exprlang.py` and `target_salesforce/exprlang.py` are the
same file, byte for byte (`tests/test_packages.py` checks it): change both.
"""

from __future__ import annotations

import ast
import contextlib
import datetime as dt
import decimal
import hashlib
import json
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Final

import simpleeval

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping


def _words(text: str) -> set[str]:
    return set(text.split())


MAX_LENGTH: Final = 1000
MAX_DIGITS: Final = 10
RECORD_NAMES: Final = frozenset({"record", "_"})  #: the names of the record itself
TRACKING: Final = frozenset({"changed", "previous"})  #: take a bare field name
#: read-only methods a call may use (`record.get('x')`, `Name.lower()`, ...)
METHODS: Final = frozenset(
    _words("get lower upper strip startswith endswith isoformat date fromisoformat")
    | {"loads", "dumps"}
)
_CONTEXT: Final = decimal.Context(prec=28, rounding=decimal.ROUND_HALF_UP)
#: the most arguments of a function taking more than one (all take at least one)
_MOST_ARGUMENTS: Final = {"coalesce": 100, "max": 100, "min": 100, "round": 2}
#: what each function returns (for the check of arithmetic when loading)
_RETURNS: Final = {
    **dict.fromkeys(_words("abs float int max min round"), "number"),
    **dict.fromkeys(_words("bool changed"), "bool"),
    **dict.fromkeys(_words("md5 sha256 str"), "str"),
    **dict.fromkeys(_words("coalesce previous"), "any"),
}
_ALLOWED_NODES: Final = tuple(
    getattr(ast, name)
    for name in _words(
        "Expression BoolOp And Or UnaryOp Not USub UAdd BinOp Add Sub Mult Div "
        "Compare Eq NotEq Lt LtE Gt GtE In NotIn Is IsNot Call Name Load Attribute "
        "Subscript Constant List Tuple"
    )
)


class ExpressionError(ValueError):
    """An expression that does not compile, or a value it cannot work with."""


def _md5(value: object) -> str:  # as the stream-map md5() and sha256()
    return hashlib.md5(str(value).encode(), usedforsecurity=False).hexdigest()


def _sha256(value: object) -> str:
    return hashlib.sha256(str(value).encode()).hexdigest()


def tracked_value(value: object) -> object:
    """The JSON form a tracked field is remembered and compared in.

    Numbers by value (`5` = `5.0` = `Decimal('5.00')`), date-times as UTC ISO text,
    objects and lists as sorted JSON text.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float, Decimal)):
        try:
            dec = Decimal(str(value))
        except InvalidOperation:
            return str(value)
        if not dec.is_finite():
            return str(value)
        return int(dec) if dec == dec.to_integral_value() else float(dec)
    if isinstance(value, (dt.date, dt.datetime)):
        return str(_normalise(value))
    return json.dumps(value, sort_keys=True, default=str)


def _normalise(value: object) -> object:
    """Make record values and literals comparable."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return Decimal(str(value))
    return value


def _coerce_pair(left: object, right: object) -> tuple[object, object]:
    left, right = _normalise(left), _normalise(right)
    if isinstance(left, Decimal) and isinstance(right, str):
        try:
            right = Decimal(right)
        except InvalidOperation:
            left = str(left)
    elif isinstance(right, Decimal) and isinstance(left, str):
        try:
            left = Decimal(left)
        except InvalidOperation:
            right = str(right)
    elif (
        isinstance(left, str)
        and isinstance(right, str)
        and "T" in left
        and len(right) == len("2024-01-01")
    ):
        # a datetime field against a date-only literal: compare the date part
        left = left[: len(right)]
    return left, right


def _compare(op: type[ast.cmpop], left: object, right: object) -> bool:
    if op is ast.Is or op is ast.IsNot:
        return (left is None) is (op is ast.Is)
    if op is ast.In or op is ast.NotIn:
        return _contains(left, right) is (op is ast.In)
    if left is None or right is None:
        # null-safe: None equals only None, and orders with nothing
        return (left is right) is (op is ast.Eq) if op in _EQUALITY else False
    left, right = _coerce_pair(left, right)
    try:
        return bool(simpleeval.DEFAULT_OPERATORS[op](left, right))
    except TypeError:
        return False


_EQUALITY: Final = (ast.Eq, ast.NotEq)


def _contains(item: object, container: object) -> bool:
    if isinstance(container, (list, tuple)):
        return any(_compare(ast.Eq, item, entry) for entry in container)
    if isinstance(container, str) and isinstance(item, str):
        return item in container
    if isinstance(container, dict):
        return item in container
    return _compare(ast.Eq, item, container)


def _number(what: str, value: object) -> Decimal:
    number = None
    if not isinstance(value, bool | dict | list):
        with contextlib.suppress(InvalidOperation):
            number = Decimal(str(value).strip())
    if number is None or not number.is_finite():
        finite = "" if number is None else "finite "
        msg = f"{what!r} is {value!r}, not a {finite}number"
        raise ExpressionError(msg)
    return number


def _dotted(node: ast.AST) -> str | None:
    """`a.b.c` for a chain of attributes on a field name, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _call_name(node: ast.Call) -> str | None:
    return node.func.id if isinstance(node.func, ast.Name) else None


def _round(value: Decimal, digits: Decimal = Decimal(0)) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-int(digits)), rounding="ROUND_HALF_UP")


#: number functions: null when an argument is null, every argument a number
NUMERIC: Final[dict[str, Callable[..., Decimal]]] = {
    func.__name__.strip("_"): func for func in (abs, min, max, _round)
}
FUNCTIONS: Final[dict[str, Any]] = {
    # the stream-map functions (singer_sdk.mapper.CustomStreamMap.functions)
    "md5": _md5,
    "sha256": _sha256,
    "datetime": simpleeval.ModuleWrapper(dt),
    "json": simpleeval.ModuleWrapper(json),
    **{func.__name__: func for func in (bool, int, float, str)},
    # what the presets need
    **NUMERIC,
    "coalesce": lambda *args: next((a for a in args if a is not None), None),
}


class _Evaluator(simpleeval.EvalWithCompoundTypes):  # type: ignore[misc] # simpleeval is untyped
    """simpleeval's evaluator with the record scope and the semantics above.

    One per compiled expression; it holds the record being evaluated, so an
    expression is evaluated on one thread at a time (the one reading records).
    """

    def __init__(self) -> None:
        super().__init__(functions=FUNCTIONS, names={})
        self.record: Mapping[str, Any] = {}
        self.previous: Mapping[str, Any] | None = None
        self.config: Mapping[str, Any] = {}

    def _check_disallowed_items(self, item: object) -> None:
        """Checked once at load instead (`_check`): records are plain JSON."""

    def _eval(self, node: ast.AST) -> Any:  # noqa: ANN401 - any expression value
        return self.nodes[type(node)](node)

    def _eval_name(self, node: ast.Name) -> Any:  # noqa: ANN401 - a record value
        name = node.id
        if name in RECORD_NAMES:
            return self.record
        record = self.record
        if name in record:
            return record[name]
        if name == "config":
            return self.config
        return FUNCTIONS.get(name)

    def _eval_attribute(self, node: ast.Attribute) -> Any:  # noqa: ANN401 - a value
        base = self._eval(node.value)
        if base is None:
            return None
        if isinstance(base, dict):
            if node.attr in base:
                return base[node.attr]
            return getattr(base, node.attr, None) if node.attr in METHODS else None
        return getattr(base, node.attr, None)

    def _eval_subscript(self, node: ast.Subscript) -> Any:  # noqa: ANN401 - a value
        base = self._eval(node.value)
        key = self._eval(node.slice)
        return base.get(key) if isinstance(base, dict) else None

    def _eval_binop(self, node: ast.BinOp) -> Decimal | None:
        left = self._eval(node.left)
        right = self._eval(node.right)
        if left is None or right is None:
            return None
        lnum = _number(_describe(node.left), left)
        rnum = _number(_describe(node.right), right)
        op = type(node.op)
        if op is ast.Add:
            return _CONTEXT.add(lnum, rnum)
        if op is ast.Sub:
            return _CONTEXT.subtract(lnum, rnum)
        if op is ast.Mult:
            return _CONTEXT.multiply(lnum, rnum)
        if rnum == 0:
            return None
        return _CONTEXT.divide(lnum, rnum)

    def _eval_unaryop(self, node: ast.UnaryOp) -> Any:  # noqa: ANN401 - a value
        value = self._eval(node.operand)
        if isinstance(node.op, ast.Not):
            return not value
        if value is None:
            return None
        number = _number(_describe(node.operand), value)
        return -number if isinstance(node.op, ast.USub) else number

    @staticmethod
    def _eval_constant(node: ast.Constant) -> Any:  # noqa: ANN401 - a literal
        return node.value  # its length is bounded by MAX_LENGTH at load

    def _eval_compare(self, node: ast.Compare) -> bool:
        left = self._eval(node.left)
        if len(node.ops) == 1:  # the common case, without the loop
            return _compare(type(node.ops[0]), left, self._eval(node.comparators[0]))
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = self._eval(comparator)
            if not _compare(type(op), left, right):
                return False
            left = right
        return True

    def _eval_call(self, node: ast.Call) -> Any:  # noqa: ANN401 - a value
        name = _call_name(node)
        if name in TRACKING:
            field = node.args[0].id  # type: ignore[attr-defined] # checked at load
            return self._tracked(name, field)
        args = [self._eval(a) for a in node.args]
        if name in NUMERIC:
            if any(a is None for a in args):
                return None
            args = [
                _number(_describe(n), a) for n, a in zip(node.args, args, strict=True)
            ]
        func = self._eval(node.func) if name is None else FUNCTIONS[name]
        if func is None:
            return None  # a method of a missing value
        kwargs = {k.arg: self._eval(k.value) for k in node.keywords if k.arg}
        try:
            return func(*args, **kwargs)
        except ExpressionError:
            raise
        except (TypeError, ValueError, ArithmeticError) as exc:
            msg = f"{ast.unparse(node)}: {exc}"
            raise ExpressionError(msg) from None

    def _tracked(self, name: str, field: str) -> object:
        previous = self.previous
        if name == "previous":
            return None if previous is None else previous.get(field)
        if previous is None or field not in previous or field not in self.record:
            return False
        return bool(tracked_value(self.record[field]) != previous[field])


def _describe(node: ast.AST) -> str:
    return _dotted(node) or ast.unparse(node)


class Expression:
    """A compiled expression: its text, the record paths it reads, how to run it.

    `names`: the record paths read (`a`, `stats.sent`), in order; `fields`: their
    top-level fields; `tracked`: the fields read through changed() / previous().
    """

    __slots__ = ("_evaluator", "_root", "fields", "names", "text", "tracked", "tree")

    def __init__(self, text: str, tree: ast.expr, names: tuple[str, ...]) -> None:
        """Keep a checked tree (made by `compile_expression`)."""
        self.text, self.tree, self.names = text, tree, names
        self.fields = frozenset(n.split(".", 1)[0] for n in names)
        self.tracked = frozenset(
            node.args[0].id  # type: ignore[attr-defined] # checked at load
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and _call_name(node) in TRACKING
        )
        self._evaluator = _Evaluator()
        self._root = self._evaluator.nodes[type(tree)]

    def __repr__(self) -> str:
        """`Expression('...')`."""
        return f"Expression({self.text!r})"

    def value(
        self,
        record: Mapping[str, Any],
        previous: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> Any:  # noqa: ANN401 - whatever the expression computes
        """The value for one record.

        `previous` holds the tracked values remembered for the record (None on its
        first sighting); `config` is what the name `config` reads (default empty).

        Raises:
            ExpressionError: a value the expression cannot work with.
        """
        evaluator = self._evaluator
        evaluator.record = record
        evaluator.previous = previous
        evaluator.config = config or {}
        return self._root(self.tree)

    def __call__(
        self,
        record: Mapping[str, Any],
        previous: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> bool:
        """As a condition: whether the value is truthy (arguments as `value`)."""
        return bool(self.value(record, previous, config))

    def number(self, record: Mapping[str, Any]) -> Decimal | None:
        """As an `expr:` field: the value as a Decimal, or None.

        Raises:
            ExpressionError: a value that is not a number.
        """
        value = self.value(record)
        if value is None or isinstance(value, Decimal):
            return value
        return _number(self.text, value)


_CONSTANT_KINDS: Final = {bool: "bool", int: "number", float: "number", str: "str"}


def _kind(node: ast.AST) -> str:
    """What a node computes, as far as the load-time check can tell."""
    if isinstance(node, ast.Constant):
        return _CONSTANT_KINDS.get(type(node.value), "any")
    if isinstance(node, ast.Compare | ast.BoolOp) or (
        isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)
    ):
        return "bool"
    if isinstance(node, ast.BinOp | ast.UnaryOp):
        return "number"
    if isinstance(node, ast.List | ast.Tuple):
        return "list"
    if isinstance(node, ast.Call):
        return _RETURNS.get(_call_name(node) or "", "any")
    return "function" if isinstance(node, ast.Name) and node.id in FUNCTIONS else "any"


def _check(node: ast.AST, names: list[str]) -> None:
    if not isinstance(node, _ALLOWED_NODES):
        msg = f"{type(node).__name__} is not allowed"
        raise ExpressionError(msg)
    checker = _CHECKERS.get(type(node))
    if checker is not None:
        checker(node, names)
        return
    if isinstance(node, ast.BinOp | ast.UnaryOp):
        _check_arithmetic(node)
    if isinstance(node, ast.Compare) and any(
        isinstance(op, ast.Is | ast.IsNot) and ast.unparse(right) != "None"
        for op, right in zip(node.ops, node.comparators, strict=True)
    ):
        msg = "`is` and `is not` compare with None only"
        raise ExpressionError(msg)
    for child in ast.iter_child_nodes(node):
        _check(child, names)


def _check_arithmetic(node: ast.BinOp | ast.UnaryOp) -> None:
    if isinstance(node, ast.UnaryOp):
        operands = [] if isinstance(node.op, ast.Not) else [node.operand]
    else:
        operands = [node.left, node.right]
    for operand in operands:
        kind = _kind(operand)
        if kind not in {"number", "any"}:
            msg = f"arithmetic on a {kind}: {ast.unparse(operand)}"
            raise ExpressionError(msg)


def _check_constant(node: ast.Constant, _names: list[str]) -> None:
    if not isinstance(node.value, str | int | float | bool | type(None)):
        msg = f"{node.value!r} is not allowed"
        raise ExpressionError(msg)


def _check_name(node: ast.Name, names: list[str]) -> None:
    if node.id.startswith("_") and node.id != "_":
        msg = f"{node.id!r} is not allowed"
        raise ExpressionError(msg)
    if node.id not in RECORD_NAMES | {"config"} and node.id not in FUNCTIONS:
        names.append(node.id)


def _check_attribute(node: ast.Attribute, names: list[str]) -> None:
    if node.attr.startswith("_") or node.attr in simpleeval.DISALLOW_METHODS:
        msg = f"attribute {node.attr!r} is not allowed"
        raise ExpressionError(msg)
    path = _dotted(node)
    root = path.split(".", 1)[0] if path else None
    if path and root not in FUNCTIONS and root not in RECORD_NAMES and root != "config":
        names.append(path)
        return
    _check(node.value, names)


def _check_subscript(node: ast.Subscript, names: list[str]) -> None:
    key = node.slice
    if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
        msg = "only record['field'] subscripts (a quoted name) are allowed"
        raise ExpressionError(msg)
    if isinstance(node.value, ast.Name) and node.value.id in RECORD_NAMES:
        names.append(key.value)
        return
    _check(node.value, names)


def _check_call(node: ast.Call, names: list[str]) -> None:
    name = _call_name(node)
    if name is None:
        func = node.func
        if not isinstance(func, ast.Attribute) or func.attr not in METHODS:
            msg = f"only the methods {', '.join(sorted(METHODS))} may be called"
            raise ExpressionError(msg)
        _check_method(func, node, names)
        return
    if name not in _RETURNS:
        msg = f"unknown function {name!r} (allowed: {', '.join(sorted(_RETURNS))})"
        raise ExpressionError(msg)
    low, high = 1, _MOST_ARGUMENTS.get(name, 1)
    if node.keywords or not low <= len(node.args) <= high:
        msg = f"{name}() takes {low} to {high} arguments, no keywords"
        raise ExpressionError(msg)
    if name in TRACKING:
        (arg,) = node.args
        if not isinstance(arg, ast.Name):
            msg = f"{name}() takes a field name, got {ast.unparse(arg)}"
            raise ExpressionError(msg)
        names.append(arg.id)
        return
    if name == "round" and len(node.args) > 1:
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


def _check_method(func: ast.Attribute, node: ast.Call, names: list[str]) -> None:
    receiver = func.value
    if (
        func.attr == "get"
        and isinstance(receiver, ast.Name)
        and receiver.id in RECORD_NAMES
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        names.append(node.args[0].value)
    else:
        _check(receiver, names)
    for arg in [*node.args, *(k.value for k in node.keywords)]:
        _check(arg, names)


_CHECKERS: Final[dict[type[ast.AST], Callable[[Any, list[str]], None]]] = {
    ast.Constant: _check_constant,
    ast.Name: _check_name,
    ast.Attribute: _check_attribute,
    ast.Subscript: _check_subscript,
    ast.Call: _check_call,
}


def compile_expression(text: object, *, number: bool = False) -> Expression:
    """Parse and check an expression, e.g. `IsClosed == True and Amount > 0`.

    With `number`, it must compute a number (an `expr:` field).

    Raises:
        ExpressionError: a syntax error or a construct outside the language.
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
        kind = _kind(tree.body)
        if number and kind not in {"number", "any"}:
            msg = f"a number is needed, this is a {kind}"
            raise ExpressionError(msg)  # noqa: TRY301 - reworded below
    except ExpressionError as exc:
        msg = f"invalid expression {text!r}: {exc}"
        raise ExpressionError(msg) from None
    return Expression(text, tree.body, tuple(dict.fromkeys(names)))
