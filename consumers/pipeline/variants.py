"""Template variants (catalog `variants`): which variant a message gets.

The choice is a function of the message id alone, so a retry, a redelivered dispatch, a replayed event and every
worker give the same message the same variant, with no state to keep: the id's SHA-256 is read as a number and
falls into one of the weighted buckets, taken in name order (reordering the catalog's YAML changes no message's
variant; changing a weight moves only the messages whose bucket moved). A fallback message keeps the variant of the
message it replaces (`next_dispatch` copies the dispatch), so a person sees one variant whatever the channel.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from schemas.catalog import Catalog
from schemas.dispatch import Dispatch
from schemas.experiments import Variant


def bucket(message_id: str, total: int) -> int:
    """Where `message_id` falls in [0, total): uniform, from its SHA-256 (64 bits, so no visible modulo bias)."""
    digest = hashlib.sha256(message_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % total


def choose_variant(variants: Mapping[str, Variant], message_id: str) -> str | None:
    """The variant of the message `message_id` among `variants` (None when the type has none)."""
    total = sum(v.weight for v in variants.values())
    if total <= 0:
        return None
    point = bucket(message_id, total)
    for name in sorted(variants):
        point -= variants[name].weight
        if point < 0:
            return name
    raise AssertionError("unreachable: the buckets cover [0, total)")


def variant_folder(catalog: Catalog, d: Dispatch) -> str | None:
    """The folder of the templates a dispatch's variant renders with (None: the type's own). A variant the catalog
    no longer has renders the type's own templates; its statuses still name it, as its earlier ones did."""
    entry = catalog.get(d.event_type)
    variant = entry.variants.get(d.variant) if entry is not None and d.variant else None
    return variant.templates if variant is not None else None
