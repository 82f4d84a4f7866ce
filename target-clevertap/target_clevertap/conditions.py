"""A small, safe condition language for mapping `when:` clauses (no eval).

Grammar (case-insensitive keywords)::

    expr       := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | comparison
    comparison := "(" expr ")"
                | operand ("is" ["not"] "null")
                | operand (OP operand)?
    OP         := "=" | "==" | "!=" | "<" | "<=" | ">" | ">=" | "in"
    operand    := FIELD | 'text' | "text" | NUMBER | true | false | null
                | "[" literal ("," literal)* "]"
                | "changed" "(" FIELD ")" | "previous" "(" FIELD ")"

A bare field is true when its value is truthy. Comparisons with a null operand
are false (except `!=`): `Amount > 5` is false when Amount is missing.

Change tracking: `changed(F)` is true when the record's F differs from the value
remembered for the same record (stream and key) when it was last seen; it is false
on the first sighting, when F is absent from the record, and when F was not
remembered yet. `previous(F)` is that remembered value (null when unknown).
"""

from __future__ import annotations

import datetime as dt
import json
import operator
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    Predicate = Callable[["Scope"], bool]
    Getter = Callable[["Scope"], Any]

_TOKEN = re.compile(
    r"""\s*(?:
    (?P<num>-?\d+(?:\.\d+)?)
    |(?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    |(?P<op>==|!=|<=|>=|=|<|>|\(|\)|\[|\]|,)
    |(?P<name>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "is", "null", "true", "false", "in"}
_FUNCTIONS = {"changed", "previous"}
_COMPARATORS = {"=", "==", "!=", "<", "<=", ">", ">=", "in"}
_ORDERING: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


class ConditionError(ValueError):
    """A `when:` expression that does not parse."""


class Scope:
    """What a condition sees: the record and its remembered previous values."""

    __slots__ = ("previous", "record")

    def __init__(
        self, record: Mapping[str, Any], previous: Mapping[str, Any] | None
    ) -> None:
        """Create it.

        Args:
            record: the input record.
            previous: the tracked values remembered for this record, or None.
        """
        self.record = record
        self.previous = previous

    def get(self, name: str) -> object:
        """A record field.

        Args:
            name: the field.

        Returns:
            Its value (None when absent).
        """
        return self.record.get(name)


def tracked_value(value: object) -> object:
    """The JSON form a tracked field is remembered and compared in.

    Numbers compare by value (`5` = `5.0` = `Decimal('5.00')`), date-times as
    UTC ISO text, objects and lists as sorted JSON text.

    Args:
        value: a record value.

    Returns:
        A JSON-serialisable value.
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


def _changed(name: str) -> Getter:
    def changed(scope: Scope) -> bool:
        previous = scope.previous
        if previous is None or name not in previous or name not in scope.record:
            return False
        return bool(tracked_value(scope.record[name]) != previous[name])

    return changed


def _previous(name: str) -> Getter:
    def previous(scope: Scope) -> object:
        return None if scope.previous is None else scope.previous.get(name)

    return previous


@dataclass(frozen=True)
class _Tok:
    kind: str
    value: str
    pos: int


def _tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            msg = f"unexpected character {text[pos:].strip()[:1]!r} at {pos + 1}"
            raise ConditionError(msg)
        kind = match.lastgroup or ""
        value = match.group(kind)
        start = match.start(kind) + 1
        if kind == "name" and value.lower() in _KEYWORDS:
            kind, value = "kw", value.lower()
        tokens.append(_Tok(kind, value, start))
        pos = match.end()
    return tokens


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


def _compare(op: str, left: object, right: object) -> bool:
    if op == "in":
        items = right if isinstance(right, list) else [right]
        return any(_compare("=", left, item) for item in items)
    if left is None or right is None:
        if op in {"=", "=="}:
            return left is right
        if op == "!=":
            return left is not right
        return False
    left, right = _coerce_pair(left, right)
    try:
        return bool(_ORDERING[op](left, right))
    except TypeError:
        return False


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.fields: set[str] = set()
        self.tracked: set[str] = set()

    def peek(self) -> _Tok | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            msg = "unexpected end of expression"
            raise ConditionError(msg)
        self.i += 1
        return tok

    def accept(self, kind: str, value: str | None = None) -> bool:
        tok = self.peek()
        if tok and tok.kind == kind and (value is None or tok.value == value):
            self.i += 1
            return True
        return False

    def parse(self) -> Predicate:
        if not self.tokens:
            msg = "empty expression"
            raise ConditionError(msg)
        pred = self.or_expr()
        tok = self.peek()
        if tok is not None:
            msg = f"unexpected {tok.value!r} at {tok.pos}"
            raise ConditionError(msg)
        return pred

    def or_expr(self) -> Predicate:
        parts = [self.and_expr()]
        while self.accept("kw", "or"):
            parts.append(self.and_expr())
        if len(parts) == 1:
            return parts[0]
        return lambda rec: any(p(rec) for p in parts)

    def and_expr(self) -> Predicate:
        parts = [self.not_expr()]
        while self.accept("kw", "and"):
            parts.append(self.not_expr())
        if len(parts) == 1:
            return parts[0]
        return lambda rec: all(p(rec) for p in parts)

    def not_expr(self) -> Predicate:
        if self.accept("kw", "not"):
            inner = self.not_expr()
            return lambda rec: not inner(rec)
        return self.comparison()

    def comparison(self) -> Predicate:
        if self.accept("op", "("):
            inner = self.or_expr()
            if not self.accept("op", ")"):
                msg = "missing ')'"
                raise ConditionError(msg)
            return inner
        left = self.operand()
        if self.accept("kw", "is"):
            negate = self.accept("kw", "not")
            if not self.accept("kw", "null"):
                msg = "expected 'null' after 'is'"
                raise ConditionError(msg)
            if negate:
                return lambda rec: left(rec) is not None
            return lambda rec: left(rec) is None
        tok = self.peek()
        if tok and tok.value in _COMPARATORS and tok.kind in {"op", "kw"}:
            op = self.take().value
            right = self.operand()
            return lambda rec: _compare(op, left(rec), right(rec))
        return lambda rec: bool(left(rec))

    def literal(self) -> object:
        tok = self.take()
        if tok.kind == "num":
            return Decimal(tok.value)
        if tok.kind == "str":
            body = tok.value[1:-1]
            return re.sub(r"\\(.)", r"\1", body)
        if tok.kind == "kw" and tok.value in {"true", "false"}:
            return tok.value == "true"
        if tok.kind == "kw" and tok.value == "null":
            return None
        msg = f"expected a value, got {tok.value!r} at {tok.pos}"
        raise ConditionError(msg)

    def function(self, func: str) -> Getter:
        self.take()  # "("
        arg = self.take()
        if arg.kind != "name":
            msg = f"{func}() takes a field name, got {arg.value!r} at {arg.pos}"
            raise ConditionError(msg)
        if not self.accept("op", ")"):
            msg = f"missing ')' after {func}({arg.value}"
            raise ConditionError(msg)
        self.fields.add(arg.value)
        self.tracked.add(arg.value)
        return _changed(arg.value) if func == "changed" else _previous(arg.value)

    def operand(self) -> Getter:
        tok = self.peek()
        if tok is None:
            msg = "unexpected end of expression"
            raise ConditionError(msg)
        if tok.kind == "name":
            self.i += 1
            name = tok.value
            nxt = self.peek()
            if name.lower() in _FUNCTIONS and nxt and nxt.value == "(":
                return self.function(name.lower())
            self.fields.add(name)
            return lambda rec: rec.get(name)
        if tok.kind == "op" and tok.value == "[":
            self.i += 1
            items = [self.literal()]
            while self.accept("op", ","):
                items.append(self.literal())
            if not self.accept("op", "]"):
                msg = "missing ']'"
                raise ConditionError(msg)
            return lambda _rec: items
        value = self.literal()
        return lambda _rec: value


@dataclass(frozen=True)
class Condition:
    """A compiled `when:` expression."""

    text: str
    predicate: Predicate
    fields: frozenset[str]
    #: fields read through changed() / previous()
    tracked: frozenset[str] = frozenset()

    def __call__(
        self, record: Mapping[str, Any], previous: Mapping[str, Any] | None = None
    ) -> bool:
        """Evaluate against a record.

        Args:
            record: the input record.
            previous: the tracked values remembered for this record (None on the
                first sighting).

        Returns:
            Whether the condition holds.
        """
        return self.predicate(Scope(record, previous))


def compile_condition(text: str) -> Condition:
    """Parse a `when:` expression.

    Args:
        text: the expression, e.g. `IsClosed = true and Amount > 0`.

    Returns:
        The compiled condition.

    Raises:
        ConditionError: when the expression does not parse.
    """
    parser = _Parser(text)
    predicate = parser.parse()
    return Condition(
        text, predicate, frozenset(parser.fields), frozenset(parser.tracked)
    )
