"""Surveys by keypad and text: a reply is a rating only when the whole of it reads as a score on the survey's scale,
in the person's language; a rating answers the open question of its channel and address until it expires, and
goes to herald.replies as `<type>.rated` with the score, never the address."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from channels.rendering.render import BUNDLED_TEMPLATES
from channels.webhooks import InboundMessage
from consumers import hooks
from consumers.cli.asyncapi_topics import rating_model
from consumers.inbound.ratings import parse_rating, rating_of_digits
from consumers.inbound.replies import ReplyKind, asks_question, interpret, rating_cloudevent
from consumers.observe.metrics import Metrics
from consumers.pipeline.status import StatusEmitter
from consumers.state.conversations import Conversations, Question
from consumers.state.kvstore import MemoryStore
from consumers.state.preferences import address_key
from schemas.catalog import Catalog, CatalogEntry, KeypadAction
from schemas.dispatch import Dispatch
from schemas.events import CloudEvent, Recipient
from tests.fakes import FakeClock, RecordingPublisher
from tests.unit.test_voice import gather_request, message, provider, query_of, spoken

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
SECRET = b"test-secret"
CATALOG = Catalog.load(BUNDLED_TEMPLATES / "catalog.yaml")
SURVEY = "service.survey"
PHONE = "+34600111222"

# --- what a text reply gives on a 1-5 scale ---------------------------------------------------------------------

# (id, the person's language, reply, the rating or None: not a rating)
TEXTS: list[tuple[str, str, str, int | None]] = [
    ("digit", "en", "5", 5),
    ("digit_with_spaces_and_stop", "es", "  4. ", 4),
    ("digit_exclaimed", "de", "3!", 3),
    ("full_width_digit", "en", "\uff14", 4),
    ("keycap_emoji", "en", "4\ufe0f\u20e3", 4),
    ("slash_scale", "en", "5/5", 5),
    ("slash_scale_spaced", "es", "4 / 5", 4),
    ("out_of", "en", "4 out of 5", 4),
    ("of_in_spanish", "es", "4 de 5", 4),
    ("von_in_german", "de", "4 von 5 Sternen", 4),
    ("stars", "en", "4 stars", 4),
    ("one_star", "en", "1 star", 1),
    ("estrellas", "es", "5 estrellas", 5),
    ("sterne", "de", "2 Sterne", 2),
    ("scale_then_unit", "en", "3/5 stars", 3),
    ("english_word", "en", "Five", 5),
    ("spanish_word", "es", "cinco", 5),
    ("spanish_word_exclaimed", "es-MX", "¡Cuatro!", 4),
    ("spanish_una", "es", "una", 1),
    ("german_word", "de", "fünf", 5),
    ("german_word_transliterated", "de", "fuenf", 5),
    ("german_word_and_unit", "de", "Vier Sterne", 4),
    ("french_word", "fr", "cinq", 5),
    ("english_words_anywhere", "es", "four stars", 4),
    ("emoji_stars", "en", "⭐⭐⭐⭐", 4),
    ("stars_with_empty_ones", "en", "★★★☆☆", 3),
    # Not a rating: an ordinary reply.
    ("zero", "en", "0", None),
    ("over_the_scale", "en", "6", None),
    ("ten_out_of_ten", "en", "10/10", None),
    ("another_scale", "en", "4/10", None),
    ("half_point", "en", "4.5", None),
    ("spanish_decimal", "es", "4,5", None),
    ("a_range", "en", "4-5", None),
    ("two_numbers", "en", "4 5", None),
    ("a_word_after", "en", "4 please", None),
    ("in_a_sentence", "en", "I'd give it a 5", None),
    ("yes", "en", "yes", None),
    ("stop", "en", "STOP", None),
    ("a_word_of_another_language", "de", "cinco", None),
    ("italian_due_is_english_due", "en", "due", None),
    ("empty_stars_off_the_scale", "en", "★★★☆", None),
    ("six_stars", "en", "⭐⭐⭐⭐⭐⭐", None),
    ("only_a_unit", "en", "stars", None),
    ("punctuation", "en", "?!", None),
    ("empty", "en", "", None),
    ("too_long", "en", "5" + " " * 80, None),
]


@pytest.mark.parametrize(("language", "text", "expected"), [c[1:] for c in TEXTS], ids=[c[0] for c in TEXTS])
def test_parse_rating__a_text_reply_on_a_one_to_five_scale(language: str, text: str, expected: int | None) -> None:
    assert parse_rating(text, 5, language.split("-")[0]) == expected


def test_parse_rating__the_scale_is_the_survey_s() -> None:
    assert (parse_rating("7", 9), parse_rating("7/9", 9), parse_rating("3", 2), parse_rating("2/2", 2)) == \
        (7, 7, None, 2)


@pytest.mark.parametrize(("digits", "expected"), [("1", 1), ("5", 5), ("6", None), ("0", None), ("*", None),
                                                  ("#", None), ("45", None), ("", None), (None, None)])
def test_rating_of_digits__one_key_within_the_scale(digits: str | None, expected: int | None) -> None:
    assert rating_of_digits(digits, 5) == expected


# --- the catalog ---------------------------------------------------------------------------------------------------

BASE = {"category": "transactional", "priority": "normal", "channels": ["sms", "voice"], "ttl": "3d"}


def test_catalog__bundled_service_survey_rates_one_to_five_on_keypad_and_text() -> None:
    entry = CATALOG.types[SURVEY]
    assert entry.survey is not None and entry.survey.scale == 5 and entry.survey.thanks
    assert entry.survey.question.keep == ["ticket_id"] and entry.survey.window(entry.ttl) == timedelta(days=2)
    assert entry.keypad == dict.fromkeys("12345", KeypadAction.RATE)
    assert all(asks_question(entry, channel) for channel in ("voice", "sms", "whatsapp"))
    assert not asks_question(entry, "email")


@pytest.mark.parametrize("survey", [{"rating": "1-5"}, {"survey": "1-5"}, {"survey": {}},
                                    {"survey": {"scale": 5, "question": {}, "thanks": True}}],
                         ids=["rating_shorthand", "survey_shorthand", "defaults", "in_full"])
def test_catalog__survey_syntaxes_mean_the_same(survey: dict[str, Any]) -> None:
    entry = CatalogEntry.model_validate({**BASE, **survey})
    assert entry.survey is not None and (entry.survey.scale, entry.survey.thanks) == (5, True)
    assert entry.survey.window(entry.ttl) == timedelta(days=3)  # the type's ttl


def test_catalog__a_survey_keeps_the_keypad_s_other_keys_and_validates_again_as_dumped() -> None:
    entry = CatalogEntry.model_validate({**BASE, "survey": "1-3", "keypad": {"0": "agent", "9": "repeat"}})
    assert entry.keypad == {"0": "agent", "9": "repeat", "1": "rate", "2": "rate", "3": "rate"}
    assert CatalogEntry.model_validate(entry.model_dump()) == entry


INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("scale_past_one_key", {"survey": "1-10"}, "less than or equal to 9"),
    ("scale_of_one", {"survey": {"scale": 1}}, "greater than or equal to 2"),
    ("not_from_one", {"survey": "0-5"}, "looks like 1-5"),
    ("both_spellings", {"survey": "1-5", "rating": "1-5"}, "not both"),
    ("a_rating_key_taken", {"survey": "1-5", "keypad": {"2": "repeat"}}, "survey's ratings"),
    ("rate_by_hand", {"keypad": {"1": "rate"}}, "set by `survey`"),
    ("rate_past_the_scale", {"survey": "1-3", "keypad": {"4": "rate"}}, "survey's ratings"),
    ("with_answers", {"survey": "1-5", "answers": {"confirm": {"en": ["Y"]}}}, "rating only"),
    ("with_confirm_key", {"survey": "1-3", "keypad": {"0": "confirm"}}, "rating only"),
    ("no_channel_to_answer_on", {"survey": "1-5", "channels": ["email", "push"]}, "voice, sms or whatsapp"),
    ("window_not_positive", {"survey": {"question": {"expires": "0s"}}}, "expires must be positive"),
    ("unknown_field", {"survey": {"scale": 5, "labels": ["bad", "good"]}}, "Extra inputs"),
]


@pytest.mark.parametrize(("changes", "message"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_catalog__invalid_surveys_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CatalogEntry.model_validate({**BASE, **changes})


# --- the open question and what a reply to it means ---------------------------------------------------------------

def survey_dispatch(channel: str = "sms", locale: str = "es-ES", **payload: Any) -> Dispatch:
    return Dispatch(message_id="msg-s1", event_id="evt-s1", event_type=SURVEY, event_time=NOW, channel=channel,
                    category="transactional", priority="normal", idempotency_key="k", tenant="acme",
                    to=Recipient(id="user-42", phone=PHONE, locale=locale),
                    payload={"ticket_id": "T-1042", "secret_note": "not for upstream", **payload},
                    expires_at=NOW + timedelta(days=2))


def asked(channel: str = "sms", locale: str = "es-ES", at: datetime = NOW) -> Question:
    return Question.for_dispatch(survey_dispatch(channel, locale), CATALOG.types[SURVEY], at)


def test_question__a_survey_s_keeps_its_event_its_keep_fields_and_its_expiry() -> None:
    q = asked()
    assert (q.event_id, q.payload, q.expires_at) == ("evt-s1", {"ticket_id": "T-1042"}, NOW + timedelta(days=2))


@pytest.mark.parametrize(("channel", "text", "digits", "kind", "score"), [
    ("voice", None, "4", ReplyKind.RATING, 4),
    ("voice", None, "7", ReplyKind.NOT_UNDERSTOOD, None),
    ("sms", "5", None, ReplyKind.RATING, 5),
    ("whatsapp", "cuatro estrellas", None, ReplyKind.RATING, 4),
    ("sms", "6", None, ReplyKind.NOT_UNDERSTOOD, None),
    ("sms", "SI", None, ReplyKind.NOT_UNDERSTOOD, None),  # a survey has no confirm
    ("sms", "STOP", None, ReplyKind.IGNORED, None),  # an opt-out is never a rating
], ids=["keypad_4", "keypad_off_the_scale", "sms_5", "whatsapp_words", "sms_6", "sms_yes", "sms_stop"])
def test_interpret__a_reply_to_a_survey(channel: str, text: str | None, digits: str | None, kind: ReplyKind,
                                        score: int | None) -> None:
    meaning = interpret(text, digits, asked(channel), CATALOG)
    assert (meaning.kind, meaning.score) == (kind, score)
    if kind is ReplyKind.RATING:
        assert (meaning.meaning, meaning.answer) == ("rate", digits or text)


def test_interpret__a_number_to_a_question_that_is_no_survey_is_no_rating() -> None:
    reminder = Question(message_id="m", recipient_id="u", event_type="appointment.reminder", channel="sms",
                        locale="en", asked_at=NOW)
    assert interpret("5", None, reminder, CATALOG).kind is ReplyKind.NOT_UNDERSTOOD
    assert interpret("5", None, None, CATALOG).kind is ReplyKind.NO_QUESTION


async def test_conversations__a_survey_s_question_expires_with_its_window() -> None:
    conversations = Conversations(MemoryStore(), SECRET)
    await conversations.remember(asked(), PHONE)
    assert conversations.last_question("sms", PHONE, NOW + timedelta(days=2) - timedelta(seconds=1)) is not None
    assert conversations.last_question("sms", PHONE, NOW + timedelta(days=2)) is None
    # Stored before `expires_at` existed: only the store's own max age applies.
    old = asked().model_copy(update={"expires_at": None, "message_id": "msg-s0"})
    await conversations.store.put(conversations.key("sms", PHONE), old.model_dump_json(exclude={"expires_at"}).encode())
    assert conversations.last_question("sms", PHONE, NOW + timedelta(days=6)) == old


# --- the record on herald.replies, the thanks and the help --------------------------------------------------------

class Rig:
    def __init__(self, catalog: Catalog = CATALOG) -> None:
        self.publisher, self.metrics, self.clock = RecordingPublisher(), Metrics(), FakeClock(NOW + timedelta(hours=1))
        self.conversations = Conversations(MemoryStore(), SECRET)
        statuses = StatusEmitter(self.publisher, self.metrics, SECRET, self.clock)
        self.on_reply = hooks.answer_replies(self.conversations, catalog, self.publisher, statuses, self.clock)

    def rated(self) -> list[dict[str, Any]]:
        return [e for e in self.publisher.json("replies") if e["type"].endswith(".rated")]

    def count(self, channel: str, score: str) -> float | None:
        return self.metrics.registry.get_sample_value(
            "herald_ratings_total", {"event_type": SURVEY, "channel": channel, "score": score})


async def test_answer_replies__an_sms_5_is_published_as_rated_thanked_and_replied() -> None:
    rig = Rig()
    await rig.conversations.remember(asked(), PHONE)
    await rig.on_reply(InboundMessage(channel="sms", sender="+34 600 111 222", text="5", provider_message_id="SM1"))

    [rating] = rig.rated()
    assert rating_model().model_validate(rating).type == "service.survey.rated"  # the documented shape
    assert (rating["subject"], rating["tenant"], rating["source"]) == ("user-42", "acme", "herald/replies")
    assert rating["data"] == {
        "ticket_id": "T-1042", "message_id": "msg-s1", "event_id": "evt-s1", "recipient_id": "user-42",
        "recipient": address_key(SECRET, "sms", PHONE), "channel": "sms", "score": 5, "scale": 5, "answer": "5",
        "at": (NOW + timedelta(hours=1)).isoformat()}
    assert rig.publisher.on("replies")[0].key == b"user-42"
    assert not any(PHONE.lstrip("+") in r.value.decode() for r in rig.publisher.records if r.topic == "replies")
    assert rig.count("sms", "5") == 1
    [thanks] = [CloudEvent.model_validate(e) for e in rig.publisher.json("events")]
    assert thanks.type == "reply.acknowledged" and thanks.data.payload == {"meaning": "rate", "subject_type": SURVEY}
    [receipt] = rig.publisher.json("receipts")
    assert (receipt["message_id"], receipt["status"]) == ("msg-s1", "replied")


async def test_answer_replies__a_keypad_4_is_rated_and_the_call_thanks_by_itself() -> None:
    rig = Rig()
    await rig.conversations.remember(asked("voice"), PHONE)
    await rig.on_reply(InboundMessage(channel="voice", sender=PHONE, digits="4", message_id="msg-s1",
                                      recipient_id="user-42", provider_message_id="CA1"))
    [rating] = rig.rated()
    assert (rating["data"]["score"], rating["data"]["channel"], rating["data"]["answer"]) == (4, "voice", "4")
    assert rig.publisher.on("events") == [] and rig.publisher.on("receipts") == []  # hear-back replied already
    assert rig.count("voice", "4") == 1


async def test_answer_replies__a_change_of_mind_is_a_new_rating_and_a_redelivery_the_same() -> None:
    rig = Rig()
    await rig.conversations.remember(asked(), PHONE)
    for text, sid in (("3", "SM1"), ("3", "SM1"), ("5", "SM2"), ("3", "SM3")):
        await rig.on_reply(InboundMessage(channel="sms", sender=PHONE, text=text, provider_message_id=sid))
    ids = [r["id"] for r in rig.rated()]
    assert ids[0] == ids[1] and len(set(ids)) == 3  # the last "3" is not mistaken for the first
    assert [r["data"]["score"] for r in rig.rated()] == [3, 3, 5, 3]
    assert len({e["id"] for e in rig.publisher.json("events")}) == 1  # thanked once (the router dedupes by id)


async def test_answer_replies__not_a_rating_gets_the_survey_s_help_and_no_record() -> None:
    rig = Rig()
    await rig.conversations.remember(asked(), PHONE)
    await rig.on_reply(InboundMessage(channel="sms", sender=PHONE, text="muy bien, gracias"))
    assert rig.rated() == []
    [help_] = [CloudEvent.model_validate(e) for e in rig.publisher.json("events")]
    assert help_.type == "reply.help" and help_.data.payload == {"reason": "not_understood", "subject_type": SURVEY,
                                                                 "scale": 5}


async def test_answer_replies__no_thanks_when_the_survey_says_so_and_nothing_after_the_window() -> None:
    raw = CATALOG.model_dump(mode="json")
    raw["types"][SURVEY]["survey"]["thanks"] = False
    rig = Rig(Catalog.model_validate(raw))
    await rig.conversations.remember(asked(), PHONE)
    await rig.on_reply(InboundMessage(channel="sms", sender=PHONE, text="4"))
    assert len(rig.rated()) == 1 and rig.publisher.on("events") == []
    rig.clock.advance(days=2)  # the question has expired: a later "5" is just a reply
    await rig.on_reply(InboundMessage(channel="sms", sender=PHONE, text="5"))
    assert len(rig.rated()) == 1


def test_rating_cloudevent__only_ratings() -> None:
    with pytest.raises(ValueError, match="not a rating"):
        rating_cloudevent(interpret("SI", None, None, CATALOG), scale=5, recipient=None, at=NOW)


# --- the call ------------------------------------------------------------------------------------------------------

SURVEY_KEYPAD = {k: v.value for k, v in CATALOG.types[SURVEY].keypad.items()}
SURVEY_MENU = "Pulsa una tecla del 1, muy mal, al 5, excelente."


def test_voice__a_survey_call_gathers_one_key_for_the_rating() -> None:
    root = ET.fromstring(provider().build_twiml(message(menu=SURVEY_MENU, keypad=SURVEY_KEYPAD)))
    gather = root.find("Gather")
    assert gather is not None and gather.attrib["numDigits"] == "1"
    assert query_of(gather.attrib["action"])["k"] == "1s2s3s4s5s"
    assert [say.text for say in gather][-1] == SURVEY_MENU


@pytest.mark.parametrize(("digits", "tags"), [("4", ["Say", "Hangup"]), ("7", ["Gather", "Hangup"])],
                         ids=["rating_thanks_and_hangs_up", "off_the_scale_asks_again"])
def test_voice__a_survey_key_is_heard_and_answered(digits: str, tags: list[str]) -> None:
    msg = message(menu=SURVEY_MENU, keypad=SURVEY_KEYPAD)
    result = provider().parse_webhook(gather_request(digits, msg))
    assert [child.tag for child in spoken(result.response.body)] == tags
    assert [r.digits for r in result.inbound] == [digits]

