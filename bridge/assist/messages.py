"""The assist topics' payloads: an utterance in (text or JSON), a response out (HA's shape).

Fail closed (ADR-133 §6): more than 4096 bytes, invalid UTF-8, an empty text or a JSON body
that is not what the contract says is refused with an `error` answer naming the problem, and
nothing is acted on. Ids are echoed only when they are plain strings or numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

MAX_UTTERANCE = 4096
_TEXT_KEYS = ("text", "language", "site_id", "conversation_id")


class UtteranceError(ValueError):
    def __init__(self, message: str, utterance: "Utterance | None" = None) -> None:
        super().__init__(message)
        self.utterance = utterance


@dataclass
class Utterance:
    text: str
    language: str | None = None
    site_id: str | None = None
    conversation_id: str | None = None
    id: Any = None


def parse_utterance(payload: bytes) -> Utterance:
    if len(payload) > MAX_UTTERANCE:
        raise UtteranceError(f"an utterance may have at most {MAX_UTTERANCE} bytes, this one has {len(payload)}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise UtteranceError("an utterance must be UTF-8 text") from None
    if text.lstrip().startswith("{"):
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise UtteranceError(f"not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise UtteranceError("a JSON utterance must be an object")
        cid = body.get("id")
        u = Utterance("", id=cid if isinstance(cid, (str, int)) and not isinstance(cid, bool) else None)
        for k in _TEXT_KEYS:
            value = body.get(k)
            if value is not None and not isinstance(value, str):
                raise UtteranceError(f'"{k}" must be a string', u)
            if isinstance(value, str) and len(value) > (MAX_UTTERANCE if k == "text" else 200):
                raise UtteranceError(f'"{k}" is too long', u)
        u.text = body.get("text") or ""
        u.language, u.site_id, u.conversation_id = body.get("language"), body.get("site_id"), body.get("conversation_id")
        text = u.text
    else:
        u = Utterance(text)
    if not text.strip():
        raise UtteranceError("the utterance is empty", u)
    if "\x00" in text:
        raise UtteranceError("an utterance may not contain NUL characters", u)
    return u


def response(utterance: Utterance | None, *, language: str, response_type: str, speech: str,
             intent: dict[str, Any] | None, data: dict[str, Any], elapsed_ms: float,
             intents: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    u = utterance or Utterance("")
    body = {"id": u.id, "text": u.text, "language": language, "intent": intent,
            "response_type": response_type,
            "speech": {"plain": {"speech": speech, "extra_data": None}}, "card": {},
            "data": data, "conversation_id": u.conversation_id, "site_id": u.site_id,
            "elapsed_ms": round(elapsed_ms, 3)}
    if intents is not None and len(intents) > 1:
        body["intents"] = intents
    return body
