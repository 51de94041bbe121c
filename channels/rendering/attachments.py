"""Email attachments: files an event carries inline (validated), a PDF rendered from a template, and the MIME
that adds them to the SMTP provider's multipart/alternative email.

Every refusal is a permanent `Rejected` with code `attachment_invalid` or `attachment_too_large`, and its
message names the rule and the file's position, never the file's content.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from email import encoders
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from typing import Any

from channels.base import Attachment
from channels.errors import Rejected
from channels.rendering.facturx import document_pdf
from channels.rendering.render import Rendered

MiB = 1024 * 1024
MAX_FILES = 5  # inline files per message (the generated PDF comes on top)
MAX_FILE_BYTES = 5 * MiB
MAX_TOTAL_BYTES = 10 * MiB  # everything attached to one message, the generated PDF included
MAX_FILENAME_LENGTH = 100

# Content types an event may attach, with the extensions a mail client would open them by.
ALLOWED_TYPES: dict[str, tuple[str, ...]] = {
    "application/pdf": (".pdf",),
    "image/png": (".png",),
    "image/jpeg": (".jpg", ".jpeg"),
    "text/csv": (".csv",),
    "text/plain": (".txt",),
    "text/calendar": (".ics",),
}
# Binary types must start with their format's signature, so a declared PDF really is one.
MAGIC: dict[str, tuple[bytes, ...]] = {
    "application/pdf": (b"%PDF-",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
}
# A resend must attach the same bytes; without the event's time the PDF carries this fixed date.
DEFAULT_CREATED_AT = datetime(2000, 1, 1, tzinfo=UTC)

_UNSAFE_FILENAME = re.compile(r"[^\w.\- ]+")
_WHITESPACE = re.compile(r"\s+")
CONTENT_HEADERS = frozenset({"content-type", "content-transfer-encoding", "mime-version"})


def _invalid(message: str) -> Rejected:
    return Rejected(message, code="attachment_invalid")


def _too_large(message: str) -> Rejected:
    return Rejected(message, code="attachment_too_large")


def safe_filename(name: str, content_type: str) -> str:
    """A plain basename: no folders, no control or shell characters, no leading dot, an extension that matches
    `content_type` (`../../etc/passwd` as text/plain -> `passwd.txt`; `invoice.exe` as PDF -> `invoice_exe.pdf`)."""
    base = unicodedata.normalize("NFKC", name).replace("\\", "/").rsplit("/", 1)[-1]
    base = _WHITESPACE.sub(" ", _UNSAFE_FILENAME.sub("_", base)).strip(" ._")
    stem, dot, ext = base.rpartition(".")
    if not dot:
        stem, ext = base, ""
    allowed = ALLOWED_TYPES.get(content_type, ())
    if f".{ext.lower()}" in allowed:
        suffix = f".{ext}"
    else:
        # Keep the foreign extension as part of the name, so "invoice.exe" cannot open as a program.
        stem = "_".join(filter(None, (stem, ext)))
        suffix = allowed[0] if allowed else ""
    stem = stem.replace(".", "_")[: MAX_FILENAME_LENGTH - len(suffix)].strip(" ._") or "attachment"
    return stem + suffix


def _decode(value: Any, index: int) -> bytes:
    if not isinstance(value, str) or not value:
        raise _invalid(f"attachment {index}: content_base64 must be a non-empty string")
    text = "".join(value.split())  # MIME-style base64 comes in 76-character lines
    # Refuse by size before decoding, so an oversized payload never becomes a second copy in memory.
    if len(text) // 4 * 3 > MAX_FILE_BYTES + 2:
        raise _too_large(f"attachment {index}: over {MAX_FILE_BYTES // MiB} MiB")
    try:
        content = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _invalid(f"attachment {index}: content_base64 is not valid base64") from exc
    if not content:
        raise _invalid(f"attachment {index}: empty file")
    if len(content) > MAX_FILE_BYTES:
        raise _too_large(f"attachment {index}: over {MAX_FILE_BYTES // MiB} MiB")
    return content


def inline_attachments(items: Any) -> tuple[Attachment, ...]:
    """`payload.attachments`: a list of `{"filename", "content_type", "content_base64"}`, validated."""
    if items is None:
        return ()
    if not isinstance(items, list):
        raise _invalid("attachments must be a list")
    if len(items) > MAX_FILES:
        raise _invalid(f"at most {MAX_FILES} attachments")
    found: list[Attachment] = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise _invalid(f"attachment {index}: must be an object")
        filename, content_type = item.get("filename"), item.get("content_type")
        if not isinstance(filename, str) or not isinstance(content_type, str):
            raise _invalid(f"attachment {index}: filename and content_type must be strings")
        content_type = content_type.split(";", 1)[0].strip().lower()
        if content_type not in ALLOWED_TYPES:
            raise _invalid(f"attachment {index}: content type not allowed")
        content = _decode(item.get("content_base64"), index)
        if not content.startswith(MAGIC.get(content_type, (b"",))):
            raise _invalid(f"attachment {index}: content is not {content_type}")
        found.append(Attachment(filename=safe_filename(filename, content_type), content_type=content_type,
                                content=content))
    return tuple(found)


def attachments_for(rendered: Rendered, payload: Mapping[str, Any], *, title: str,
                    filename: str = "document.pdf", created_at: datetime | None = None,
                    facturx: bool = False) -> tuple[Attachment, ...]:
    """Everything to attach to one email: the event's inline files, then the PDF rendered from the template's
    `pdf` part when it has one (named `filename`, dated `created_at` so a resend attaches identical bytes; a
    Factur-X PDF/A-3 when `facturx` and the document is an invoice, see channels/rendering/facturx.py)."""
    found = list(inline_attachments(payload.get("attachments")))
    if pdf_html := rendered.parts.get("pdf"):
        content = document_pdf(pdf_html, payload, title=title, created_at=created_at or DEFAULT_CREATED_AT,
                               facturx=facturx)
        found.append(Attachment(filename=safe_filename(filename, "application/pdf"),
                                content_type="application/pdf", content=content))
    if sum(len(a.content) for a in found) > MAX_TOTAL_BYTES:
        raise _too_large(f"attachments over {MAX_TOTAL_BYTES // MiB} MiB in total")
    return tuple(found)


def _part(attachment: Attachment) -> MIMEBase:
    maintype, _, subtype = attachment.content_type.partition("/")
    part = MIMEBase(maintype, subtype or "octet-stream")
    part.set_payload(attachment.content)
    encoders.encode_base64(part)
    name = attachment.filename
    # Non-ASCII names go out RFC 2231-encoded (filename*=utf-8''…), which every current client reads.
    part.add_header("Content-Disposition", "attachment", filename=name if name.isascii() else ("utf-8", "", name))
    return part


def add_attachments(msg: Message, attachments: Iterable[Attachment]) -> Message:
    """`msg` (the multipart/alternative of `channels.providers.email.build_email`) wrapped in a multipart/mixed root
    with one part per attachment. Every top-level header of `msg` (From, To, Subject, Message-ID…) moves to the new
    root; `msg` itself is left unchanged. Without attachments, `msg` is returned as it is."""
    files = list(attachments)
    if not files:
        return msg
    body = copy.deepcopy(msg)
    root = MIMEMultipart("mixed")
    for name, value in msg.items():
        if name.lower() not in CONTENT_HEADERS:
            root[name] = value
            del body[name]  # the header now lives on the root; the body part keeps only its Content-Type
    del body["MIME-Version"]
    root.attach(body)
    for attachment in files:
        root.attach(_part(attachment))
    return root
