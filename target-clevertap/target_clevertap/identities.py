"""Who a record is about: identity values, templates and references (pure)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from target_clevertap.payload_types import RecordReject, UnresolvedReference
from target_clevertap.values import (
    MAX_IDENTITY_CHARS,
    PLACEHOLDER_IDENTITIES,
    normalise_email,
    scalar_text,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from target_clevertap.mapping import IdentitySpec, StreamMapping
    from target_clevertap.payload_types import Resolver


def identity_text(value: object, field_name: str) -> str | None:
    """Normalise an identity value; None when missing or a placeholder.

    Args:
        value: the raw value.
        field_name: the field it came from (emails are lower-cased).

    Returns:
        The identity, or None.

    Raises:
        RecordReject: when the value is too long or an invalid email.
    """
    if value is None:
        return None
    text = scalar_text(value).strip()
    if text.lower() in PLACEHOLDER_IDENTITIES:
        return None
    if field_name.lower().endswith("email"):
        text = normalise_email(text, field_name)
    if len(text) >= MAX_IDENTITY_CHARS:
        msg = f"identity from {field_name} is {MAX_IDENTITY_CHARS} chars or more"
        raise RecordReject(msg, code="identity_too_long", field_name=field_name)
    return text


def render_template(
    template_text: str, fields: Iterable[str], record: Mapping[str, Any]
) -> str:
    """Fill `{Field}` placeholders.

    Args:
        template_text: the template.
        fields: the placeholders in it.
        record: the input record.

    Returns:
        The filled text.

    Raises:
        RecordReject: when a placeholder field is empty.
    """
    text = template_text
    for name in fields:
        value = record.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            msg = f"{name} is empty (needed by {template_text!r})"
            raise RecordReject(msg, code="missing_field", field_name=name)
        text = text.replace("{" + name + "}", scalar_text(value).strip())
    return text


def resolve_identities(
    record: Mapping[str, Any],
    spec: IdentitySpec,
    resolve: Resolver,
    memo: dict[int, list[str]] | None = None,
    refs: dict[int, list[str]] | None = None,
) -> list[str]:
    """The identities (usually one) a profile or event belongs to.

    Args:
        record: the input record.
        spec: the identity spec.
        resolve: looks up (object, Id) in the identity map.
        memo: the record's identities by spec (id), for specs that depend on
            the record alone (field, template); references are looked up
            each time, since the identity map changes.
        refs: found references by spec (id), shared by calls made while the
            identity map cannot change (building a record, then registering it).

    Returns:
        Identities; empty when the record names nobody.

    Raises:
        RecordReject: when the identity is invalid.
    """
    if spec.kind == "ref":
        if refs is None:
            return _resolve_ref(record, spec, resolve)
        known = refs.get(id(spec))
        if known is None:
            known = refs[id(spec)] = _resolve_ref(record, spec, resolve)
        return known
    if memo is not None:
        known = memo.get(id(spec))
        if known is not None:
            return known
    if spec.kind == "field":
        ident = identity_text(record.get(spec.value), spec.value)
    elif spec.template is not None:
        text = render_template(spec.value, spec.template.fields, record)
        ident = identity_text(text, spec.value)
    else:
        return _resolve_ref(record, spec, resolve)
    found = [ident] if ident else []
    if memo is not None:
        memo[id(spec)] = found
    return found


def _resolve_ref(
    record: Mapping[str, Any], spec: IdentitySpec, resolve: Resolver
) -> list[str]:
    ref = record.get(spec.value)
    if ref is None or not str(ref).strip():
        return []
    return resolve(spec.ref_object or "", str(ref).strip())


# ----------------------------------------------------------------------- events


def record_persons(
    record: Mapping[str, Any],
    mapping: StreamMapping,
    resolve: Resolver,
    memo: dict[int, list[str]] | None = None,
    refs: dict[int, list[str]] | None = None,
) -> list[str]:
    """Everyone a record is about, whatever its conditions say.

    The union of what the profile's and every event's identity resolve to; an
    identity that is empty, invalid or not resolvable adds nobody. Other streams
    reference the record through this (`{ref: CaseId}`).

    Args:
        record: the input record.
        mapping: its stream mapping.
        resolve: the identity-map lookup (returns [] for unknown references).
        memo: the record's own identities by spec (see resolve_identities).
        refs: references found, by spec (see resolve_identities).

    Returns:
        The identities, in first-seen order (may be empty).
    """
    found: dict[str, None] = {}
    for spec in mapping.person_specs:
        try:
            idents = resolve_identities(record, spec, resolve, memo, refs)
        except (RecordReject, UnresolvedReference):
            continue
        found.update(dict.fromkeys(idents))
    return list(found)
