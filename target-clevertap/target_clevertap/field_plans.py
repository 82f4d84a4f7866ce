"""A stream's field plan as one straight-line Python function (made once per stream).

`properties._record_values` used to walk the plan (field, output key, converter)
for every record: a loop step, a tuple unpacked and the same per-field tests each
time, about a fifth of the properties stage. The plan is fixed per stream, so it
is written out once as the source of a function with one block per field, in the
plan's order (the properties keep their key order), and compiled. The source holds
only `repr()`s of the field names and output keys (a literal, whatever the
mapping says) and names bound to the plan's converters; each block does what the
loop did for its field:

- a null: the key with None when `null_values` is `send`, else nothing;
- a field without converter: plain text as it is (cut when too long), booleans
  and integers as they are (what `values._convert` makes of them), other values
  through `values._convert`;
- a field with one: its converter;
- an object value, or a key too long for CleverTap: `properties._put_field`
  (addresses flattened, keys cut), as before.

`tests/target_clevertap/test_cpu_shortcuts.py` holds it to the loop's results.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from target_clevertap.values import MAX_VALUE_BYTES, SHORT_TEXT, _convert, _fit

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from target_clevertap.mapping import PropertySpec
    from target_clevertap.payload_types import SchemaInfo, _Out

    #: (field, output key or "" for the general path, converter or None)
    PlanItem = tuple[str, str, Callable[[object, _Out], object] | None]
    #: the general path of one field: (props, field, value, spec, schema, out)
    General = Callable[
        [dict[str, Any], str, object, PropertySpec, SchemaInfo, _Out], None
    ]
    #: (record.get, props, out, send nulls, spec, schema) -> None
    Fill = Callable[
        [Callable[[str], object], dict[str, Any], _Out, bool, PropertySpec, SchemaInfo],
        None,
    ]


def _block(index: int, item: PlanItem) -> list[str]:
    """The source lines of one field (indented for the function body)."""
    name, out_key, convert = item
    field = repr(name)
    if not out_key:  # a key to cut: the general path, nulls too
        return [f"    general(props, {field}, get({field}), spec, schema, out)"]
    key = repr(out_key)
    lines = [
        f"    v = get({field})",
        "    if v is None:",
        "        if send_nulls:",
        f"            props[{key}] = None",
    ]
    if convert is None:
        lines += [
            "    elif type(v) is str:",
            (
                f"        props[{key}] = v if len(v) <= SHORT_TEXT else "
                f"_fit(v, MAX_VALUE_BYTES, 'value', {key}, out)"
            ),
            "    elif type(v) is bool or type(v) is int:",  # as `_convert` gives them
            f"        props[{key}] = v",
            "    elif type(v) is dict:",
            f"        general(props, {field}, v, spec, schema, out)",
            "    else:",
            f"        props[{key}] = _convert({key}, v, None, '', out)",
        ]
    else:
        lines += [
            "    elif type(v) is dict:",
            f"        general(props, {field}, v, spec, schema, out)",
            "    else:",
            f"        props[{key}] = convert_{index}(v, out)",
        ]
    return lines


def compile_plan(plan: Sequence[PlanItem], general: General) -> Fill:
    """One function doing what walking the plan does, field by field.

    Args:
        plan: the stream's field plan, in property order.
        general: the general path of one field (`properties._put_field`).

    Returns:
        `fill(get, props, out, send_nulls, spec, schema)`, which puts the
        record's converted values into `props`.
    """
    namespace: dict[str, Any] = {
        "general": general,
        "SHORT_TEXT": SHORT_TEXT,
        "MAX_VALUE_BYTES": MAX_VALUE_BYTES,
        "_convert": _convert,
        "_fit": _fit,
    }
    body: list[str] = []
    for index, item in enumerate(plan):
        if item[2] is not None:
            namespace[f"convert_{index}"] = item[2]
        body += _block(index, item)
    source = "\n".join(
        [
            "def fill(get, props, out, send_nulls, spec, schema):",
            "    v = None",
            *body,
        ]
    )
    # the source holds only repr() literals and the names bound above
    exec(compile(source, "<field plan>", "exec"), namespace)  # noqa: S102 - see above
    fill: Fill = namespace["fill"]
    return fill
