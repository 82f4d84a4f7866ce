"""The SOQL subset the emulator understands.

`SELECT f1, f2 | COUNT() FROM Obj [WHERE cond] [ORDER BY f [ASC|DESC] [NULLS
FIRST|LAST], ...] [LIMIT n] [OFFSET n]`, where `cond` combines comparisons
(`= != <> < <= > >=`, `[NOT] IN (...)`, `LIKE`, `INCLUDES`/`EXCLUDES`) with AND, OR,
NOT and parentheses. Literals: quoted strings, numbers, true/false/null, unquoted
ISO dates and date-times (as tap-salesforce sends them), and TODAY/YESTERDAY.
"""

from __future__ import annotations

# ruff: noqa: ANN401 - record values are arbitrary JSON
import dataclasses
import datetime as dt
import functools
import operator
import re
from typing import TYPE_CHECKING, Any

from sandbox.salesforce.errors import ApiError, invalid_field, malformed_query
from sandbox.salesforce.schema import find_object
from sandbox.salesforce.values import UTC, parse_date, parse_datetime

if TYPE_CHECKING:
    from collections.abc import Callable

    from sandbox.salesforce.schema import Field, SObject
    from sandbox.salesforce.store import Record

_TOKEN_RE = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*')
      | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?
                     (?:Z|[+-]\d{2}:?\d{2}))
      | (?P<date>\d{4}-\d{2}-\d{2})
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<op><=|>=|!=|<>|=|<|>)
      | (?P<punct>[(),])
      | (?P<word>[A-Za-z_][A-Za-z0-9_.]*(?::\d+)?)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {
    "select",
    "from",
    "where",
    "and",
    "or",
    "not",
    "in",
    "like",
    "order",
    "by",
    "asc",
    "desc",
    "nulls",
    "first",
    "last",
    "limit",
    "offset",
    "includes",
    "excludes",
    "true",
    "false",
    "null",
}


@dataclasses.dataclass(frozen=True)
class Token:
    """A lexical token: its kind and text."""

    kind: str
    text: str


@dataclasses.dataclass
class Query:
    """A parsed query."""

    sobject: SObject
    fields: list[str]
    count_only: bool
    where: Callable[[Record], bool] | None
    order: list[tuple[Field, bool, bool]]
    limit: int | None
    offset: int


def tokenize(text: str) -> list[Token]:
    """Split SOQL into tokens.

    Raises:
        ApiError: MALFORMED_QUERY on a character that starts no token.
    """
    tokens: list[Token] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if not match or match.end() == pos:
            msg = f"unexpected token: '{text[pos : pos + 20].strip()}'"
            raise malformed_query(msg)
        kind = match.lastgroup or ""
        tokens.append(Token(kind, match.group(kind)))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.pos = 0
        self.text = text

    def peek(self, offset: int = 0) -> Token | None:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def keyword(self, *words: str) -> bool:
        token = self.peek()
        if token and token.kind == "word" and token.text.lower() in words:
            self.pos += 1
            return True
        return False

    def expect_keyword(self, word: str) -> None:
        if not self.keyword(word):
            token = self.peek()
            shown = token.text if token else "end of query"
            msg = f"unexpected token: '{shown}' (expected {word.upper()})"
            raise malformed_query(msg)

    def expect(self, kind: str, text: str | None = None) -> Token:
        token = self.peek()
        if token is None or token.kind != kind or (text and token.text != text):
            shown = token.text if token else "end of query"
            msg = f"unexpected token: '{shown}'"
            raise malformed_query(msg)
        self.pos += 1
        return token

    def parse(self) -> Query:
        self.expect_keyword("select")
        items, count_only = self._select_list()
        self.expect_keyword("from")
        sobject = self._from()
        self.sobject = sobject
        fields = [self._field(item).name for item in items]
        where = self._or() if self.keyword("where") else None
        order = self._order_by() if self.keyword("order") else []
        limit = None
        offset = 0
        if self.keyword("limit"):
            limit = int(self.expect("number").text)
        if self.keyword("offset"):
            offset = int(self.expect("number").text)
        extra = self.peek()
        if extra is not None:
            msg = f"unexpected token: '{extra.text}'"
            raise malformed_query(msg)
        return Query(sobject, fields, count_only, where, order, limit, offset)

    def _select_list(self) -> tuple[list[str], bool]:
        """The selected field names, and whether `COUNT()` was among them."""
        items: list[str] = []
        count_only = False
        while True:
            token = self.expect("word")
            if token.text.lower() == "count" and self._punct("("):
                inner = self.peek()
                if inner is not None and inner.kind == "word":
                    self.pos += 1
                self.expect("punct", ")")
                count_only = True
            else:
                items.append(token.text)
            if not self._punct(","):
                return items, count_only

    def _from(self) -> SObject:
        name = self.expect("word").text
        sobject = find_object(name)
        if sobject is None:
            msg = (
                f"sObject type '{name}' is not supported. If you are attempting to use "
                "a custom object, be sure to append the '__c' after the entity name."
            )
            raise ApiError(400, "INVALID_TYPE", msg)
        return sobject

    def _order_by(self) -> list[tuple[Field, bool, bool]]:
        """`ORDER BY` items: (field, descending, nulls last)."""
        self.expect_keyword("by")
        order: list[tuple[Field, bool, bool]] = []
        while True:
            field = self._field(self.expect("word").text)
            descending = False
            if self.keyword("desc"):
                descending = True
            else:
                self.keyword("asc")
            nulls_last = descending
            if self.keyword("nulls"):
                nulls_last = self.keyword("last")
                if not nulls_last:
                    self.expect_keyword("first")
            order.append((field, descending, nulls_last))
            if not self._punct(","):
                return order

    def _punct(self, char: str) -> bool:
        token = self.peek()
        if token and token.kind == "punct" and token.text == char:
            self.pos += 1
            return True
        return False

    def _field(self, name: str) -> Field:
        field = self.sobject.field(name)
        if field is None:
            raise invalid_field(name, self.sobject.name)
        return field

    def _or(self) -> Callable[[Record], bool]:
        parts = [self._and()]
        while self.keyword("or"):
            parts.append(self._and())
        if len(parts) == 1:
            return parts[0]
        return lambda record: any(p(record) for p in parts)

    def _and(self) -> Callable[[Record], bool]:
        parts = [self._not()]
        while self.keyword("and"):
            parts.append(self._not())
        if len(parts) == 1:
            return parts[0]
        return lambda record: all(p(record) for p in parts)

    def _not(self) -> Callable[[Record], bool]:
        if self.keyword("not"):
            inner = self._not()
            return lambda record: not inner(record)
        if self._punct("("):
            inner = self._or()
            self.expect("punct", ")")
            return inner
        return self._comparison()

    def _comparison(self) -> Callable[[Record], bool]:
        field = self._field(self.expect("word").text)
        negate = self.keyword("not")
        if self.keyword("in", "includes", "excludes"):
            word = self.tokens[self.pos - 1].text.lower()
            self.expect("punct", "(")
            values = [self._literal(field)]
            while self._punct(","):
                values.append(self._literal(field))
            self.expect("punct", ")")
            if word == "in":
                keys = {_key(field, v) for v in values}
                return lambda r: (_key(field, r.get(field.name)) in keys) != negate
            wanted = [{p.strip().lower() for p in str(v).split(";")} for v in values]

            def has(record: Record) -> bool:
                got = {
                    p.strip().lower()
                    for p in str(record.get(field.name) or "").split(";")
                }
                found = any(w <= got for w in wanted)
                return found if word == "includes" else not found

            return has
        if negate:
            msg = "unexpected token: 'NOT'"
            raise malformed_query(msg)
        if self.keyword("like"):
            pattern = str(self._literal(field))
            regex = re.compile(
                "^" + re.escape(pattern).replace("%", ".*").replace("_", ".") + "$",
                re.IGNORECASE | re.DOTALL,
            )
            return lambda r: bool(regex.match(str(r.get(field.name) or "")))
        op = self.expect("op").text
        value = _key(field, self._literal(field))
        return _compare(field, op, value)

    def _literal(self, field: Field) -> Any:
        token = self.peek()
        if token is None:
            msg = "unexpected end of query"
            raise malformed_query(msg)
        self.pos += 1
        if token.kind == "string":
            return re.sub(r"\\(.)", r"\1", token.text[1:-1])
        convert = _LITERALS.get(token.kind)
        if convert is not None:
            return convert(token.text)
        if token.kind == "word":
            word = token.text.lower()
            if word in _WORD_LITERALS:
                return _WORD_LITERALS[word]
            if word in _DAYS_AGO:
                today = dt.datetime.now(UTC).date()
                return today - dt.timedelta(days=_DAYS_AGO[word])
        msg = f"unexpected token: '{token.text}' for field {field.name}"
        raise malformed_query(msg)


_LITERALS: dict[str, Callable[[str], Any]] = {
    "number": float,
    "datetime": parse_datetime,
    "date": parse_date,
}
_WORD_LITERALS = {"null": None, "true": True, "false": False}
_DAYS_AGO = {"today": 0, "yesterday": 1}


def _key(field: Field, value: Any) -> Any:
    """A comparable form of a stored value or a literal, for one field."""
    if value is None:
        return None
    convert = _KEYS.get(field.type)
    return _text_key(value) if convert is None else convert(value)


def _datetime_key(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=UTC)
    return parse_datetime(str(value))


def _date_key(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return parse_date(str(value))


def _text_key(value: Any) -> str:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat().lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).lower()


# Field type -> comparable form; every other type compares as lower-case text.
_KEYS: dict[str, Callable[[Any], Any]] = {
    "datetime": _datetime_key,
    "date": _date_key,
    "double": float,
    "currency": float,
    "percent": float,
    "int": float,
    "boolean": bool,
}
_ORDERING: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _compare(field: Field, op: str, value: Any) -> Callable[[Record], bool]:
    if op == "=":
        return lambda record: bool(_key(field, record.get(field.name)) == value)
    if op in {"!=", "<>"}:
        return lambda record: bool(_key(field, record.get(field.name)) != value)
    ordering = _ORDERING.get(op, _ORDERING[">="])

    def check(record: Record) -> bool:
        got = _key(field, record.get(field.name))
        if got is None or value is None:
            return False
        try:
            return bool(ordering(got, value))
        except TypeError:
            return False

    return check


def _sort_key(field: Field, record: Record) -> Any:
    return _key(field, record.get(field.name))


def parse(text: str) -> Query:
    """Parse a SOQL query against the org's schema.

    Raises:
        ApiError: MALFORMED_QUERY, INVALID_FIELD or INVALID_TYPE.
    """
    try:
        return _Parser(text).parse()
    except ValueError as exc:
        raise malformed_query(str(exc)) from exc


def run(query: Query, rows: list[Record]) -> list[Record]:
    """Filter, sort and slice stored records for a parsed query."""
    selected = [r for r in rows if query.where is None or query.where(r)]
    for field, descending, nulls_last in reversed(query.order):
        present = [r for r in selected if r.get(field.name) is not None]
        absent = [r for r in selected if r.get(field.name) is None]
        present.sort(key=functools.partial(_sort_key, field), reverse=descending)
        selected = present + absent if nulls_last else absent + present
    selected = selected[query.offset :]
    if query.limit is not None:
        selected = selected[: query.limit]
    return selected
