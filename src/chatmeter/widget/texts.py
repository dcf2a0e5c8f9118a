"""The widget's own words, in each language it ships, and the customer's overrides.

The widget shows the visitor's language when it ships it (the first of the
browser's languages that it does), else English. A customer may replace any text
with their own (``Assistant.widget_texts``), which then shows in every language:
they know what their visitors read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

DEFAULT_LANGUAGE = "en"

# Every text the widget draws, by key, in English; the order is the settings page's.
ENGLISH: dict[str, str] = {
    "subtitle": "Ask us anything",
    "placeholder": "Write a message…",
    "send": "Send message",
    "open": "Open chat",
    "close": "Close chat",
    "restart": "Start a new conversation",
    "conversation": "Conversation",
    "typing": "Typing",
    "sources": "Sources",
    "cut_off": "This answer was cut short.",
    "no_answer": "Sorry, I have no answer to that.",
    "unavailable": "This assistant is not available right now.",
    "too_fast": "You are sending messages a little fast. Please wait a moment and try again.",
    "busy": "Many people are asking right now. Please try again in a moment.",
    "full": "This conversation has reached its length limit. Your next message starts a new one.",
    "rate_question": "Was this answer helpful?",
    "helpful": "Helpful",
    "not_helpful": "Not helpful",
    "thanks": "Thank you for your feedback.",
    "rating_failed": "Your rating could not be sent. Please try again later.",
    "powered_by": "Powered by Chatmeter",
}
KEYS: tuple[str, ...] = tuple(ENGLISH)

TRANSLATIONS: dict[str, dict[str, str]] = {
    "en": ENGLISH,
    "fr": {
        "subtitle": "Posez-nous vos questions",
        "placeholder": "Écrivez un message…",
        "send": "Envoyer le message",
        "open": "Ouvrir la discussion",
        "close": "Fermer la discussion",
        "restart": "Commencer une nouvelle conversation",
        "conversation": "Conversation",
        "typing": "En train d'écrire",
        "sources": "Sources",
        "cut_off": "Cette réponse a été interrompue.",
        "no_answer": "Désolé, je n'ai pas de réponse à cette question.",
        "unavailable": "Cet assistant n'est pas disponible pour le moment.",
        "too_fast": "Vous envoyez des messages un peu vite. Patientez un instant et réessayez.",
        "busy": "Beaucoup de personnes posent des questions en ce moment. Réessayez dans un instant.",
        "full": "Cette conversation a atteint sa longueur maximale. Votre prochain message en commencera une nouvelle.",
        "rate_question": "Cette réponse vous a-t-elle aidé ?",
        "helpful": "Utile",
        "not_helpful": "Pas utile",
        "thanks": "Merci pour votre avis.",
        "rating_failed": "Votre avis n'a pas pu être envoyé. Réessayez plus tard.",
        "powered_by": "Propulsé par Chatmeter",
    },
    "de": {
        "subtitle": "Fragen Sie uns alles",
        "placeholder": "Nachricht schreiben…",
        "send": "Nachricht senden",
        "open": "Chat öffnen",
        "close": "Chat schließen",
        "restart": "Neues Gespräch beginnen",
        "conversation": "Gespräch",
        "typing": "Schreibt",
        "sources": "Quellen",
        "cut_off": "Diese Antwort wurde gekürzt.",
        "no_answer": "Leider habe ich darauf keine Antwort.",
        "unavailable": "Dieser Assistent ist gerade nicht verfügbar.",
        "too_fast": "Sie senden Nachrichten etwas zu schnell. Bitte warten Sie kurz und versuchen Sie es erneut.",
        "busy": "Gerade fragen sehr viele. Bitte versuchen Sie es gleich noch einmal.",
        "full": "Dieses Gespräch hat seine maximale Länge erreicht. Ihre nächste Nachricht beginnt ein neues.",
        "rate_question": "War diese Antwort hilfreich?",
        "helpful": "Hilfreich",
        "not_helpful": "Nicht hilfreich",
        "thanks": "Danke für Ihre Rückmeldung.",
        "rating_failed": "Ihre Bewertung konnte nicht gesendet werden. Bitte versuchen Sie es später erneut.",
        "powered_by": "Bereitgestellt von Chatmeter",
    },
    "es": {
        "subtitle": "Pregúntanos lo que quieras",
        "placeholder": "Escribe un mensaje…",
        "send": "Enviar mensaje",
        "open": "Abrir chat",
        "close": "Cerrar chat",
        "restart": "Empezar una conversación nueva",
        "conversation": "Conversación",
        "typing": "Escribiendo",
        "sources": "Fuentes",
        "cut_off": "Esta respuesta quedó incompleta.",
        "no_answer": "Lo siento, no tengo respuesta para eso.",
        "unavailable": "Este asistente no está disponible en este momento.",
        "too_fast": "Estás enviando mensajes un poco rápido. Espera un momento y vuelve a intentarlo.",
        "busy": "Mucha gente está preguntando ahora mismo. Vuelve a intentarlo en un momento.",
        "full": "Esta conversación ha llegado a su longitud máxima. Tu próximo mensaje empezará una nueva.",
        "rate_question": "¿Te ha resultado útil esta respuesta?",
        "helpful": "Útil",
        "not_helpful": "No es útil",
        "thanks": "Gracias por tu opinión.",
        "rating_failed": "No se pudo enviar tu valoración. Vuelve a intentarlo más tarde.",
        "powered_by": "Con la tecnología de Chatmeter",
    },
    "nl": {
        "subtitle": "Stel ons je vraag",
        "placeholder": "Schrijf een bericht…",
        "send": "Bericht versturen",
        "open": "Chat openen",
        "close": "Chat sluiten",
        "restart": "Nieuw gesprek beginnen",
        "conversation": "Gesprek",
        "typing": "Aan het typen",
        "sources": "Bronnen",
        "cut_off": "Dit antwoord is afgebroken.",
        "no_answer": "Sorry, daar heb ik geen antwoord op.",
        "unavailable": "Deze assistent is nu niet beschikbaar.",
        "too_fast": "Je stuurt berichten wat snel. Wacht even en probeer het opnieuw.",
        "busy": "Er stellen nu veel mensen een vraag. Probeer het zo opnieuw.",
        "full": "Dit gesprek heeft zijn maximale lengte bereikt. Je volgende bericht begint een nieuw gesprek.",
        "rate_question": "Was dit antwoord nuttig?",
        "helpful": "Nuttig",
        "not_helpful": "Niet nuttig",
        "thanks": "Bedankt voor je feedback.",
        "rating_failed": "Je beoordeling kon niet worden verstuurd. Probeer het later opnieuw.",
        "powered_by": "Mogelijk gemaakt door Chatmeter",
    },
}
LANGUAGES: tuple[str, ...] = tuple(TRANSLATIONS)


def language_of(preferred: Iterable[str]) -> str:
    """The first shipped language among the visitor's (``fr-CA`` counts as ``fr``), else English."""
    for tag in preferred:
        base = tag.strip().split("-")[0].split("_")[0].lower()
        if base in TRANSLATIONS:
            return base
    return DEFAULT_LANGUAGE


def accept_language(header: str) -> list[str]:
    """An ``Accept-Language`` header's languages, most wanted first (``q=0`` left out)."""
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                continue
        if tag and weight > 0:
            ranked.append((-weight, position, tag))
    return [tag for _, _, tag in sorted(ranked)]


def texts_for(language: str, overrides: Mapping[str, str]) -> dict[str, str]:
    """Every text in ``language``, with the customer's non-blank overrides over them."""
    shown = dict(TRANSLATIONS.get(language, ENGLISH))
    for key, text in overrides.items():
        if key in shown and text.strip():
            shown[key] = text.strip()
    return shown
