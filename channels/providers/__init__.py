"""channels/providers: one module per vendor integration (SMTP/SendGrid email, Twilio/Vonage SMS, Twilio voice,
Meta WhatsApp, FCM push, standard webhooks), each loaded lazily through channels.registry. Code two providers share
lives in a shared module beside them (`_twilio`, `email_headers`), never in one provider's module imported by
another. May import channels' top-level modules (base, errors, http, phone, segments, signatures, webhooks),
channels.rendering, channels.resilience and schemas; never consumers.
"""
