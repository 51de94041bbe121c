"""Email attachments: inline files (validation and limits), the PDF rendered from a template, and the MIME
that wraps the SMTP provider's email around them."""

from __future__ import annotations

import base64
import re
import zlib
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest

from channels.base import Attachment, OutboundMessage
from channels.errors import Rejected, RenderError
from channels.providers.email import build_email
from channels.rendering import pdf as pdf_module
from channels.rendering.attachments import (
    MAX_FILE_BYTES,
    MAX_FILES,
    MAX_TOTAL_BYTES,
    add_attachments,
    attachments_for,
    inline_attachments,
    safe_filename,
)
from channels.rendering.pdf import find_unicode_font, html_to_pdf
from channels.rendering.render import Rendered, Renderer

pytestmark = pytest.mark.unit

MiB = 1024 * 1024
CREATED = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
PDF = b"%PDF-1.4\n%herald\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16
ICS = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n"
SPANISH = "<h1>Factura nº 1001</h1><p>Señora Peña: total <b>59,90 €</b>. ¡Gracias! ¿Dudas? Año 2026.</p>"
GERMAN = "<h1>Rechnung</h1><p>Sehr geehrte Frau Müller, Größe: Maß, Gebühr <i>12,50 €</i>. Grüße aus Köln.</p>"


def item(filename: str = "factura.pdf", content_type: str = "application/pdf", content: bytes = PDF,
         **extra: Any) -> dict[str, Any]:
    return {"filename": filename, "content_type": content_type,
            "content_base64": base64.b64encode(content).decode(), **extra}


def text_item(size: int, name: str = "data.txt") -> dict[str, Any]:
    return item(name, "text/plain", b"a" * size)


def rendered(pdf: str | None = None, **parts: str) -> Rendered:
    values = {"subject": "Tu factura 1001", "html": "<p>Hola</p>", "text": "Hola", **parts}
    if pdf is not None:
        values["pdf"] = pdf
    return Rendered(template="invoice.issued/email", locale="es", parts=values)


def streams(pdf: bytes) -> str:
    """The PDF's content streams, inflated, so a test can read the text drawn with the core fonts."""
    out = []
    for match in re.finditer(rb"stream\r?\n(.*?)endstream", pdf, re.S):
        try:
            out.append(zlib.decompress(match.group(1)).decode("latin-1"))
        except zlib.error:
            continue
    return "\n".join(out)


# --- inline attachments ---------------------------------------------------------------------------------------

VALID_CASES: list[tuple[str, dict[str, Any], Attachment]] = [
    ("pdf", item(), Attachment("factura.pdf", "application/pdf", PDF)),
    ("png", item("logo.png", "image/png", PNG), Attachment("logo.png", "image/png", PNG)),
    ("jpeg", item("foto.jpeg", "image/jpeg", JPEG), Attachment("foto.jpeg", "image/jpeg", JPEG)),
    ("jpg", item("foto.JPG", "image/jpeg", JPEG), Attachment("foto.JPG", "image/jpeg", JPEG)),
    ("csv", item("pedidos.csv", "text/csv", b"id,total\n1,59.90\n"),
     Attachment("pedidos.csv", "text/csv", b"id,total\n1,59.90\n")),
    ("txt", item("nota.txt", "text/plain", "Grüße".encode()), Attachment("nota.txt", "text/plain", "Grüße".encode())),
    ("ics", item("cita.ics", "text/calendar", ICS), Attachment("cita.ics", "text/calendar", ICS)),
    ("type-with-params", item("nota.txt", "Text/Plain; charset=utf-8", b"hola"),
     Attachment("nota.txt", "text/plain", b"hola")),
    ("mime-wrapped-base64", {**item(), "content_base64": "JVBERi0x\nLjQKJWhl\r\ncmFsZAo="},
     Attachment("factura.pdf", "application/pdf", PDF)),
    ("extra-keys-ignored", item(description="x"), Attachment("factura.pdf", "application/pdf", PDF)),
]


@pytest.mark.parametrize(("given", "expected"), [c[1:] for c in VALID_CASES], ids=[c[0] for c in VALID_CASES])
def test_inline_attachments__valid_files_are_decoded(given: dict[str, Any], expected: Attachment) -> None:
    assert inline_attachments([given]) == (expected,)


def test_inline_attachments__none_means_no_files() -> None:
    assert inline_attachments(None) == ()
    assert inline_attachments([]) == ()


INVALID_CASES: list[tuple[str, Any, str]] = [
    # id, payload["attachments"], expected code
    ("not-a-list", {"filename": "a.pdf"}, "attachment_invalid"),
    ("item-not-an-object", ["factura.pdf"], "attachment_invalid"),
    ("filename-missing", [{"content_type": "application/pdf", "content_base64": "JVBERi0="}], "attachment_invalid"),
    ("filename-not-a-string", [item(filename=3)], "attachment_invalid"),  # type: ignore[arg-type]
    ("content-type-missing", [{"filename": "a.pdf", "content_base64": "JVBERi0="}], "attachment_invalid"),
    ("content-missing", [{"filename": "a.pdf", "content_type": "application/pdf"}], "attachment_invalid"),
    ("content-not-a-string", [{**item(), "content_base64": 12}], "attachment_invalid"),
    ("content-empty-string", [{**item(), "content_base64": ""}], "attachment_invalid"),
    ("content-decodes-to-nothing", [{**item(), "content_base64": "  \n"}], "attachment_invalid"),
    ("bad-base64-characters", [{**item(), "content_base64": "JVBERi0x!!!"}], "attachment_invalid"),
    ("bad-base64-padding", [{**item(), "content_base64": "JVBERi0xL"}], "attachment_invalid"),
    ("urlsafe-base64", [{**item(), "content_base64": "-_-_"}], "attachment_invalid"),
    ("type-html", [item("a.html", "text/html", b"<script>")], "attachment_invalid"),
    ("type-exe", [item("a.exe", "application/x-msdownload", b"MZ")], "attachment_invalid"),
    ("type-svg", [item("a.svg", "image/svg+xml", b"<svg/>")], "attachment_invalid"),
    ("type-zip", [item("a.zip", "application/zip", b"PK\x03\x04")], "attachment_invalid"),
    ("type-octet-stream", [item("a.bin", "application/octet-stream", b"x")], "attachment_invalid"),
    ("pdf-that-is-not-a-pdf", [item("a.pdf", "application/pdf", b"MZ\x90\x00")], "attachment_invalid"),
    ("png-that-is-a-jpeg", [item("a.png", "image/png", JPEG)], "attachment_invalid"),
    ("jpeg-that-is-html", [item("a.jpg", "image/jpeg", b"<html>")], "attachment_invalid"),
    ("too-many-files", [text_item(1, f"{i}.txt") for i in range(MAX_FILES + 1)], "attachment_invalid"),
    ("one-file-over-5-mib", [text_item(MAX_FILE_BYTES + 1)], "attachment_too_large"),
    ("one-huge-file-refused-before-decoding", [{**item(), "content_base64": "A" * (12 * MiB)}],
     "attachment_too_large"),
]


@pytest.mark.parametrize(("items", "code"), [c[1:] for c in INVALID_CASES], ids=[c[0] for c in INVALID_CASES])
def test_inline_attachments__violations_are_rejected(items: Any, code: str) -> None:
    with pytest.raises(Rejected) as caught:
        attachments_for(rendered(), {"attachments": items}, title="Factura")
    assert caught.value.code == code and not caught.value.retriable


def test_inline_attachments__rejection_never_quotes_the_content() -> None:
    secret = b"%PDF-" + b"SECRET-CONTENT" * 3
    with pytest.raises(Rejected) as caught:
        inline_attachments([item("a.png", "image/png", secret)])
    assert "SECRET" not in str(caught.value) and base64.b64encode(secret).decode() not in str(caught.value)


LIMIT_CASES: list[tuple[str, list[int], str | None]] = [
    # id, decoded sizes of the inline files, expected code (None: accepted)
    ("five-files", [1] * MAX_FILES, None),
    ("six-files", [1] * (MAX_FILES + 1), "attachment_invalid"),
    ("file-exactly-5-mib", [MAX_FILE_BYTES], None),
    ("file-5-mib-plus-one", [MAX_FILE_BYTES + 1], "attachment_too_large"),
    ("total-exactly-10-mib", [MAX_FILE_BYTES, MAX_FILE_BYTES], None),
    ("total-10-mib-plus-one", [MAX_FILE_BYTES, MAX_FILE_BYTES, 1], "attachment_too_large"),
    ("total-12-mib-in-small-files", [3 * MiB, 3 * MiB, 3 * MiB, 3 * MiB], "attachment_too_large"),
]


@pytest.mark.parametrize(("sizes", "code"), [c[1:] for c in LIMIT_CASES], ids=[c[0] for c in LIMIT_CASES])
def test_attachments_for__limits(sizes: list[int], code: str | None) -> None:
    payload = {"attachments": [text_item(size, f"f{i}.txt") for i, size in enumerate(sizes)]}
    if code is None:
        found = attachments_for(rendered(), payload, title="t")
        assert [len(a.content) for a in found] == sizes
    else:
        with pytest.raises(Rejected) as caught:
            attachments_for(rendered(), payload, title="t")
        assert caught.value.code == code


def test_attachments_for__limits_are_the_documented_numbers() -> None:
    limits = {"files": MAX_FILES, "file": MAX_FILE_BYTES, "total": MAX_TOTAL_BYTES, "pdf": pdf_module.MAX_PDF_BYTES}
    assert limits == {"files": 5, "file": 5 * MiB, "total": 10 * MiB, "pdf": 2 * MiB}


FILENAME_CASES: list[tuple[str, str, str, str]] = [
    ("traversal", "../../etc/passwd", "text/plain", "passwd.txt"),
    ("traversal-keeps-good-extension", "../../../../tmp/x.pdf", "application/pdf", "x.pdf"),
    ("windows-path", "C:\\Users\\ana\\factura.pdf", "application/pdf", "factura.pdf"),
    ("absolute", "/etc/shadow.csv", "text/csv", "shadow.csv"),
    ("hidden-file", ".bashrc", "text/plain", "bashrc.txt"),
    ("dots-only", "..", "image/png", "attachment.png"),
    ("empty", "", "application/pdf", "attachment.pdf"),
    ("wrong-extension", "invoice.exe", "application/pdf", "invoice_exe.pdf"),
    ("double-extension", "factura.pdf.exe", "application/pdf", "factura_pdf_exe.pdf"),
    ("no-extension", "factura", "application/pdf", "factura.pdf"),
    ("upper-case-extension-kept", "FOTO.JPEG", "image/jpeg", "FOTO.JPEG"),
    ("header-injection", "a.pdf\r\nContent-Type: text\\html", "application/pdf", "html.pdf"),
    ("header-injection-no-slash", "a.pdf\r\nX-Evil: 1", "application/pdf", "a_pdf_X-Evil_ 1.pdf"),
    ("shell-characters", "a;rm -rf $HOME|x`.csv", "text/csv", "a_rm -rf _HOME_x.csv"),
    ("quotes", 'fac"tura\'.pdf', "application/pdf", "fac_tura.pdf"),
    ("nul-and-rtl-override", "\u202e\x00fdp.exe.pdf", "application/pdf", "fdp_exe.pdf"),
    ("unicode-letters-kept", "factura_año_Größe.pdf", "application/pdf", "factura_año_Größe.pdf"),
    ("long-name-bounded", "a" * 300 + ".pdf", "application/pdf", "a" * 96 + ".pdf"),
    ("fullwidth-slash-normalised", "..\uff0f..\uff0fpasswd", "text/plain", "passwd.txt"),
]


@pytest.mark.parametrize(("name", "content_type", "expected"), [c[1:] for c in FILENAME_CASES],
                         ids=[c[0] for c in FILENAME_CASES])
def test_safe_filename__is_a_plain_basename_with_a_matching_extension(name: str, content_type: str,
                                                                       expected: str) -> None:
    assert safe_filename(name, content_type) == expected


def test_inline_attachments__filenames_are_sanitised() -> None:
    (found,) = inline_attachments([item("../../etc/passwd", "text/plain", b"root:x:0:0")])
    assert found.filename == "passwd.txt"


# --- the generated PDF ----------------------------------------------------------------------------------------


def test_attachments_for__no_pdf_part_and_no_files_is_nothing() -> None:
    assert attachments_for(rendered(), {}, title="t") == ()


def test_attachments_for__pdf_part_becomes_a_named_pdf_after_the_inline_files() -> None:
    found = attachments_for(rendered(pdf=SPANISH), {"attachments": [item("logo.png", "image/png", PNG)]},
                            title="Factura 1001", filename="factura-1001.pdf", created_at=CREATED)
    assert [(a.filename, a.content_type) for a in found] == [("logo.png", "image/png"),
                                                             ("factura-1001.pdf", "application/pdf")]
    assert found[1].content.startswith(b"%PDF-")


def test_attachments_for__pdf_filename_is_sanitised_too() -> None:
    (found,) = attachments_for(rendered(pdf="<p>x</p>"), {}, title="t", filename="../../factura.exe")
    assert found.filename == "factura_exe.pdf"


def test_attachments_for__same_input_same_pdf_bytes_even_without_a_date() -> None:
    first = attachments_for(rendered(pdf=SPANISH), {}, title="Factura")
    second = attachments_for(rendered(pdf=SPANISH), {}, title="Factura")
    assert first == second


def test_attachments_for__pdf_counts_toward_the_total() -> None:
    payload = {"attachments": [text_item(MAX_FILE_BYTES), text_item(MAX_FILE_BYTES, "b.txt")]}
    assert len(attachments_for(rendered(), payload, title="t")) == 2  # exactly 10 MiB without the PDF
    with pytest.raises(Rejected) as caught:
        attachments_for(rendered(pdf="<p>x</p>"), payload, title="t")
    assert caught.value.code == "attachment_too_large"


def test_attachments_for__pdf_over_its_limit_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pdf_module, "MAX_PDF_BYTES", 1000)
    with pytest.raises(Rejected) as caught:
        attachments_for(rendered(pdf=SPANISH * 5), {}, title="t")
    assert caught.value.code == "attachment_too_large"


def test_attachments_for__renders_from_an_autoescaped_pdf_template(tmp_path: Path) -> None:
    folder = tmp_path / "invoice.issued"
    folder.mkdir()
    for part, text in {"subject": "Factura {{ number }}", "html": "<p>{{ name }}</p>", "text": "{{ name }}",
                       "pdf": "<h1>Factura {{ number }}</h1><p>{{ name }}: {{ total|money('EUR') }}</p>"}.items():
        (folder / f"email.es.{part}.j2").write_text(text, encoding="utf-8")
    result = Renderer(tmp_path).render("invoice.issued", "email", locale="es-ES",
                                       context={"number": "1001", "name": "<img src='/etc/passwd'> Peña",
                                                "total": "59.90"})
    assert "&lt;img" in result["pdf"] and "<img" not in result["pdf"]
    (found,) = attachments_for(result, {}, title="Factura 1001", filename="factura-1001.pdf", created_at=CREATED)
    assert found.content.startswith(b"%PDF-")


PDF_TEXT_CASES = [("spanish", SPANISH), ("german", GERMAN),
                  ("symbols-outside-every-font", "<p>日本語 ✓ 🎉 € ñ ü</p>")]


@pytest.mark.parametrize("font", ["auto", "core"])
@pytest.mark.parametrize("html", [c[1] for c in PDF_TEXT_CASES], ids=[c[0] for c in PDF_TEXT_CASES])
def test_html_to_pdf__renders_european_text_with_any_font(html: str, font: str) -> None:
    data = html_to_pdf(html, title="Factura € ñ ü", created_at=CREATED, font=font)  # type: ignore[arg-type]
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")


@pytest.mark.parametrize("font", ["auto", "core"])
def test_html_to_pdf__same_input_same_bytes(font: str) -> None:
    first = html_to_pdf(SPANISH + GERMAN, title="Factura", created_at=CREATED, font=font)  # type: ignore[arg-type]
    second = html_to_pdf(SPANISH + GERMAN, title="Factura", created_at=CREATED, font=font)  # type: ignore[arg-type]
    assert first == second


def test_html_to_pdf__the_creation_date_is_the_callers() -> None:
    first = html_to_pdf(SPANISH, title="Factura", created_at=CREATED)
    later = html_to_pdf(SPANISH, title="Factura", created_at=datetime(2027, 1, 1, tzinfo=UTC))
    assert first != later
    assert b"D:20261124100000Z" in first


def test_html_to_pdf__core_fonts_write_latin1_and_euro_as_eur() -> None:
    text = streams(html_to_pdf("<p>Peña zahlt 12,50 € für Größe — 日本</p>", title="t", created_at=CREATED,
                               font="core"))
    assert "Peña zahlt 12,50 EUR für Größe - ??" in text


@pytest.mark.skipif(find_unicode_font() is None, reason="no DejaVu font installed (Debian: fonts-dejavu-core)")
def test_html_to_pdf__uses_the_unicode_font_when_installed() -> None:
    assert b"DejaVuSans" in html_to_pdf(SPANISH, title="t", created_at=CREATED)
    assert b"DejaVuSans" not in html_to_pdf(SPANISH, title="t", created_at=CREATED, font="core")


def test_find_unicode_font__none_in_an_empty_folder(tmp_path: Path) -> None:
    assert find_unicode_font((tmp_path,)) is None


def test_html_to_pdf__without_a_unicode_font_falls_back_to_core_fonts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pdf_module, "find_unicode_font", lambda: None)
    data = html_to_pdf("<p>Total 59,90 € — Peña</p>", title="t", created_at=CREATED)
    assert b"DejaVuSans" not in data
    assert "Total 59,90 EUR - Peña" in streams(data)


def test_html_to_pdf__missing_glyphs_are_replaced_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    html_to_pdf("<p>Cliente 日本 🎉</p>", title="t", created_at=CREATED)
    assert not [r for r in caplog.records if "日" in r.getMessage() or "missing" in r.getMessage()]


@pytest.mark.parametrize("src", ["/etc/passwd", "http://127.0.0.1:9/x.png", "file:///etc/hostname"])
def test_html_to_pdf__images_are_ignored_never_loaded(src: str) -> None:
    for html in (f'<p>x<img src="{src}"></p>', f'<table><tr><td><img src="{src}"></td></tr></table>'):
        assert html_to_pdf(html, title="t", created_at=CREATED).startswith(b"%PDF-")


@pytest.mark.parametrize("html", ["<table><tr><td><b>x</b> y <i>z</i></td></tr></table>",
                                  "<table><tr><td><table><tr><td>x</td></tr></table></td></tr></table>"],
                         ids=["mixed-tags-in-cell", "nested-table"])
def test_html_to_pdf__layout_fpdf_cannot_draw_is_a_template_error(html: str) -> None:
    with pytest.raises(RenderError) as caught:
        html_to_pdf(html, title="t", created_at=CREATED)
    assert caught.value.reason == "template_error" and not caught.value.retriable


# --- add_attachments: MIME round trip -------------------------------------------------------------------------

SENDER = "Herald <no-reply@example.com>"


def smtp_email(**kwargs: Any) -> Any:
    values: dict[str, Any] = dict(
        message_id="msg-3f2a9c", channel="email", address="ana@example.com", idempotency_key="k",
        display_name="Ana Peña", headers={"List-Unsubscribe": "<https://herald.example/u/abc>"},
        rendered=Rendered("invoice.issued/email", "es",
                          {"subject": "Tu factura nº 1001 — ¡gracias!", "html": "<p>Hola Ana</p>", "text": "Hola Ana"}))
    values.update(kwargs)
    return build_email(OutboundMessage(**values), sender=SENDER, domain="example.com")


FILES = (Attachment("factura-1001.pdf", "application/pdf", PDF), Attachment("pedidos.csv", "text/csv", b"id\n1\n"),
         Attachment("factura_año.pdf", "application/pdf", PDF + b"2"))
KEPT_HEADERS = ("From", "To", "Subject", "Date", "Message-ID", "Content-Language", "Auto-Submitted",
                "X-Herald-Message-ID", "List-Unsubscribe")


def test_add_attachments__round_trip_keeps_headers_body_and_files() -> None:
    original = smtp_email()
    wire = message_from_bytes(add_attachments(original, FILES).as_bytes(), policy=policy.default)
    before = message_from_bytes(original.as_bytes(), policy=policy.default)

    assert wire.get_content_type() == "multipart/mixed"
    for name in KEPT_HEADERS:
        assert wire[name] == before[name], name
    assert wire["Message-ID"] == "<msg-3f2a9c@example.com>"
    assert wire["Subject"] == "Tu factura nº 1001 — ¡gracias!"
    assert wire["To"] == "Ana Peña <ana@example.com>"
    assert wire.get_body(("plain",)).get_content().strip() == "Hola Ana"
    assert wire.get_body(("html",)).get_content().strip() == "<p>Hola Ana</p>"
    found = [(p.get_filename(), p.get_content_type(), p.get_content_disposition(), p.get_payload(decode=True))
             for p in wire.iter_attachments()]
    assert found == [("factura-1001.pdf", "application/pdf", "attachment", PDF),
                     ("pedidos.csv", "text/csv", "attachment", b"id\n1\n"),
                     ("factura_año.pdf", "application/pdf", "attachment", PDF + b"2")]


def test_add_attachments__headers_live_once_on_the_root_only() -> None:
    wire = message_from_bytes(add_attachments(smtp_email(), FILES[:1]).as_bytes(), policy=policy.default)
    body, _ = wire.get_payload()
    assert body.get_content_type() == "multipart/alternative"
    assert [k for k in body if k.lower() not in ("content-type",)] == []
    for name in (*KEPT_HEADERS, "MIME-Version"):
        assert len(wire.get_all(name) or []) == 1, name


def test_add_attachments__leaves_the_original_untouched() -> None:
    original = smtp_email()
    before = original.as_bytes()
    add_attachments(original, FILES)
    assert original.as_bytes() == before


def test_add_attachments__no_files_returns_the_message_itself() -> None:
    original = smtp_email()
    assert add_attachments(original, ()) is original


def test_add_attachments__with_a_generated_pdf_end_to_end() -> None:
    files = attachments_for(rendered(pdf=GERMAN), {"attachments": [item("cita.ics", "text/calendar", ICS)]},
                            title="Rechnung", filename="rechnung.pdf", created_at=CREATED)
    wire = message_from_bytes(add_attachments(smtp_email(), files).as_bytes(), policy=policy.default)
    parts = {p.get_filename(): p.get_payload(decode=True) for p in wire.iter_attachments()}
    assert parts["cita.ics"] == ICS
    assert parts["rechnung.pdf"] == files[1].content
