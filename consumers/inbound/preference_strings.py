"""The hosted preference page's words in English, Spanish and German (consumers/inbound/preference_page.py).

Topic names come from the catalog's `preference_topics` labels; these are the page's own words, the channels'
names and the names of the two topics every catalog has (a type without a `topic` is in its category's).
"""

from __future__ import annotations

LANGUAGES = ("en", "es", "de")

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Your message preferences",
        "intro": "Choose what {brand} sends you, and where. Untick what you do not want, then save.",
        "locked": "Always sent: you need these for your account and your orders.",
        "always": "always on",
        "save": "Save my choices",
        "saved": "Your choices are saved.",
        "stale": "This page was open for a long time. Check your choices and save again.",
        "used": "These choices were already sent. Check them and save again to change them.",
        "unsaved": "Your choices could not be saved just now. Please try again in a minute.",
        "unavailable": "This page is not available just now. Please try again in a minute.",
        "invalid": "This link is not valid.",
        "expired": "This link has expired. Use the link in a more recent message from {brand}.",
        "nothing": "There is nothing here you can turn off.",
        "note": "Offers are sent only where you agreed to receive them; you can also reply STOP to a text.",
        "email": "Email", "sms": "Text message (SMS)", "whatsapp": "WhatsApp", "voice": "Phone call",
        "push": "App notification",
        "transactional": "Other service messages", "promotional": "Offers and news",
    },
    "es": {
        "title": "Tus preferencias de mensajes",
        "intro": "Elige qué te envía {brand} y por dónde. Desmarca lo que no quieras y guarda.",
        "locked": "Siempre se envían: los necesitas para tu cuenta y tus pedidos.",
        "always": "siempre activo",
        "save": "Guardar mis preferencias",
        "saved": "Tus preferencias se han guardado.",
        "stale": "Esta página llevaba mucho tiempo abierta. Revisa tus preferencias y vuelve a guardar.",
        "used": "Estas preferencias ya se enviaron. Revísalas y vuelve a guardar para cambiarlas.",
        "unsaved": "No hemos podido guardar tus preferencias. Inténtalo de nuevo en un minuto.",
        "unavailable": "Esta página no está disponible ahora mismo. Inténtalo de nuevo en un minuto.",
        "invalid": "Este enlace no es válido.",
        "expired": "Este enlace ha caducado. Usa el enlace de un mensaje más reciente de {brand}.",
        "nothing": "Aquí no hay nada que puedas desactivar.",
        "note": "Las ofertas solo se envían donde aceptaste recibirlas; también puedes responder BAJA a un SMS.",
        "email": "Correo electrónico", "sms": "Mensaje de texto (SMS)", "whatsapp": "WhatsApp",
        "voice": "Llamada", "push": "Notificación de la app",
        "transactional": "Otros mensajes del servicio", "promotional": "Ofertas y novedades",
    },
    "de": {
        "title": "Ihre Nachrichteneinstellungen",
        "intro": "Wählen Sie, was {brand} Ihnen sendet und wie. Entfernen Sie die Haken bei allem, was Sie nicht "
                 "möchten, und speichern Sie.",
        "locked": "Wird immer gesendet: Sie brauchen diese Nachrichten für Ihr Konto und Ihre Bestellungen.",
        "always": "immer aktiv",
        "save": "Auswahl speichern",
        "saved": "Ihre Auswahl ist gespeichert.",
        "stale": "Diese Seite war lange geöffnet. Prüfen Sie Ihre Auswahl und speichern Sie erneut.",
        "used": "Diese Auswahl wurde bereits gesendet. Prüfen Sie sie und speichern Sie erneut, um sie zu ändern.",
        "unsaved": "Ihre Auswahl konnte gerade nicht gespeichert werden. Bitte versuchen Sie es in einer Minute "
                   "erneut.",
        "unavailable": "Diese Seite ist gerade nicht erreichbar. Bitte versuchen Sie es in einer Minute erneut.",
        "invalid": "Dieser Link ist ungültig.",
        "expired": "Dieser Link ist abgelaufen. Nutzen Sie den Link in einer neueren Nachricht von {brand}.",
        "nothing": "Hier gibt es nichts, was Sie abschalten können.",
        "note": "Angebote senden wir nur, wo Sie zugestimmt haben; auf eine SMS können Sie auch STOPP antworten.",
        "email": "E-Mail", "sms": "SMS", "whatsapp": "WhatsApp", "voice": "Anruf", "push": "App-Benachrichtigung",
        "transactional": "Weitere Servicenachrichten", "promotional": "Angebote und Neuigkeiten",
    },
}


def language_of(*locales: str | None) -> str:
    """The first of `locales` whose language the page speaks (`es-ES` -> `es`), else English."""
    for locale in locales:
        language = (locale or "").replace("_", "-").split("-")[0].lower()
        if language in STRINGS:
            return language
    return "en"
