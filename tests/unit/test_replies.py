"""Two-way replies: an answer finds the last question on its channel, means what the catalog says in the person's
language, and becomes an upstream CloudEvent plus Herald's acknowledgement or help text."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from channels.rendering.render import BUNDLED_TEMPLATES, Rendered, Renderer
from channels.segments import sms_segments
from consumers.inbound.replies import (
    Interpretation,
    ReplyKind,
    acknowledgement_event,
    asks_question,
    help_event,
    interpret,
    normalize_answer,
    reply_cloudevent,
    reply_recipient,
)
from consumers.state.conversations import Conversations, Question
from consumers.state.kvstore import MemoryStore
from schemas.catalog import Catalog, CatalogEntry
from schemas.dispatch import Dispatch
from schemas.events import CloudEvent, Recipient

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
SECRET = b"test-secret"
CATALOG = Catalog.load(BUNDLED_TEMPLATES / "catalog.yaml")
PHONE = "+34600111222"


def question(locale: str = "es-ES", channel: str = "sms", *, event_type: str = "appointment.reminder",
             message_id: str = "msg-1", asked_at: datetime = NOW - timedelta(hours=1), **extra: Any) -> Question:
    return Question(message_id=message_id, recipient_id="user-42", event_type=event_type, channel=channel,
                    locale=locale, asked_at=asked_at, payload={"appointment_id": "APT-5521"}, **extra)


# --- interpret: what a reply means ---------------------------------------------------------------------------

CONFIRM, CANCEL = "confirm", "cancel"
# (id, question locale, channel, text, digits, expected kind, expected meaning)
CASES: list[tuple[str, str, str, str | None, str | None, ReplyKind, str | None]] = [
    ("es_S_confirms", "es-ES", "sms", "S", None, ReplyKind.ANSWER, CONFIRM),  # the acceptance criterion
    ("de_J_confirms", "de-DE", "whatsapp", "J", None, ReplyKind.ANSWER, CONFIRM),  # the acceptance criterion
    ("es_SI_with_accent", "es-ES", "sms", "SÍ", None, ReplyKind.ANSWER, CONFIRM),
    ("es_si_with_full_stop", "es-ES", "sms", "si.", None, ReplyKind.ANSWER, CONFIRM),
    ("es_mx_inverted_marks", "es-MX", "whatsapp", "¡Sí!", None, ReplyKind.ANSWER, CONFIRM),
    ("de_Ja_with_exclamation", "de-DE", "sms", "Ja!", None, ReplyKind.ANSWER, CONFIRM),
    ("de_NEIN_cancels", "de-DE", "sms", "NEIN", None, ReplyKind.ANSWER, CANCEL),
    ("en_lower_n_cancels", "en-GB", "sms", "n", None, ReplyKind.ANSWER, CANCEL),
    ("en_yes_with_spaces", "en", "sms", "  Yes \n", None, ReplyKind.ANSWER, CONFIRM),
    ("de_question_english_yes", "de-DE", "sms", "yes", None, ReplyKind.ANSWER, CONFIRM),
    ("fr_question_spanish_si", "fr-FR", "sms", "Si", None, ReplyKind.ANSWER, CONFIRM),
    ("keypad_1_confirms", "es-ES", "voice", None, "1", ReplyKind.ANSWER, CONFIRM),
    ("keypad_2_cancels", "de-DE", "voice", None, "2", ReplyKind.ANSWER, CANCEL),
    ("keypad_0_agent_is_the_providers", "en", "voice", None, "0", ReplyKind.IGNORED, "agent"),
    ("keypad_unknown_key", "en", "voice", None, "7", ReplyKind.NOT_UNDERSTOOD, None),
    ("unknown_word", "es-ES", "sms", "quizás", None, ReplyKind.NOT_UNDERSTOOD, None),
    ("answer_inside_a_sentence", "en", "sms", "yes please", None, ReplyKind.NOT_UNDERSTOOD, None),
    ("punctuation_only", "en", "sms", "?!", None, ReplyKind.NOT_UNDERSTOOD, None),
    ("no_text_at_all", "en", "whatsapp", None, None, ReplyKind.NOT_UNDERSTOOD, None),
    ("stop_is_the_carriers", "en", "sms", "Stop", None, ReplyKind.IGNORED, "stop"),
    ("help_is_the_carriers", "es-ES", "sms", "HELP", None, ReplyKind.IGNORED, "help"),
    ("spanish_baja_opts_out", "es-ES", "whatsapp", "Baja.", None, ReplyKind.IGNORED, "stop"),
    ("cancel_is_an_opt_out_not_an_answer", "en", "sms", "CANCEL", None, ReplyKind.IGNORED, "stop"),
    ("a_long_message_is_no_answer", "en", "sms", "yes " + "x" * 80, None, ReplyKind.NOT_UNDERSTOOD, None),
]


@pytest.mark.parametrize(("locale", "channel", "text", "digits", "kind", "meaning"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_interpret__reply_to_an_appointment_reminder(locale: str, channel: str, text: str | None,
                                                     digits: str | None, kind: ReplyKind, meaning: str | None) -> None:
    asked = question(locale, channel)

    result = interpret(text, digits, asked, CATALOG)

    assert (result.kind, result.meaning) == (kind, meaning)
    assert result.question == asked
    assert result.answer == (digits or text)


NO_QUESTION_CASES = [
    ("spontaneous_text", "Hola, ¿a qué hora abrís?", None, ReplyKind.NO_QUESTION, None),
    ("answer_word_without_a_question", "S", None, ReplyKind.NO_QUESTION, None),
    ("digits_without_a_question", None, "1", ReplyKind.NO_QUESTION, None),
    ("stop_without_a_question", "STOP", None, ReplyKind.IGNORED, "stop"),
]


@pytest.mark.parametrize(("text", "digits", "kind", "meaning"), [c[1:] for c in NO_QUESTION_CASES],
                         ids=[c[0] for c in NO_QUESTION_CASES])
def test_interpret__nothing_asked(text: str | None, digits: str | None, kind: ReplyKind, meaning: str | None) -> None:
    result = interpret(text, digits, None, CATALOG)

    assert (result.kind, result.meaning, result.question) == (kind, meaning, None)


def test_interpret__a_type_without_answers_reads_nothing() -> None:
    result = interpret("Y", None, question("en", event_type="order.confirmed"), CATALOG)

    assert result.kind is ReplyKind.NOT_UNDERSTOOD


def test_interpret__a_type_gone_from_the_catalog_is_no_question() -> None:
    result = interpret("Y", None, question("en", event_type="appointment.moved"), CATALOG)

    assert result.kind is ReplyKind.NO_QUESTION


def test_interpret__after_an_answer_chatter_gets_no_help_but_a_change_of_mind_counts() -> None:
    answered = question("es-ES", answered="confirm")

    assert interpret("gracias!", None, answered, CATALOG).kind is ReplyKind.NO_QUESTION
    assert (interpret("No", None, answered, CATALOG).kind, interpret("No", None, answered, CATALOG).meaning) == (
        ReplyKind.ANSWER, CANCEL)


def polish_catalog() -> Catalog:
    # In Polish "no" is a colloquial yes: the question's own language must win over the others.
    answers = {"confirm": {"en": ["YES"], "pl": ["TAK", "NO"]}, "cancel": {"en": ["NO"], "pl": ["NIE"]}}
    entry = {"category": "transactional", "priority": "normal", "channels": ["sms"], "ttl": "1d",
             "answers": answers}
    return Catalog.model_validate({"types": {"visit.reminder": entry}})


@pytest.mark.parametrize(("locale", "meaning"), [("pl-PL", CONFIRM), ("en-GB", CANCEL), ("de-DE", None)],
                         ids=["polish_no_confirms", "english_no_cancels", "german_no_is_ambiguous"])
def test_interpret__the_questions_language_is_matched_first(locale: str, meaning: str | None) -> None:
    result = interpret("no", None, question(locale, event_type="visit.reminder"), polish_catalog())

    assert result.meaning == meaning
    assert result.kind is (ReplyKind.ANSWER if meaning else ReplyKind.NOT_UNDERSTOOD)


@pytest.mark.parametrize(("text", "expected"), [("SÍ", "si"), ("¡Sí!", "si"), ("  Ja ! ", "ja"), ("NEIN.", "nein"),
                                                ("Ñ", "n"), ("yes  please", "yes please"), ("…", "")],
                         ids=["accent", "inverted_marks", "spaces", "full_stop", "tilde", "inner_spaces", "ellipsis"])
def test_normalize_answer__ignores_case_accents_and_punctuation(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


# --- events -----------------------------------------------------------------------------------------------------


def answer(meaning: str = CONFIRM, text: str = "S", **question_fields: Any) -> Interpretation:
    return Interpretation(ReplyKind.ANSWER, question(**question_fields), meaning, text)


@pytest.mark.parametrize(("meaning", "event_type"), [(CONFIRM, "appointment.reminder.confirmed"),
                                                     (CANCEL, "appointment.reminder.cancelled")],
                         ids=["confirm", "cancel"])
def test_reply_cloudevent__type_and_data_for_upstream(meaning: str, event_type: str) -> None:
    event = reply_cloudevent(answer(meaning, "Sí."), NOW)

    assert (event["type"], event["source"], event["subject"], event["time"]) == (
        event_type, "herald/replies", "user-42", NOW.isoformat())
    assert event["data"] == {"message_id": "msg-1", "recipient_id": "user-42", "channel": "sms", "answer": "Sí.",
                             "meaning": meaning, "appointment_id": "APT-5521"}
    assert "tenant" not in event


def test_reply_cloudevent__id_depends_on_message_and_meaning_only() -> None:
    first = reply_cloudevent(answer(CONFIRM, "S"), NOW)

    assert reply_cloudevent(answer(CONFIRM, "sí"), NOW + timedelta(minutes=5))["id"] == first["id"]
    assert reply_cloudevent(answer(CANCEL, "N"), NOW)["id"] != first["id"]
    assert reply_cloudevent(answer(CONFIRM, "S", message_id="msg-2"), NOW)["id"] != first["id"]


def test_reply_cloudevent__carries_the_tenant() -> None:
    assert reply_cloudevent(answer(tenant="acme"), NOW)["tenant"] == "acme"


@pytest.mark.parametrize("interpretation", [
    Interpretation(ReplyKind.NOT_UNDERSTOOD, question(), None, "hmm"),
    Interpretation(ReplyKind.NO_QUESTION, None, None, "hi"),
    Interpretation(ReplyKind.IGNORED, question(), "agent", "0"),
], ids=["not_understood", "no_question", "ignored"])
def test_reply_cloudevent__only_answers_go_upstream(interpretation: Interpretation) -> None:
    with pytest.raises(ValueError, match="not an answer"):
        reply_cloudevent(interpretation, NOW)
    with pytest.raises(ValueError, match="not an answer"):
        acknowledgement_event(interpretation, reply_recipient("sms", PHONE, recipient_id="user-42"), now=NOW)


def test_acknowledgement_event__goes_back_on_the_reply_channel_as_a_valid_event() -> None:
    to = reply_recipient("whatsapp", PHONE, recipient_id="user-42", locale="de-DE")

    event = acknowledgement_event(answer(CANCEL, "NEIN", channel="whatsapp", locale="de-DE", tenant="acme"), to,
                                  now=NOW)

    parsed = CloudEvent.model_validate(event)  # what the router will read
    assert (parsed.type, parsed.channels, parsed.tenant, parsed.subject) == (
        "reply.acknowledged", ["whatsapp"], "acme", "user-42")
    assert parsed.data.to == Recipient(id="user-42", phone=PHONE, locale="de-DE")
    assert parsed.data.payload == {"meaning": CANCEL, "subject_type": "appointment.reminder"}
    assert parsed.idempotencykey == parsed.id
    assert acknowledgement_event(answer(CANCEL, "n", channel="whatsapp"), to, now=NOW + timedelta(hours=1))["id"] \
        == event["id"]
    assert acknowledgement_event(answer(CONFIRM, "J", channel="whatsapp"), to, now=NOW)["id"] != event["id"]


def test_help_event__once_per_question() -> None:
    to = reply_recipient("sms", PHONE, recipient_id="user-42", locale="es-ES")

    event = help_event(question(), to, "not_understood", now=NOW)

    parsed = CloudEvent.model_validate(event)
    assert (parsed.type, parsed.channels, parsed.data.payload) == (
        "reply.help", ["sms"], {"reason": "not_understood", "subject_type": "appointment.reminder"})
    assert help_event(question(), to, "not_understood", now=NOW + timedelta(hours=3))["id"] == event["id"]
    assert help_event(question(message_id="msg-2"), to, "not_understood", now=NOW)["id"] != event["id"]


def test_help_event__without_a_question_once_per_address_and_day() -> None:
    conversations = Conversations(MemoryStore(), SECRET)
    to = reply_recipient("sms", PHONE, recipient_id=conversations.anonymous_id("sms", PHONE))

    event = help_event(None, to, "no_question", now=NOW, channel="sms")

    parsed = CloudEvent.model_validate(event)
    assert (parsed.channels, parsed.data.payload, parsed.subject) == (["sms"], {"reason": "no_question"}, to["id"])
    assert PHONE not in parsed.subject
    assert help_event(None, to, "no_question", now=NOW + timedelta(hours=2), channel="sms")["id"] == event["id"]
    assert help_event(None, to, "no_question", now=NOW + timedelta(days=1), channel="sms")["id"] != event["id"]
    with pytest.raises(ValueError, match="channel"):
        help_event(None, to, "no_question", now=NOW)


def test_reply_recipient__email_address_goes_in_email() -> None:
    assert reply_recipient("email", "ana@example.com", recipient_id="user-42", locale="es") == {
        "id": "user-42", "email": "ana@example.com", "locale": "es"}


# --- conversations: the last question per channel and address ---------------------------------------------------


async def test_conversations__remembers_by_channel_and_normalised_address() -> None:
    store = MemoryStore()
    conversations = Conversations(store, SECRET)
    asked = question()

    await conversations.remember(asked, "+34 600 11 12 22")

    assert conversations.last_question("sms", PHONE) == asked
    assert conversations.last_question("whatsapp", PHONE) is None
    assert conversations.last_question("sms", "+34600111223") is None


@pytest.mark.parametrize(("channel", "address"), [("sms", "+34 600 111 222"), ("whatsapp", "whatsapp:+34600111222"),
                                                  ("voice", "+34600111222"), ("email", "Ana@Example.com")],
                         ids=["sms", "whatsapp", "voice", "email"])
async def test_conversations__no_clear_address_in_any_store_key(channel: str, address: str) -> None:
    store = MemoryStore()
    conversations = Conversations(store, SECRET)

    await conversations.remember(question(channel=channel), address)

    [key] = store.data
    assert key.startswith(f"{channel}|sha256:")
    for clear in ("600111222", "600 111 222", "ana@example.com", "ana"):
        assert clear not in key.lower()
    assert b"600111222" not in store.data[key] and b"example.com" not in store.data[key]


async def test_conversations__a_redelivered_older_question_does_not_replace_the_newer() -> None:
    conversations = Conversations(MemoryStore(), SECRET)
    newer = question(message_id="msg-24h", asked_at=NOW - timedelta(hours=1))
    older = question(message_id="msg-7d", asked_at=NOW - timedelta(days=6))

    await conversations.remember(newer, PHONE)
    await conversations.remember(older, PHONE)

    assert conversations.last_question("sms", PHONE) == newer


async def test_conversations__a_later_question_replaces_the_last_one() -> None:
    conversations = Conversations(MemoryStore(), SECRET)
    await conversations.remember(question(message_id="msg-7d", asked_at=NOW - timedelta(days=6)), PHONE)
    latest = question(message_id="msg-24h", asked_at=NOW - timedelta(hours=1))

    await conversations.remember(latest, PHONE)

    assert conversations.last_question("sms", PHONE) == latest


async def test_conversations__an_answered_question_stays_answered_when_its_send_is_redelivered() -> None:
    conversations = Conversations(MemoryStore(), SECRET)
    asked = question()
    await conversations.remember(asked, PHONE)
    await conversations.mark_answered(asked, PHONE, CONFIRM)

    await conversations.remember(asked.model_copy(update={"asked_at": NOW}), PHONE)

    stored = conversations.last_question("sms", PHONE)
    assert stored is not None and stored.answered == CONFIRM


async def test_conversations__too_old_a_question_is_none_and_forget_removes_it() -> None:
    conversations = Conversations(MemoryStore(), SECRET, max_age=timedelta(days=7))
    await conversations.remember(question(asked_at=NOW - timedelta(days=8)), PHONE)

    assert conversations.last_question("sms", PHONE, NOW) is None
    assert conversations.last_question("sms", PHONE, NOW - timedelta(days=2)) is not None

    await conversations.forget("sms", "+34 600 111 222")

    assert conversations.last_question("sms", PHONE) is None


async def test_conversations__unreadable_state_is_no_question() -> None:
    store = MemoryStore()
    conversations = Conversations(store, SECRET)
    await store.put(conversations.key("sms", PHONE), b"{not json")

    assert conversations.last_question("sms", PHONE) is None


async def test_conversations__recipient_for_an_address_is_the_latest_questions() -> None:
    conversations = Conversations(MemoryStore(), SECRET)
    await conversations.remember(question(channel="sms", asked_at=NOW - timedelta(days=2)), PHONE)
    await conversations.remember(question(channel="whatsapp", message_id="msg-2").model_copy(
        update={"recipient_id": "user-43"}), "+34 600 111 222")
    await conversations.remember(question(channel="email"), "ana@example.com")

    assert conversations.recipient_for(PHONE) == "user-43"
    assert conversations.recipient_for("Ana@Example.com") == "user-42"
    assert conversations.recipient_for("+34600999888") is None


async def test_conversations__the_secret_keys_the_hash() -> None:
    assert Conversations(MemoryStore(), SECRET).key("sms", PHONE) != Conversations(MemoryStore(), b"other").key(
        "sms", PHONE)


# --- which sends ask a question ---------------------------------------------------------------------------------


def reminder_dispatch(channel: str) -> Dispatch:
    entry = CATALOG.types["appointment.reminder"]
    return Dispatch(message_id="msg-1", event_id="evt-1", event_type="appointment.reminder", event_time=NOW,
                    tenant="acme", channel=channel, category="transactional", priority="normal",
                    idempotency_key="k", to=Recipient(id="user-42", phone=PHONE, locale="es-ES"),
                    payload=entry.sample)


def test_question_for_dispatch__keeps_only_the_cancel_key_of_the_payload() -> None:
    entry = CATALOG.types["appointment.reminder"]

    asked = Question.for_dispatch(reminder_dispatch("sms"), entry, NOW)

    assert asked == Question(message_id="msg-1", recipient_id="user-42", event_type="appointment.reminder",
                             channel="sms", locale="es-ES", asked_at=NOW, tenant="acme",
                             payload={"appointment_id": "APT-5521"}, event_id="evt-1")


@pytest.mark.parametrize(("event_type", "channel", "asks"), [
    ("appointment.reminder", "sms", True), ("appointment.reminder", "whatsapp", True),
    ("appointment.reminder", "voice", True), ("appointment.reminder", "email", False),
    ("otp.requested", "voice", False), ("order.confirmed", "sms", False),
], ids=["reminder_sms", "reminder_whatsapp", "reminder_voice_keypad", "email_has_no_inbound",
        "otp_keypad_only_repeats", "no_answers"])
def test_asks_question__answers_or_a_confirm_cancel_keypad(event_type: str, channel: str, asks: bool) -> None:
    assert asks_question(CATALOG.types[event_type], channel) is asks


# --- the catalog's answers ---------------------------------------------------------------------------------------


def test_catalog__bundled_reminder_answers_and_reply_types() -> None:
    reminder = CATALOG.types["appointment.reminder"]

    assert reminder.answers["confirm"]["es"] == ["S", "SI", "SÍ"]
    assert reminder.answers["cancel"]["de"] == ["N", "NEIN"]
    for name, required in (("reply.acknowledged", ["meaning", "subject_type"]), ("reply.help", ["reason"])):
        entry = CATALOG.types[name]
        assert (entry.category, entry.priority, entry.quiet_hours, entry.ttl, entry.required) == (
            "transactional", "high", "ignore", timedelta(hours=1), required)
        assert [c.value for c in entry.channels] == ["sms", "whatsapp", "voice", "email"]


BAD_ANSWERS = [
    ("agent_is_no_answer", {"agent": {"en": ["AGENT"]}}, "only mean confirm or cancel"),
    ("empty_words", {"confirm": {"en": []}}, "non-empty list"),
    ("punctuation_word", {"confirm": {"en": ["!"]}}, "non-empty list"),
    ("no_languages", {"confirm": {}}, "per language"),
    ("region_not_language", {"confirm": {"es-ES": ["SI"]}}, "language code"),
    ("both_meanings", {"confirm": {"en": ["Y"]}, "cancel": {"en": ["y"]}}, "both confirm and cancel"),
]


@pytest.mark.parametrize(("answers", "message"), [c[1:] for c in BAD_ANSWERS], ids=[c[0] for c in BAD_ANSWERS])
def test_catalog__invalid_answers_are_refused(answers: dict[str, Any], message: str) -> None:
    entry = {"category": "transactional", "priority": "normal", "channels": ["sms"], "ttl": "1d", "answers": answers}

    with pytest.raises(ValidationError, match=message):
        CatalogEntry.model_validate(entry)


def test_catalog__bare_yaml_yes_no_is_refused_with_a_hint() -> None:
    raw = yaml.safe_load("category: transactional\npriority: normal\nchannels: [sms]\nttl: 1d\n"
                         "answers: {confirm: {en: [Y, YES]}}\n")

    with pytest.raises(ValidationError, match="quote the words"):
        CatalogEntry.model_validate(raw)


# --- Herald's own answers render in every language --------------------------------------------------------------

RENDERER = Renderer(globals_={"brand": "Shop", "document_url": None})
# (type, payload, the sentence every channel says, by language)
RENDER_CASES = [
    ("reply.acknowledged", {"meaning": "confirm", "subject_type": "appointment.reminder"},
     {"en": "Thanks, your appointment is confirmed.", "es": "Gracias, tu cita queda confirmada.",
      "de": "Danke, Ihr Termin ist bestätigt."}),
    ("reply.acknowledged", {"meaning": "cancel", "subject_type": "appointment.reminder"},
     {"en": "Your appointment has been cancelled.", "es": "Hemos cancelado tu cita.",
      "de": "Ihr Termin wurde abgesagt."}),
    ("reply.acknowledged", {"meaning": "confirm", "subject_type": "delivery.slot"},
     {"en": "Thanks, we received your answer.", "es": "Gracias, hemos recibido tu respuesta.",
      "de": "Danke, wir haben Ihre Antwort erhalten."}),
    ("reply.help", {"reason": "not_understood"},
     {"en": "Sorry, we did not understand your answer.", "es": "No hemos entendido tu respuesta.",
      "de": "Wir haben Ihre Antwort leider nicht verstanden."}),
    ("reply.help", {"reason": "no_question"},
     {"en": "Sorry, we can only read answers to our questions.",
      "es": "Solo podemos leer respuestas a nuestras preguntas.",
      "de": "Wir können nur Antworten auf unsere Fragen lesen."}),
]
MAIN_PART = {"sms": "text", "whatsapp": "text", "voice": "speech", "email": "text"}


def render(event_type: str, channel: str, language: str, payload: dict[str, Any]) -> Rendered:
    to = {"id": "user-42", "phone": PHONE, "email": None, "locale": language, "name": None}
    return RENDERER.render(event_type, channel, locale=language, timezone="Europe/Madrid",
                           context={"to": to, "payload": payload, "message_id": "msg-1", "event_id": "evt-1",
                                    "tenant": None})


@pytest.mark.parametrize(("event_type", "payload", "expected"), RENDER_CASES,
                         ids=["ack_confirm", "ack_cancel", "ack_other_type", "help_not_understood",
                              "help_no_question"])
@pytest.mark.parametrize("language", ["en", "es", "de"])
@pytest.mark.parametrize("channel", ["sms", "whatsapp", "voice", "email"])
def test_templates__replies_render_in_every_language(event_type: str, payload: dict[str, Any],
                                                     expected: dict[str, str], language: str, channel: str) -> None:
    rendered = render(event_type, channel, language, payload)

    assert rendered.locale == language
    assert expected[language] in rendered[MAIN_PART[channel]]
    assert "Shop" in rendered[MAIN_PART[channel]]
    if channel == "whatsapp":
        template = json.loads(rendered["template"])
        assert template == {"name": event_type.replace(".", "_"), "language": language,
                            "params": ["Shop", expected[language]]}
    if channel == "email":
        assert rendered["subject"].strip()
        assert expected[language] in rendered["html"]


HOW_TO_ANSWER = [
    ("sms", "en", "Reply YES to confirm or NO to cancel. Reply STOP to opt out."),
    ("sms", "es", "Responde SI para confirmar o NO para cancelar."),  # GSM-7: the match ignores the accent
    ("whatsapp", "es", "Responde SÍ para confirmar o NO para cancelar."),
    ("sms", "de", "Antworten Sie JA zur Bestätigung oder NEIN zur Absage."),
    ("email", "de", "schreiben Sie JA zur Bestätigung oder NEIN zur Absage"),
]


@pytest.mark.parametrize(("channel", "language", "expected"), HOW_TO_ANSWER,
                         ids=[f"{c}_{lang}" for c, lang, _ in HOW_TO_ANSWER])
def test_templates__help_names_the_answers_in_the_recipients_language(channel: str, language: str,
                                                                      expected: str) -> None:
    rendered = render("reply.help", channel, language, {"reason": "not_understood"})

    assert expected in rendered[MAIN_PART[channel]]


@pytest.mark.parametrize("language", ["en", "es", "de"])
def test_templates__reply_sms_fit_one_gsm7_segment_or_two(language: str) -> None:
    for event_type, payload, _ in RENDER_CASES:
        encoding, segments = sms_segments(render(event_type, "sms", language, payload)["text"])
        assert (encoding, segments <= 2) == ("GSM-7", True), (event_type, payload)
