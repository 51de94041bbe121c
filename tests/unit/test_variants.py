"""Template variants: a message's variant follows from its id alone, in the weights' proportions; the dispatch, its
fallback and every status carry it; the renderer takes the variant's parts; `herald templates check` renders every
variant and says where one covers only some of the type's languages."""

from __future__ import annotations

import math
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from channels.rendering.preview import sample_context
from channels.rendering.render import BUNDLED_TEMPLATES, Renderer
from channels.rendering.variants import render_variants, variant_file_problems
from consumers.cli.publish import make_event
from consumers.observe.metrics import Metrics
from consumers.pipeline.fallback import next_dispatch
from consumers.pipeline.router import Router
from consumers.pipeline.status import StatusEmitter
from consumers.pipeline.variants import bucket, choose_variant, variant_folder
from schemas.catalog import Catalog, CatalogEntry
from schemas.dispatch import Dispatch
from schemas.experiments import Variant
from schemas.status import DeliveryStatus, Status
from tests.fakes import RecordingPublisher

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
BUNDLED = Catalog.load(BUNDLED_TEMPLATES / "catalog.yaml")


def variants(**weights: int) -> dict[str, Variant]:
    return {name: Variant(weight=w) for name, w in weights.items()}


@pytest.mark.parametrize(("weights", "n"), [
    ({"a": 50, "b": 50}, 4000),
    ({"a": 70, "b": 30}, 4000),
    ({"a": 1, "b": 1, "c": 2}, 4000),
    ({"control": 90, "bold": 10}, 4000),
    ({"a": 0, "b": 3}, 500),  # a weight of 0 turns a variant off
], ids=["50-50", "70-30", "1-1-2", "90-10", "off"])
def test_choose_variant__splits_as_weighted_within_four_standard_deviations(weights: dict[str, int], n: int) -> None:
    chosen = [choose_variant(variants(**weights), f"msg-{i:06d}") for i in range(n)]
    total = sum(weights.values())
    for name, weight in weights.items():
        share = weight / total
        sd = math.sqrt(share * (1 - share) / n)
        assert abs(chosen.count(name) / n - share) <= 4 * sd + 1e-12, (name, chosen.count(name))


def test_choose_variant__the_same_id_always_gets_the_same_variant_whatever_the_order_of_the_catalog() -> None:
    ids = [f"msg-{i}" for i in range(300)]
    forward = [choose_variant({"a": Variant(weight=30), "b": Variant(weight=70)}, m) for m in ids]
    backward = [choose_variant({"b": Variant(weight=70), "a": Variant(weight=30)}, m) for m in ids]
    assert forward == backward == [choose_variant(variants(a=30, b=70), m) for m in ids]
    assert choose_variant({}, "msg-1") is None
    assert bucket("msg-1", 100) == bucket("msg-1", 100) and 0 <= bucket("msg-1", 7) < 7


@pytest.mark.parametrize(("raw", "problem"), [
    ({"A": {"weight": 1}}, "short lowercase words"),
    ({"a b": {"weight": 1}}, "short lowercase words"),
    ({"a": {"weight": 0}, "b": {"weight": 0}}, "at least one variant needs a weight above 0"),
    ({"a": {"weight": -1}}, "greater than or equal to 0"),
    ({"a": {"weight": 1, "templates": "../other.type"}}, "a folder inside the type's folder"),
    ({"a": {"weight": 1, "templates": "/etc"}}, "a folder inside the type's folder"),
    ({"a": {"weight": 1, "colour": "red"}}, "Extra inputs are not permitted"),
], ids=["upper-case", "space", "all-off", "negative", "dot-dot", "absolute", "unknown-key"])
def test_catalog__variants_are_validated(raw: dict[str, Any], problem: str) -> None:
    entry = {"category": "transactional", "priority": "normal", "channels": ["email"], "ttl": "1d"}
    with pytest.raises(ValidationError, match=problem):
        CatalogEntry.model_validate({**entry, "variants": raw})


def route(event_type: str = "payment.due", **to: str) -> list[Dispatch]:
    router = Router(BUNDLED, ("email", "sms", "webhook"), clock=lambda: NOW)
    person = {"id": "user-42", "email": "ana@example.com", "phone": "+34600111222", **to}
    event = make_event(event_type, person, BUNDLED.types[event_type].sample)
    event["time"] = NOW.isoformat()
    result = router.route(orjson.dumps(event))
    assert result.rejection is None, result.rejection
    return result.dispatches


def test_router__the_dispatch_carries_its_variant_its_fallback_keeps_it_and_statuses_name_it() -> None:
    [d] = route()
    assert d.variant == choose_variant(BUNDLED.types["payment.due"].variants, d.message_id)
    fallback = next_dispatch(d)
    assert fallback is not None and fallback.variant == d.variant and fallback.message_id != d.message_id
    retry = Dispatch.model_validate_json(d.model_copy(update={"attempt": 2}).model_dump_json())
    assert retry.variant == d.variant  # on the wire and back
    statuses = StatusEmitter(RecordingPublisher(), Metrics(), b"s", lambda: NOW)
    assert {statuses.describe(x, s).variant for x in (d, fallback) for s in (Status.ACCEPTED, Status.SENT)} == {
        d.variant}
    assert DeliveryStatus.model_validate_json(statuses.describe(d, Status.SENT).model_dump_json()).variant == d.variant


def test_dispatch__a_type_without_variants_sends_no_variant_field() -> None:
    [d] = route("order.confirmed")
    assert d.variant is None and "variant" not in orjson.loads(d.model_dump_json())  # older workers forbid it
    assert variant_folder(BUNDLED, d) is None


def test_renderer__a_variant_replaces_the_parts_its_folder_has_and_keeps_the_others() -> None:
    renderer = Renderer(globals_={"brand": "Herald", "document_url": None})
    entry = BUNDLED.types["payment.due"]
    context = sample_context(entry.sample)
    a = renderer.render("payment.due", "email", locale="es-ES", context=context)
    b = renderer.render("payment.due", "email", locale="es-ES", context=context, variant_folder="variants/b")
    assert a["subject"].startswith("Recordatorio de pago") and b["subject"].startswith("Factura INV-2026-0042: 267,81")
    assert (a["html"], a["text"]) == (b["html"], b["text"])  # the parts variant b does not have are the type's
    sms_a = renderer.render("payment.due", "sms", locale="de", context=context)
    assert renderer.render("payment.due", "sms", locale="de", context=context, variant_folder="variants/b") == sms_a


def templates_copy(tmp_path: Path) -> Path:
    root = tmp_path / "templates"
    shutil.copytree(BUNDLED_TEMPLATES, root, symlinks=False, ignore=shutil.ignore_patterns("*.yaml", "*.md"))
    return root


def test_check__renders_every_variant_and_finds_nothing_wrong_with_the_bundled_ones() -> None:
    renderer = Renderer(globals_={"brand": "Herald", "document_url": None})
    problems, renders = render_variants(renderer, "payment.due", BUNDLED.types["payment.due"], ["en", "es", "de"])
    assert problems == [] and renders == 6  # email in three languages, two sample recipients each


def test_check__a_variant_missing_a_language_a_stray_file_or_its_folder_is_a_problem(tmp_path: Path) -> None:
    root = templates_copy(tmp_path)
    folder = root / "payment.due" / "variants" / "b"
    (folder / "email.de.subject.j2").unlink()
    (folder / "email.en.subjet.j2").write_text("typo")
    (folder / "sms.de.text.j2").write_text("{{ payload.nope }}")
    renderer = Renderer(root, globals_={"brand": "Herald", "document_url": None})
    entry = BUNDLED.types["payment.due"].model_copy(update={"variants": {
        "a": Variant(weight=1), "b": Variant(weight=1, templates="variants/b"),
        "c": Variant(weight=1, templates="variants/c")}})

    problems = variant_file_problems(renderer, "payment.due", entry)
    assert "payment.due variant b: no variants/b/email.de.subject.j2 (its de readers would get the type's own " \
           "subject)" in problems
    assert any("email.en.subjet.j2 is not <channel>.<locale>.<part>.j2" in p for p in problems)
    assert any("sms.en.text.j2" in p for p in problems)  # an SMS part replaced in German only
    assert "payment.due variant c: no templates in payment.due/variants/c/" in problems
    rendered_problems, _ = render_variants(renderer, "payment.due", entry, ["de"])
    assert any("sms.de variant b" in p and "nope" in p for p in rendered_problems)
