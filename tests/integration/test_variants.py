"""Issue 16, template variants on the real pipeline: 1,000 emails of a 70/30 variant type split about as weighted,
every status of a message names its variant (the one its id chooses), and a variant's templates are what its
emails say."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from consumers.app import BUNDLED_CATALOG
from consumers.cli.publish import make_event
from consumers.pipeline.variants import choose_variant
from schemas.catalog import Catalog
from schemas.status import Status
from tests.integration.harness import Stack

pytestmark = pytest.mark.integration

N = 1000
WEIGHTS = {"a": 70, "b": 30}


def catalog_with_variants(stack: Stack, tmp_path: Path) -> Catalog:
    """The tests' catalog, with `signup.welcome` (one email, no attachment) split 70/30 between its own templates."""
    assert stack.settings.catalog is not None
    raw = yaml.safe_load(Path(stack.settings.catalog).read_text(encoding="utf-8"))
    raw["types"]["signup.welcome"]["variants"] = {name: {"weight": w} for name, w in WEIGHTS.items()}
    path = tmp_path / "catalog.variants.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    stack.settings = stack.settings.model_copy(update={"catalog": path})
    return Catalog.load(path)


async def test_variants__1000_messages_split_as_weighted_and_every_status_names_its_variant(
        stack: Stack, tmp_path: Path) -> None:
    catalog = catalog_with_variants(stack, tmp_path)
    entry = catalog.types["signup.welcome"]
    stack.start_worker()
    events = [make_event("signup.welcome", {"id": f"user-v{i}", "email": f"v{i}@example.org"}, entry.sample,
                         source="it/variants", channels=["email"]) for i in range(N)]
    await stack.publish(events)
    await stack.wait_statuses(lambda ss: sum(s.status is Status.SENT for s in ss) >= N, timeout=120)

    by_message: dict[str, set[str | None]] = {}
    for s in stack.statuses:
        by_message.setdefault(s.message_id, set()).add(s.variant)
    sent = {s.message_id: s.variant for s in stack.statuses if s.status is Status.SENT}
    assert len(sent) == N
    # Every status (accepted, sent) of a message names one variant: the one its id chooses.
    assert all(len(found) == 1 for found in by_message.values()), by_message
    assert all(variant == choose_variant(entry.variants, mid) for mid, variant in sent.items())
    counts = Counter(sent.values())
    for name, weight in WEIGHTS.items():
        share = weight / sum(WEIGHTS.values())
        sd = math.sqrt(share * (1 - share) / N)  # the binomial's standard deviation of the share
        assert abs(counts[name] / N - share) < 4 * sd, counts


def due(invoice: str, person: dict[str, Any]) -> dict[str, Any]:
    payload = {**Catalog.load(BUNDLED_CATALOG).types["payment.due"].sample, "invoice_number": invoice}
    # Fixed event ids, so the message ids and their variants are the same on every run (both variants appear).
    return make_event("payment.due", person, payload, source="it/variants", channels=["email"],
                      id=f"evt-variants-{invoice}")


async def test_variants__each_email_says_what_its_variants_templates_say(stack: Stack) -> None:
    # The bundled payment.due: variant b's folder (variants/b/) replaces the email's subject, in every language.
    stack.start_worker()
    people = [{"id": f"user-d{i}", "email": f"d{i}@example.org", "locale": ("en-GB", "es-ES", "de-DE")[i % 3]}
              for i in range(12)]
    events = [due(f"INV-V{i:03d}", person) for i, person in enumerate(people)]
    await stack.publish(events)
    await stack.wait_statuses(lambda ss: sum(s.status is Status.SENT for s in ss) >= len(events), timeout=90)
    variant_of = {s.event_id: s.variant for s in stack.statuses if s.status is Status.SENT}
    subjects = [str(m["Subject"]).strip() for m in stack.sink.snapshot()]  # a folded header starts with a space
    own = {"en": "Payment reminder", "es": "Recordatorio de pago", "de": "Zahlungserinnerung"}
    b = {"en": "Invoice", "es": "Factura", "de": "Rechnung"}
    for event, person in zip(events, people, strict=True):
        invoice, lang = event["data"]["payload"]["invoice_number"], person["locale"][:2]
        [subject] = [text for text in subjects if invoice in text]
        expected = b[lang] if variant_of[event["id"]] == "b" else own[lang]
        assert subject.startswith(expected), (variant_of[event["id"]], subject)
    assert set(variant_of.values()) == {"a", "b"}
