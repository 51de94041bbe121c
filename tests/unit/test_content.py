"""What a sent message said, kept for the console: only for types that allow it, only with the operator's consent
to personal data, never HTML or documents, and read back by message id."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from channels.rendering.render import Rendered
from consumers import hooks
from consumers.observe.content_index import ContentIndex
from consumers.pipeline.delivery import DeliveryHooks
from consumers.topics import topic_specs
from schemas.catalog import CatalogEntry
from schemas.content import MAX_PART_CHARS, ContentErased, MessageContent
from schemas.settings import Settings
from tests.fakes import ScriptedSender
from tests.unit.test_delivery import NOW, dispatch, record, stage

pytestmark = pytest.mark.unit


async def sent_content(d_type: str, *, enabled: bool = True, channel: str = "email") -> list[MessageContent]:
    rig = stage(ScriptedSender())
    rig.stage.hooks = DeliveryHooks(keep_content=hooks.keep_content(rig.publisher, rig.stage.catalog, rig.clock,
                                                                    enabled=enabled))
    d = dispatch(event_type=d_type, channel=channel, payload=rig.stage.catalog.types[d_type].sample)
    await rig.stage.handle(record(d))
    assert [s.status.value for s in rig.publisher.statuses()][-1] == "sent"
    return [MessageContent.model_validate_json(r.value) for r in rig.publisher.on("content")]


async def test_content__a_type_that_allows_it_keeps_its_text_parts_but_never_the_html() -> None:
    [content] = await sent_content("order.confirmed")
    assert content.message_id == "msg-1" and content.channel == "email" and content.locale == "es"
    assert content.recipient_id == "u1"  # what `herald forget` finds it by
    assert set(content.parts) == {"subject", "text"}
    assert "1001" in content.parts["subject"] + content.parts["text"]


async def test_content__nothing_is_kept_while_the_operator_has_not_allowed_personal_data() -> None:
    assert await sent_content("order.confirmed", enabled=False) == []


async def test_content__a_type_that_does_not_allow_it_keeps_nothing() -> None:
    assert not rig_catalog_entry("payment.confirmed").show_content
    assert await sent_content("payment.confirmed") == []


def test_content__a_critical_type_may_not_ask_to_be_shown() -> None:
    with pytest.raises(ValueError, match="never shown"):
        CatalogEntry(category="transactional", priority="critical", channels=["sms"], ttl=timedelta(minutes=10),
                     show_content=True)


def test_content__the_index_keeps_the_newest_per_message_and_prunes_by_time(tmp_path: Path) -> None:
    index = ContentIndex(tmp_path / "c.sqlite")
    try:
        def row(offset: int, subject: str, minutes: int) -> tuple[int, int, bytes]:
            c = MessageContent(message_id="msg-1", event_type="order.confirmed", channel="email", locale="es",
                               template="order.confirmed/email", parts={"subject": subject},
                               at=NOW + timedelta(minutes=minutes))
            return (0, offset, c.model_dump_json().encode())

        index.add([row(0, "first", 0), row(1, "second", 1), (0, 2, b"not json")], {0: 3})
        found = index.content("msg-1")
        assert found is not None and found.parts == {"subject": "second"}
        assert index.position(0) == 3 and index.skipped == 1
        assert index.prune((NOW + timedelta(minutes=2)).timestamp()) == 1
        assert index.content("msg-1") is None
    finally:
        index.close()


def test_content__an_erased_record_deletes_the_content_read_before_it_or_in_the_same_batch(tmp_path: Path) -> None:
    index = ContentIndex(tmp_path / "c.sqlite")
    try:
        def content(message_id: str, offset: int) -> tuple[int, int, bytes]:
            c = MessageContent(message_id=message_id, recipient_id="user-1", event_type="order.confirmed",
                               channel="email", locale="es", template="order.confirmed/email",
                               parts={"subject": "Pedido 77"}, at=NOW)
            return (0, offset, c.model_dump_json().encode())

        def erased(message_id: str, offset: int) -> tuple[int, int, bytes]:
            return (0, offset, ContentErased(message_id=message_id, at=NOW).model_dump_json().encode())

        assert index.add([content("msg-1", 0), content("msg-2", 1), content("msg-3", 2)], {0: 3}) == 3
        # Read later, and in the batch of the content it replaces; an erasure of an unknown message is harmless.
        assert index.add([erased("msg-1", 3), content("msg-4", 4), erased("msg-4", 5), erased("msg-9", 6)],
                         {0: 7}) == 0
        assert index.content("msg-1") is None and index.content("msg-4") is None
        assert index.content("msg-2") is not None and index.count() == 2 and index.skipped == 0
        # Erasures are applied even when older than the window (`since`), which only holds back contents.
        index.add([erased("msg-2", 7)], {0: 8}, since=(NOW + timedelta(days=1)).timestamp())
        assert index.content("msg-2") is None and index.content("msg-3") is not None
    finally:
        index.close()


def test_content__the_topic_expires_with_the_timeline_window_and_is_compacted() -> None:
    [spec] = [s for s in topic_specs() if s.short == "content"]
    configs = spec.configs(Settings(timeline_retention=timedelta(days=2)))
    # Compacted too: `herald forget`'s erasure record replaces a person's content in the log, not only in indexes.
    assert configs == {"cleanup.policy": "compact,delete", "retention.ms": str(2 * 86_400_000)}


async def test_content__a_long_part_is_cut_at_the_limit_and_marked() -> None:
    rig = stage(ScriptedSender())
    keep = hooks.keep_content(rig.publisher, rig.stage.catalog, rig.clock, enabled=True)
    long = "x" * (MAX_PART_CHARS + 10)
    await keep(dispatch(), Rendered("order.confirmed/email", "es", {"subject": "s", "text": long, "html": long}))
    [content] = [MessageContent.model_validate_json(r.value) for r in rig.publisher.on("content")]
    assert len(content.parts["text"]) == MAX_PART_CHARS and content.truncated and "html" not in content.parts


def rig_catalog_entry(event_type: str) -> CatalogEntry:
    return stage(ScriptedSender()).stage.catalog.types[event_type]
