"""channels: everything that turns a rendered message into a send and a vendor's answer into a status, knowing no
routing rule. Top level: the provider contract (`base`: `Sender`, `WebhookReceiver`, `OutboundMessage` carrying a
`rendering.render.Rendered`; `errors`; `webhooks`), the HTTP provider base (`http`), signatures, phone numbers and
SMS segments, the registry of providers and production's refusals of development credentials. Packages:
`providers` (one per vendor), `resilience` (what wraps a provider), `rendering` (templates, attachments, PDFs).
May import schemas only; never consumers.
"""
