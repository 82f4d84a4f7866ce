"""`when:` conditions compiled into Python closures (same results as exprlang).

`exprlang.Expression` walks its syntax tree through simpleeval for every record:
a dictionary look-up and a method call per node. A condition is evaluated for
every record of a stream (several per record when its events have conditions),
so the usual nodes (field names, literals, comparisons, `and`/`or`/`not`,
`changed()`/`previous()`) are turned into closures once, when the mapping loads;
they call exprlang's own comparison helpers, so the semantics (null-safe
comparisons, numbers by value, dates against date texts) are exprlang's. Any
other node is evaluated by the expression's own evaluator, as before.
`tests/target_clevertap/test_cpu_shortcuts.py` holds the two to the same
results (and errors) on generated records.

exprlang.py itself is byte-identical in target-salesforce (and at its size
limit), so this lives beside it, in target-clevertap only.
"""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Any

from target_clevertap.exprlang import (
    FUNCTIONS,
    RECORD_NAMES,
    TRACKING,
    Expression,
    _compare,
    tracked_value,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    #: a compiled node: (record, previous, config) -> its value
    _Node = Callable[
        [Mapping[str, Any], Mapping[str, Any] | None, Mapping[str, Any] | None], Any
    ]


class Condition(Expression):
    """An expression whose value comes from closures compiled once."""

    __slots__ = ("_compiled",)

    def __init__(self, expression: Expression) -> None:
        """Compile a checked expression (made by `compile_expression`).

        Args:
            expression: the expression.
        """
        super().__init__(expression.text, expression.tree, expression.names)
        self._compiled = self._node(self.tree)

    def value(
        self,
        record: Mapping[str, Any],
        previous: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> Any:  # noqa: ANN401 - whatever the expression computes
        """The value for one record (as `Expression.value`).

        Args:
            record: the record.
            previous: its remembered tracked values (None on a first sighting).
            config: what the name `config` reads.

        Returns:
            The value.
        """
        return self._compiled(record, previous, config)

    def __call__(
        self,
        record: Mapping[str, Any],
        previous: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> bool:
        """As a condition: whether the value is truthy (arguments as `value`).

        Args:
            record: the record.
            previous: its remembered tracked values (None on a first sighting).
            config: what the name `config` reads.

        Returns:
            Whether it holds.
        """
        return bool(self._compiled(record, previous, config))

    # ------------------------------------------------------------- compiling

    def _node(self, node: ast.AST) -> _Node:  # noqa: PLR0911 - one return per kind
        if isinstance(node, ast.Constant):
            return _constant(node.value)
        if isinstance(node, ast.Name) and node.id not in RECORD_NAMES:
            if node.id != "config":
                return _field(node.id, FUNCTIONS.get(node.id))
        elif isinstance(node, ast.Compare):
            return self._compare(node)
        elif isinstance(node, ast.BoolOp):
            return _bool_op(
                isinstance(node.op, ast.And), [self._node(v) for v in node.values]
            )
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return _not(self._node(node.operand))
        elif _tracking_call(node):
            call: ast.Call = node  # type: ignore[assignment] # checked just above
            name = call.func.id  # type: ignore[attr-defined] # a Name, checked
            field = call.args[0].id  # type: ignore[attr-defined] # checked at load
            return _tracking(name, field)
        return self._evaluated(node)

    def _compare(self, node: ast.Compare) -> _Node:
        left = self._node(node.left)
        if len(node.ops) == 1:
            return _single_compare(
                type(node.ops[0]), left, self._node(node.comparators[0])
            )
        steps = [
            (type(op), self._node(comparator))
            for op, comparator in zip(node.ops, node.comparators, strict=True)
        ]

        def chained(
            record: Mapping[str, Any],
            previous: Mapping[str, Any] | None,
            config: Mapping[str, Any] | None,
        ) -> bool:
            value = left(record, previous, config)
            for op, comparator in steps:
                right = comparator(record, previous, config)
                if not _compare(op, value, right):
                    return False
                value = right
            return True

        return chained

    def _evaluated(self, node: ast.AST) -> _Node:
        """A node the compiler leaves to the evaluator (same state as `value`)."""
        evaluator = self._evaluator
        evaluate = evaluator.nodes[type(node)]

        def by_evaluator(
            record: Mapping[str, Any],
            previous: Mapping[str, Any] | None,
            config: Mapping[str, Any] | None,
        ) -> Any:  # noqa: ANN401 - any expression value
            evaluator.record = record
            evaluator.previous = previous
            evaluator.config = config or {}
            return evaluate(node)

        return by_evaluator


def _tracking_call(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in TRACKING
        and len(node.args) == 1
        and isinstance(node.args[0], ast.Name)
        and not node.keywords
    )


def _constant(value: object) -> _Node:
    if value is None:
        return _NONE

    def constant(
        _record: Mapping[str, Any],
        _previous: Mapping[str, Any] | None,
        _config: Mapping[str, Any] | None,
    ) -> object:
        return value

    return constant


def _none(
    _record: Mapping[str, Any],
    _previous: Mapping[str, Any] | None,
    _config: Mapping[str, Any] | None,
) -> None:
    return None


#: the literal None (`is None` tests recognise it)
_NONE: _Node = _none


def _field(name: str, default: object) -> _Node:
    """A field by name; absent, what the evaluator answers (None, or a function)."""

    def field(
        record: Mapping[str, Any],
        _previous: Mapping[str, Any] | None,
        _config: Mapping[str, Any] | None,
    ) -> object:
        return record.get(name, default)

    return field


def _single_compare(op: type[ast.cmpop], left: _Node, right: _Node) -> _Node:
    if (op is ast.Is or op is ast.IsNot) and right is _NONE:
        # `x is None`: a literal right side needs no evaluation
        is_none = op is ast.Is

        def is_test(
            record: Mapping[str, Any],
            previous: Mapping[str, Any] | None,
            config: Mapping[str, Any] | None,
        ) -> bool:
            return (left(record, previous, config) is None) is is_none

        return is_test

    def compare(
        record: Mapping[str, Any],
        previous: Mapping[str, Any] | None,
        config: Mapping[str, Any] | None,
    ) -> bool:
        return _compare(
            op, left(record, previous, config), right(record, previous, config)
        )

    return compare


def _bool_op(conjunction: bool, values: list[_Node]) -> _Node:  # noqa: FBT001 - and / or
    """The `and`/`or` of simpleeval: the last value evaluated (False when none)."""
    if conjunction:

        def all_of(
            record: Mapping[str, Any],
            previous: Mapping[str, Any] | None,
            config: Mapping[str, Any] | None,
        ) -> object:
            result: object = False
            for value in values:
                result = value(record, previous, config)
                if not result:
                    break
            return result

        return all_of

    def any_of(
        record: Mapping[str, Any],
        previous: Mapping[str, Any] | None,
        config: Mapping[str, Any] | None,
    ) -> object:
        result: object = False
        for value in values:
            result = value(record, previous, config)
            if result:
                break
        return result

    return any_of


def _not(operand: _Node) -> _Node:
    def negated(
        record: Mapping[str, Any],
        previous: Mapping[str, Any] | None,
        config: Mapping[str, Any] | None,
    ) -> bool:
        return not operand(record, previous, config)

    return negated


def _tracking(name: str, field: str) -> _Node:
    if name == "previous":

        def previous_value(
            _record: Mapping[str, Any],
            previous: Mapping[str, Any] | None,
            _config: Mapping[str, Any] | None,
        ) -> object:
            return None if previous is None else previous.get(field)

        return previous_value

    def changed(
        record: Mapping[str, Any],
        previous: Mapping[str, Any] | None,
        _config: Mapping[str, Any] | None,
    ) -> bool:
        # exprlang's `_Evaluator._tracked`
        if previous is None or field not in previous or field not in record:
            return False
        return bool(tracked_value(record[field]) != previous[field])

    return changed


def compile_condition(expression: Expression) -> Expression:
    """The expression with its nodes compiled (same values, same errors).

    Args:
        expression: a checked expression.

    Returns:
        A `Condition` evaluating it.
    """
    return Condition(expression)
