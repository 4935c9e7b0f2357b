"""The assist topics' payloads: an utterance in (text or JSON), a response out (HA's shape).

Fail closed (ADR-133 §6): more than 4096 bytes, invalid UTF-8, an empty text, a control or
invisible character (NUL, zero-width, a direction override), or a JSON body that is not what the
contract says is refused with an `error` answer naming the problem, and nothing is acted on.
Ids are echoed only when they are plain strings or integers, on every answer, refusals included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import json
import re
import unicodedata

import orjson

MAX_UTTERANCE = 4096
MAX_SCANNED = 1 << 20  # an over-long or broken body is searched this far for its ids
_TEXT_KEYS = ("text", "language", "site_id", "conversation_id")
_HIDDEN = {"Cc", "Cf", "Co", "Cn", "Cs"}  # controls, format (zero-width, direction overrides), private, unassigned
_ID_FIELD = re.compile(r'"(id|conversation_id)"\s*:\s*("(?:[^"\\]|\\.){0,200}"|-?\d{1,18})')


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
    dry_run: bool = False  # understand and plan, act on nothing (the web page's assist console asks for it)


def parse_utterance(payload: bytes) -> Utterance:
    if len(payload) > MAX_UTTERANCE:
        raise UtteranceError(f"an utterance may have at most {MAX_UTTERANCE} bytes, this one has {len(payload)}",
                             _ids_of(payload))
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise UtteranceError("an utterance must be UTF-8 text") from None
    if text.lstrip().startswith(("{", "[")):
        body = json_object(payload, "a JSON utterance", _ids_of)
        u = _ids(body)
        for k in _TEXT_KEYS:
            value = body.get(k)
            if value is not None and not isinstance(value, str):
                raise UtteranceError(f'"{k}" must be a string', u)
            if isinstance(value, str) and len(value) > (MAX_UTTERANCE if k == "text" else 200):
                raise UtteranceError(f'"{k}" is too long', u)
        for k in ("site_id", "conversation_id", "language"):  # they key conversations and areas: plain text only
            value = body.get(k)
            if isinstance(value, str) and any(unicodedata.category(c) in _HIDDEN for c in value):
                raise UtteranceError(f'"{k}" may not contain control or invisible characters', u)
        if not isinstance(body.get("dry_run", False), bool):
            raise UtteranceError('"dry_run" must be true or false', u)
        u.text = body.get("text") or ""
        u.language, u.site_id, u.dry_run = body.get("language"), body.get("site_id"), body.get("dry_run", False)
        text = u.text
    else:
        u = Utterance(text)
    check_text(text, u)
    return u


def check_text(text: str, u: Utterance | None = None) -> None:
    """Refuse an empty text, or one with a control or invisible character (the one rule for every
    way a sentence comes in: the utterance topic, Hermes)."""
    if not text.strip():
        raise UtteranceError("the utterance is empty", u)
    hidden = next((c for c in text if unicodedata.category(c) in _HIDDEN and c not in "\t\n\r"), None)
    if hidden is not None:
        what = "NUL characters" if hidden == "\x00" else f"invisible or control characters (U+{ord(hidden):04X})"
        raise UtteranceError(f"an utterance may not contain {what}", u)


def json_object(payload: bytes, what: str, ids: Callable[[bytes], Utterance | None] = lambda _: None
                ) -> dict[str, Any]:
    """A JSON object, refused when it is not one or names a key twice (which "text" would be meant?)."""
    try:
        pairs = json.loads(payload, object_pairs_hook=_no_duplicates)
    except ValueError as exc:
        raise UtteranceError(f"not valid JSON: {exc}", ids(payload)) from None
    if not isinstance(pairs, dict):
        raise UtteranceError(f"{what} must be a JSON object")
    return pairs


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    twice = next((k for k in keys if keys.count(k) > 1), None)
    if twice is not None:
        raise ValueError(f"the key {twice!r} is given twice")
    return dict(pairs)


def _ids(body: dict[str, Any]) -> Utterance:
    """The utterance's id and conversation id, when they are plain values: echoed on every answer."""
    rid, cid = body.get("id"), body.get("conversation_id")
    return Utterance("", id=rid if isinstance(rid, (str, int)) and not isinstance(rid, bool) else None,
                     conversation_id=cid if isinstance(cid, str) and len(cid) <= 200 else None)


def _ids_of(payload: bytes) -> Utterance | None:
    """The ids of an utterance refused whole (too long, not JSON), so a satellite can match the refusal:
    from the JSON object if it is one, else from its first `"id": ...` and `"conversation_id": ...`."""
    if len(payload) <= MAX_SCANNED:
        try:
            body = orjson.loads(payload)
            return _ids(body) if isinstance(body, dict) else None
        except orjson.JSONDecodeError:
            pass
    head = payload[:MAX_SCANNED].decode("utf-8", "replace")
    found = {m.group(1): m.group(2) for m in _ID_FIELD.finditer(head)}
    if not found:
        return None
    return _ids({k: orjson.loads(v) for k, v in found.items() if _loads_ok(v)})


def _loads_ok(value: str) -> bool:
    try:
        orjson.loads(value)
        return True
    except orjson.JSONDecodeError:
        return False


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
