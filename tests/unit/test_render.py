"""Rendering: locale fallback, strictness, the sandbox, autoescape and the babel filters."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from babel import Locale, localedata
from babel.numbers import format_currency

from channels.errors import RenderError
from channels.rendering.render import BUNDLED_TEMPLATES, Rendered, Renderer, format_money, locale_chain
from schemas.catalog import Catalog

pytestmark = pytest.mark.unit


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def email_files(event_type: str, locale: str, tag: str | None = None) -> dict[str, str]:
    tag = tag or locale
    return {
        f"{event_type}/email.{locale}.subject.j2": f"[{tag}] Order {{{{ payload.order_id }}}}",
        f"{event_type}/email.{locale}.html.j2": f"<p>{tag} {{{{ payload.note }}}} {{{{ locale }}}}</p>",
        f"{event_type}/email.{locale}.text.j2": f"{tag} {{{{ payload.note }}}} {{{{ locale }}}}",
    }


def norm(text: str) -> str:
    """Babel separates with NO-BREAK SPACE / NARROW NO-BREAK SPACE; compare with plain spaces."""
    return "".join(" " if unicodedata.category(c) == "Zs" else c for c in text)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    files: dict[str, str] = {}
    files |= email_files("order.confirmed", "en")
    files |= email_files("order.confirmed", "es")
    # es-MX is incomplete (no html, no text): it must not be picked.
    files["order.confirmed/email.es-MX.subject.j2"] = "[es-MX] only a subject"
    files |= email_files("order.confirmed", "de-AT")
    files["order.confirmed/sms.en.text.j2"] = "SMS {{ payload.order_id }}"
    return write(tmp_path / "templates", files)


def render(renderer: Renderer, locale: str, channel: str = "email", **payload: Any) -> Rendered:
    payload = {"order_id": "1001", "note": "n", **payload}
    return renderer.render("order.confirmed", channel, locale=locale, context={"payload": payload})


# --- locale_chain ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("es-MX", ["es-MX", "es", "en"]),
        ("de_at", ["de-AT", "de", "en"]),
        ("en", ["en"]),
        ("fr", ["fr", "en"]),
        ("en-GB", ["en-GB", "en"]),
        ("ES-mx", ["es-MX", "es", "en"]),
        ("zh-Hant", ["zh-Hant", "zh", "en"]),
    ],
)
def test_locale_chain__table(tag: str, expected: list[str]) -> None:
    assert locale_chain(tag) == expected


def test_locale_chain__custom_default_is_last() -> None:
    assert locale_chain("fr-CA", default="es") == ["fr-CA", "fr", "es"]
    assert locale_chain("es", default="es") == ["es"]


# --- locale resolution ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "used"),
    [
        ("es-MX", "es"),   # es-MX lacks parts -> es
        ("es_MX", "es"),
        ("es", "es"),
        ("fr", "en"),      # no fr at all -> default
        ("fr-CA", "en"),
        ("de-AT", "de-AT"),
        ("de_at", "de-AT"),
        ("de-CH", "en"),   # no plain de
        ("en-US", "en"),
    ],
)
def test_render__falls_back_along_the_locale_chain(root: Path, requested: str, used: str) -> None:
    rendered = render(Renderer(root), requested)

    assert rendered.locale == used
    assert rendered.template == "order.confirmed/email"
    assert rendered["subject"] == f"[{used}] Order 1001"
    # The template sees the locale actually used.
    assert rendered["text"] == f"{used} n {used}"


def test_render__custom_default_locale_is_the_last_fallback(root: Path) -> None:
    rendered = render(Renderer(root, default_locale="es"), "fr")

    assert rendered.locale == "es"


def test_render__renders_every_part_of_the_channel(root: Path) -> None:
    rendered = render(Renderer(root), "es")

    assert set(rendered.parts) == {"subject", "html", "text"}
    assert render(Renderer(root), "es", channel="sms").parts == {"text": "SMS 1001"}


def test_render__has_template(root: Path) -> None:
    renderer = Renderer(root)

    assert renderer.has_template("order.confirmed", "email")
    assert renderer.has_template("order.confirmed", "sms")
    assert not renderer.has_template("order.confirmed", "push")
    assert not renderer.has_template("order.cancelled", "email")


@pytest.mark.parametrize(
    ("event_type", "channel"),
    [("order.cancelled", "email"), ("order.confirmed", "push"), ("order.confirmed", "whatsapp")],
    ids=["unknown-type", "missing-channel", "missing-channel-2"],
)
def test_render__missing_template_is_template_missing_error(root: Path, event_type: str, channel: str) -> None:
    with pytest.raises(RenderError) as info:
        Renderer(root).render(event_type, channel, locale="en", context={"payload": {}})

    assert info.value.reason == "template_missing"
    assert info.value.retriable is False


@pytest.mark.parametrize(
    "payload",
    [{"note": "n"}, {"order_id": "1001"}, {}],
    ids=["no-order-id", "no-note", "empty"],
)
def test_render__missing_variable_is_template_variable_error(root: Path, payload: dict[str, Any]) -> None:
    with pytest.raises(RenderError) as info:
        Renderer(root).render("order.confirmed", "email", locale="en", context={"payload": payload})

    assert info.value.reason == "template_variable"
    assert info.value.retriable is False
    assert "order.confirmed/email.en." in str(info.value)


def test_render__missing_top_level_variable_is_template_variable_error(tmp_path: Path) -> None:
    write(tmp_path, {"a.b/sms.en.text.j2": "Hi {{ nobody }}"})

    with pytest.raises(RenderError) as info:
        Renderer(tmp_path).render("a.b", "sms", locale="en", context={})

    assert info.value.reason == "template_variable"


def test_render__syntax_error_is_template_error(tmp_path: Path) -> None:
    write(tmp_path, {"a.b/sms.en.text.j2": "Hi {{ payload.name "})

    with pytest.raises(RenderError) as info:
        Renderer(tmp_path).render("a.b", "sms", locale="en", context={"payload": {"name": "x"}})

    assert info.value.reason == "template_error"


def test_render__globals_are_visible_to_templates(tmp_path: Path) -> None:
    write(tmp_path, {"a.b/sms.en.text.j2": "{{ brand }}: {{ payload.x }}"})

    rendered = Renderer(tmp_path, globals_={"brand": "Acme"}).render("a.b", "sms", locale="en",
                                                                     context={"payload": {"x": 1}})

    assert rendered["text"] == "Acme: 1"


# --- sandbox --------------------------------------------------------------------------------------------------

ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__.os }}",
    "{{ lipsum.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ self.__init__.__globals__ }}",
    "{{ payload.__class__.__base__.__subclasses__() }}",
    "{{ '{0.__class__.__mro__}'.format(payload) }}",
    "{{ '{p.__class__}'.format_map({'p': payload}) }}",
    "{% for c in ().__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ payload|attr('__class__') }}",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_render__sandbox_escape_is_template_unsafe_error(tmp_path: Path, source: str) -> None:
    write(tmp_path, {"a.b/sms.en.text.j2": source})

    with pytest.raises(RenderError) as info:
        Renderer(tmp_path).render("a.b", "sms", locale="en", context={"payload": {"x": 1}})

    assert info.value.reason == "template_unsafe"
    assert info.value.retriable is False
    assert "<class" not in str(info.value)
    assert "__globals__" not in str(info.value)


# --- autoescape -----------------------------------------------------------------------------------------------


def test_render__html_part_is_autoescaped_and_text_parts_are_not(root: Path) -> None:
    attack = "<script>alert(1)</script>"

    rendered = render(Renderer(root), "en", note=attack, order_id="<b>1001</b>")

    assert "<script>" not in rendered["html"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered["html"]
    assert attack in rendered["text"]
    assert rendered["subject"] == "[en] Order <b>1001</b>"


# --- filters --------------------------------------------------------------------------------------------------


def render_expr(tmp_path: Path, expr: str, *, locale: str, timezone: str = "UTC", value: Any = None,
                channel: str = "whatsapp") -> str:
    """Render `{{ expr }}` with `payload.v = value` as a one-part message (whatsapp keeps babel's spaces),
    from a template in the locale's own language."""
    lang = locale.replace("_", "-").split("-")[0].lower()
    write(tmp_path, {f"f.x/{channel}.{lang}.text.j2": "{{ " + expr + " }}"})
    rendered = Renderer(tmp_path).render("f.x", channel, locale=locale, timezone=timezone,
                                         context={"payload": {"v": value}})
    return rendered["text"]


@pytest.mark.parametrize(
    ("locale", "value", "currency", "expected"),
    [
        ("es-ES", "59.90", "EUR", "59,90 €"),
        ("es", "59.90", "EUR", "59,90 €"),
        ("en", "59.90", "EUR", "€59.90"),
        ("en", "59.9", "USD", "$59.90"),
        ("de-DE", "1234.5", "EUR", "1.234,50 €"),
        ("en", 10, "EUR", "€10.00"),
        ("en", "-5.2", "EUR", "-€5.20"),
    ],
)
def test_render__money_filter(tmp_path: Path, locale: str, value: Any, currency: str, expected: str) -> None:
    out = render_expr(tmp_path, f"payload.v|money('{currency}')", locale=locale, value=value)

    assert norm(out) == expected


def test_render__money_filter_keeps_babels_no_break_space_outside_sms(tmp_path: Path) -> None:
    assert render_expr(tmp_path, "payload.v|money('EUR')", locale="es-ES", value="59.90") == "59,90\u00a0€"


@pytest.mark.parametrize("channel", ["sms", "voice"])
def test_render__plain_text_channels_turn_babels_no_break_spaces_into_spaces(tmp_path: Path, channel: str) -> None:
    part = "speech" if channel == "voice" else "text"
    write(tmp_path, {f"f.x/{channel}.es.{part}.j2": "{{ payload.v|money('EUR') }} {{ payload.t|time }}"})

    rendered = Renderer(tmp_path).render("f.x", channel, locale="es-ES", timezone="Europe/Madrid",
                                         context={"payload": {"v": "59.90", "t": "2026-11-24T23:30:00Z"}})

    assert rendered[part] == "59,90 € 0:30"


def test_render__plain_text_space_rule_keeps_gsm7_for_an_sms_with_a_price(tmp_path: Path) -> None:
    from channels.segments import sms_segments

    text = render_expr(tmp_path, "payload.v|money('EUR')", locale="es-ES", value="59.90", channel="sms")

    assert text == "59,90 €"
    assert sms_segments(text) == ("GSM-7", 1)


@pytest.mark.parametrize(
    ("expr", "value"),
    [("payload.v|money('EUR')", "abc"), ("payload.v|money('EUR')", "59,90"), ("payload.v|number", "n/a"),
     ("payload.v|percent", "five"), ("payload.v|date", "tomorrow"), ("payload.v|datetime", "2026-13-45T00:00"),
     ("payload.v|time", "noon")],
    ids=["money-word", "money-comma", "number", "percent", "date", "datetime", "time"],
)
def test_render__non_parseable_value_to_filter_is_template_value_error(tmp_path: Path, expr: str, value: Any) -> None:
    with pytest.raises(RenderError) as info:
        render_expr(tmp_path, expr, locale="en", value=value)

    assert info.value.reason == "template_value"
    assert info.value.retriable is False


@pytest.mark.parametrize(
    ("locale", "value", "expected"),
    [("de-DE", "2026-11-27", "27. November 2026"), ("en", "2026-11-27", "November 27, 2026"),
     ("es", "2026-11-27", "27 de noviembre de 2026")],
)
def test_render__date_filter(tmp_path: Path, locale: str, value: str, expected: str) -> None:
    assert render_expr(tmp_path, "payload.v|date", locale=locale, value=value) == expected


def test_render__date_filter_moves_a_timestamp_to_the_recipient_zone(tmp_path: Path) -> None:
    out = render_expr(tmp_path, "payload.v|date", locale="en", timezone="Europe/Madrid",
                      value="2026-11-24T23:30:00Z")

    assert out == "November 25, 2026"


def test_render__date_filter_moves_a_space_separated_timestamp_to_the_recipient_zone(tmp_path: Path) -> None:
    out = render_expr(tmp_path, "payload.v|date", locale="en", timezone="Europe/Madrid",
                      value="2026-11-24 23:30:00Z")

    assert out == "November 25, 2026"


@pytest.mark.parametrize(
    ("locale", "timezone", "expected"),
    [("en", "Europe/Madrid", "Nov 25, 2026, 12:30:00 AM"), ("de-DE", "Europe/Madrid", "25.11.2026, 00:30:00"),
     ("en", "UTC", "Nov 24, 2026, 11:30:00 PM"), ("en", "America/New_York", "Nov 24, 2026, 6:30:00 PM")],
)
def test_render__datetime_filter_shows_the_recipients_local_time(tmp_path: Path, locale: str, timezone: str,
                                                                 expected: str) -> None:
    out = render_expr(tmp_path, "payload.v|datetime", locale=locale, timezone=timezone,
                      value="2026-11-24T23:30:00Z")

    assert norm(out) == expected


def test_render__datetime_filter_next_day_in_madrid(tmp_path: Path) -> None:
    out = render_expr(tmp_path, "payload.v|datetime('long')", locale="en", timezone="Europe/Madrid",
                      value="2026-11-24T23:30:00Z")

    assert "November 25, 2026" in out


def test_render__time_filter_in_recipient_zone(tmp_path: Path) -> None:
    out = render_expr(tmp_path, "payload.v|time", locale="de-DE", timezone="Europe/Madrid",
                      value="2026-11-24T23:30:00Z")

    assert out == "00:30"


@pytest.mark.parametrize(
    ("locale", "value", "expected"),
    [("en", "-5.2", "-5.2%"), ("en", "20", "20%"), ("en", 12.346, "12.35%"), ("de-DE", "-5.2", "-5,2 %")],
)
def test_render__percent_filter(tmp_path: Path, locale: str, value: Any, expected: str) -> None:
    assert norm(render_expr(tmp_path, "payload.v|percent", locale=locale, value=value)) == expected


def test_render__percent_filter_uses_locale_spacing_in_spanish(tmp_path: Path) -> None:
    assert norm(render_expr(tmp_path, "payload.v|percent", locale="es-ES", value="-5.2")) == "-5,2 %"


@pytest.mark.parametrize(("locale", "expected"), [("en", "12,345.5"), ("de-DE", "12.345,5"), ("es-ES", "12.345,5")])
def test_render__number_filter(tmp_path: Path, locale: str, expected: str) -> None:
    assert norm(render_expr(tmp_path, "payload.v|number", locale=locale, value="12345.5")) == expected


def test_render__unknown_locale_formats_as_english(tmp_path: Path) -> None:
    assert render_expr(tmp_path, "payload.v|money('EUR')", locale="xx-YY", value="1.5") == "€1.50"


# --- the bundled order.confirmed email -------------------------------------------------------------------------


def test_render__bundled_order_confirmed_email_in_english() -> None:
    sample = Catalog.load(BUNDLED_TEMPLATES / "catalog.yaml").types["order.confirmed"].sample
    renderer = Renderer(globals_={"brand": "Herald Shop"})

    rendered = renderer.render("order.confirmed", "email", locale="en", timezone="Europe/Madrid",
                               context={"to": {"id": "u1", "name": "Ana"}, "payload": sample})

    assert rendered.locale == "en"
    assert rendered.template == "order.confirmed/email"
    assert sample["order_id"] in rendered["subject"]
    assert rendered["subject"].strip() == "Your order 1001 is confirmed"
    assert "Hi Ana," in rendered["text"]
    assert "Total: €59.90" in rendered["text"]
    assert "1 x Linen shirt: €39.90" in rendered["text"]
    html = rendered["html"]
    assert html.lstrip().startswith("<!DOCTYPE html>")
    assert '<html lang="en">' in html
    assert "<strong>1001</strong>" in html
    assert "€59.90" in html
    assert "Herald Shop" in html
    assert "You are receiving this email" in html  # footer from _layouts


def test_render__bundled_order_confirmed_html_escapes_the_name_but_text_does_not() -> None:
    sample = Catalog.load(BUNDLED_TEMPLATES / "catalog.yaml").types["order.confirmed"].sample

    rendered = Renderer(globals_={"brand": "Herald Shop"}).render(
        "order.confirmed", "email", locale="en", context={"to": {"id": "u1", "name": "<b>Ana</b>"}, "payload": sample})

    assert "Hi &lt;b&gt;Ana&lt;/b&gt;," in rendered["html"]
    assert "Hi <b>Ana</b>," in rendered["text"]


def test_render__bundled_order_confirmed_without_order_id_is_template_variable_error() -> None:
    sample = Catalog.load(BUNDLED_TEMPLATES / "catalog.yaml").types["order.confirmed"].sample
    payload = {k: v for k, v in sample.items() if k != "order_id"}

    with pytest.raises(RenderError) as info:
        Renderer(globals_={"brand": "Herald Shop"}).render(
            "order.confirmed", "email", locale="en", context={"to": {"id": "u1", "name": None}, "payload": payload})

    assert info.value.reason == "template_variable"


def test_render__fallback_language_formats_in_the_fallback_locale(tmp_path: Path) -> None:
    # A French reader gets the English template: its dates and money must be English too, not a mix.
    write(tmp_path, {"f.x/sms.en.text.j2": "{{ payload.v|date }} {{ payload.m|money('EUR') }}"})
    rendered = Renderer(tmp_path).render("f.x", "sms", locale="fr-FR", context={"payload": {"v": "2026-12-02",
                                                                                           "m": "5"}})
    assert rendered["text"] == "December 2, 2026 €5.00"


# --- format_money: babel's format_currency, faster ----------------------------------------------------------------

MONEY_LOCALES = sorted({"es_ES", "es_MX", "de_DE", "de_CH", "en_GB", "en_US", "fr_FR", "pt_BR", "ja_JP", "ar_EG",
                        "hi_IN", "fa_IR", "he_IL", "nl_NL", "sv_SE", "pl_PL", "ru_RU", "zh_Hans_CN", "th_TH",
                        *localedata.locale_identifiers()[::40]})
MONEY_AMOUNTS = [Decimal(v) for v in ("0", "1", "-1", "59.9", "59.90", "1234567.891", "0.005", "-0.5", "1E-7",
                                      "1000000000000", "2.5", "-1234.5")]


@pytest.mark.parametrize("currency", ["EUR", "USD", "JPY", "GBP", "CHF", "BHD", "INR", "XYZ", "eur", "CLF", ""])
def test_format_money__same_text_as_babels_format_currency(currency: str) -> None:
    def outcome(call: Callable[[], str]) -> str | type[Exception]:
        try:
            return call()
        except Exception as exc:
            return type(exc)

    for tag in MONEY_LOCALES:
        loc = Locale.parse(tag)
        for amount in MONEY_AMOUNTS:
            ours = outcome(lambda: format_money(amount, currency, loc))  # noqa: B023 (called right away)
            theirs = outcome(lambda: format_currency(amount, currency, locale=loc))  # noqa: B023
            assert ours == theirs, (tag, currency, amount)


def test_render__optional_parts_are_looked_up_on_disk_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = email_files("order.confirmed", "en") | {"order.confirmed/email.en.pdf.j2": "<p>pdf</p>"}
    renderer = Renderer(write(tmp_path, files))
    context = {"payload": {"order_id": "1", "note": "n"}}
    first = renderer.render("order.confirmed", "email", locale="en", context=context)
    looked: list[Path] = []
    monkeypatch.setattr(Path, "is_file", lambda self: looked.append(self) or True)

    again = renderer.render("order.confirmed", "email", locale="en", context=context)

    assert first.parts == again.parts and "pdf" in again.parts
    assert looked == []
