"""References resolved without the identity map, where the mapping allows it.

When a stream's profile identity is a template of the record's Id alone (the
preset's `SF_Contact_{Id}`, `SF_Lead_{Id}`), a reference to one of its records can
be resolved from the Id itself: the identity map is not needed. So a store that
was lost (or a referenced record loaded before the store existed) does not turn
references into `unresolved_reference` rejects.

A Salesforce Id's first three characters name its object (the key prefix;
Salesforce Help, "Standard Field Record ID Prefix Decoder", article 000385203:
Account 001, Contact 003, Opportunity 006, Lead 00Q...), which tells a `WhoId`'s
Contact from its Lead and keeps an Id of another object from being taken for one.

The map still comes first: a converted Lead resolves to its Contact, and an Id the
map knows resolves as the map says. The computed identity is used only for a
reference the map has never seen, at the end of the input (after every record of
the run had its chance to register).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from target_clevertap.mapping import TEMPLATE_FIELD
from target_clevertap.payloads import RecordReject, identity_text, render_template

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from target_clevertap.mapping import StreamMapping

#: key prefixes of the objects references usually point to (article 000385203)
KEY_PREFIXES = {
    "Account": "001",
    "Contact": "003",
    "Opportunity": "006",
    "Lead": "00Q",
    "Task": "00T",
    "Event": "00U",
    "Case": "500",
}
#: the objects a polymorphic `Who` reference may name
WHO_OBJECTS = ("Contact", "Lead")


def own_identity_patterns(
    mappings: Iterable[StreamMapping],
) -> tuple[re.Pattern[str], ...]:
    """Patterns of the profile identities this target's own templates make.

    A profile whose identity one of them matches (`SF_Contact_...` when a
    mapping says `template: "SF_Contact_{Id}"`) came from the CRM import, not
    from the app: a Lead whose email is on its converted Contact's profile must
    not join it (lead conversion links those), so such matches are left out.

    Args:
        mappings: the stream mappings of the run.

    Returns:
        One anchored pattern per distinct profile identity template.
    """
    texts = {
        m.profile.identity.template.text
        for m in mappings
        if m.profile is not None and m.profile.identity.template is not None
    }
    # split() with the field group alternates literal, field, literal...
    return tuple(
        re.compile(
            "^"
            + ".+".join(re.escape(part) for part in TEMPLATE_FIELD.split(text)[::2])
            + "$",
            re.DOTALL,
        )
        for text in sorted(texts)
    )


class ComputedReferences:
    """Identities computed from an Id, for streams whose identity allows it."""

    def __init__(self, templates: Mapping[str, str]) -> None:
        """Set up.

        Args:
            templates: stream -> its profile identity template of `{Id}` alone.
        """
        self.templates = dict(templates)

    @classmethod
    def from_mappings(cls, mappings: Mapping[str, StreamMapping]) -> ComputedReferences:
        """The streams whose profile identity is a template of `{Id}` alone.

        Args:
            mappings: the configured mappings by stream.

        Returns:
            The resolver.
        """
        templates = {}
        for stream, mapping in mappings.items():
            profile = mapping.profile
            if mapping.skip or profile is None:
                continue
            spec = profile.identity
            if (
                spec.kind == "template"
                and spec.key == "identity"
                and spec.template is not None
                and spec.template.fields == ("Id",)
            ):
                templates[stream] = spec.value
        return cls(templates)

    def object_of(self, obj: str, record_id: str) -> str | None:
        """Which computable object an Id referenced as `obj` belongs to.

        Args:
            obj: the referenced object (`Who` for a WhoId).
            record_id: the Id.

        Returns:
            The object, or None when its identity cannot be computed.
        """
        candidates = WHO_OBJECTS if obj == "Who" else (obj,)
        for name in candidates:
            if name not in self.templates:
                continue
            prefix = KEY_PREFIXES.get(name)
            if prefix is None and obj != "Who":
                return name  # an object of unknown prefix: the reference says
            if prefix is not None and record_id.startswith(prefix):
                return name
        return None

    def identities(self, obj: str, record_id: str) -> list[str] | None:
        """The identity of a referenced record, computed from its Id.

        Args:
            obj: the referenced object (`Who`, `Contact`, `Lead`, a stream).
            record_id: the Id.

        Returns:
            The identity as a one-item list, or None when it cannot be computed.
        """
        name = self.object_of(obj, record_id)
        if name is None:
            return None
        template = self.templates[name]
        try:
            text = render_template(template, ("Id",), {"Id": record_id})
            ident = identity_text(text, template)
        except RecordReject:
            return None
        return [ident] if ident else None
