"""The catalog's `digest` (schemas/digests.py): what it refuses, and what previews and `herald templates check`
render for a digest type (`payload.events` and `payload.count`)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from channels.rendering.preview import matrix_row, render_sample
from channels.rendering.render import BUNDLED_TEMPLATES, Renderer
from schemas.catalog import Catalog

pytestmark = pytest.mark.unit

COMMENT: dict[str, Any] = {"category": "transactional", "priority": "normal", "channels": ["email"], "ttl": "1d",
                           "required": ["thread_id", "author", "excerpt"],
                           "digest": {"window": "1h", "max_events": 3, "key": "thread_id"}}


def comment(author: str) -> dict[str, str]:
    return {"thread_id": "T-1", "author": author, "excerpt": "hello"}


@pytest.mark.parametrize(("change", "error"), [
    ({"priority": "critical"}, "a critical type cannot be a digest"),
    ({"digest": {"window": "1h", "key": "post_id"}}, "digest.key 'post_id' must be one of the required fields"),
    ({"digest": {"window": "0s"}}, "window must be positive"),
    ({"digest": {"window": "1h", "max_events": 0}}, "greater than or equal to 1"),
    ({"digest": {"window": "1h", "samples": [{"thread_id": "T"}]}}, "digest.samples[0] lacks required fields"),
    ({"schedule": [{"field": "at", "before": "1h"}]}, "cannot have `schedule`"),
])
def test_catalog__a_digest_that_cannot_work_is_refused(change: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=re.escape(error)):
        Catalog.model_validate({"types": {"comment.posted": {**COMMENT, **change}}})


def test_catalog__a_digest_type_previews_its_samples_as_events_and_count() -> None:
    entry = Catalog.model_validate({"types": {"comment.posted": {
        **COMMENT, "sample": comment("Marta"),
        "digest": {"window": "1h", "samples": [comment("Marta"), comment("Jonas")]}}}}).types["comment.posted"]
    assert entry.template_payload() == {"events": [comment("Marta"), comment("Jonas")], "count": 2}
    assert entry.template_payload(comment("Lucía")) == {"events": [comment("Lucía")], "count": 1}
    without = entry.model_copy(update={"digest": entry.digest.model_copy(update={"samples": []})})  # type: ignore[union-attr]
    assert without.template_payload() == {"events": [comment("Marta")], "count": 1}


def test_bundled__comment_posted_renders_three_comments_in_every_language_and_channel() -> None:
    entry = Catalog.load(BUNDLED_TEMPLATES / "catalog.yaml").types["comment.posted"]
    assert entry.digest is not None and len(entry.digest.samples) == 3
    renderer = Renderer(BUNDLED_TEMPLATES)
    row = matrix_row(renderer, "comment.posted", entry, ["en", "es", "de"], template_globals={"brand": "Herald"})
    assert not row.failing and set(row.channels) == {"email", "push", "webhook"}
    subjects = {locale: render_sample(renderer, "comment.posted", "email", locale, entry.template_payload(),
                                      template_globals={"brand": "Herald"})["subject"] for locale in ("en", "es", "de")}
    assert subjects == {"en": "3 new comments on Weekend trip to Lisbon",
                        "es": "3 comentarios nuevos en «Weekend trip to Lisbon»",
                        "de": "3 neue Kommentare zu „Weekend trip to Lisbon“"}
    text = render_sample(renderer, "comment.posted", "email", "en", entry.template_payload(),
                         template_globals={"brand": "Herald"})["text"]
    assert all(f"- {s['author']}: {s['excerpt']}" in text for s in entry.digest.samples)
