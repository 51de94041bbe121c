"""channels/providers: one module per vendor integration (SMTP/SendGrid email, Twilio/Vonage SMS, Twilio voice,
Meta WhatsApp, FCM push, standard webhooks), each loaded lazily through channels.registry.
May import channels' top-level modules (base, errors, http, phone, segments, signatures, webhooks),
channels.rendering, channels.resilience and schemas; never consumers.
"""
