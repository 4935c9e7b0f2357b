"""Rhasspy 2.5 Hermes over MQTT (behind `assist.hermes`): the bridge as Rhasspy's NLU and handler.

`hermes/nlu/query` in; out `hermes/nlu/intentParsed` and `hermes/intent/<name>` for the
recognized intent, or `hermes/nlu/intentNotRecognized`; with a `sessionId`, the answer is
spoken through `hermes/dialogueManager/endSession`. Keys are camelCase as rhasspy-hermes
writes them, optional ones sent as null; `id`, `siteId`, `sessionId` and `customData` are
passed through unchanged.
"""

from __future__ import annotations

from typing import Any


from bridge.assist.messages import MAX_UTTERANCE, UtteranceError, Utterance, check_text, json_object
from bridge.assist.templates import Recognition

QUERY = "hermes/nlu/query"
PARSED = "hermes/nlu/intentParsed"
NOT_RECOGNIZED = "hermes/nlu/intentNotRecognized"
END_SESSION = "hermes/dialogueManager/endSession"
ERROR = "hermes/error/nlu"


def intent_topic(name: str) -> str:
    return f"hermes/intent/{name}"


def parse_query(payload: bytes) -> tuple[Utterance, dict[str, Any]]:
    if len(payload) > MAX_UTTERANCE:
        raise UtteranceError(f"a query may have at most {MAX_UTTERANCE} bytes")
    body = json_object(payload, "hermes/nlu/query")
    if not isinstance(body.get("input"), str) or not body["input"].strip():
        raise UtteranceError('hermes/nlu/query needs an "input" text')
    check_text(body["input"])
    keep = {k: body.get(k) for k in ("id", "siteId", "sessionId", "customData", "lang", "wakewordId")}
    keep["siteId"] = keep["siteId"] if isinstance(keep["siteId"], str) else "default"
    lang = keep["lang"] if isinstance(keep["lang"], str) else None
    session = keep["sessionId"] if isinstance(keep["sessionId"], str) else None
    return Utterance(body["input"], lang, keep["siteId"], session, keep["id"]), keep


def _slot(name: str, value: Any, text: str) -> dict[str, Any]:
    kind = "Number" if isinstance(value, (int, float)) and not isinstance(value, bool) else "Unknown"
    raw = str(value)
    start = text.lower().find(raw.lower())
    span = {"start": max(start, 0), "end": max(start, 0) + len(raw),
            "rawStart": max(start, 0), "rawEnd": max(start, 0) + len(raw)}
    return {"entity": name, "slotName": name, "rawValue": raw, "confidence": 1.0,
            "value": {"kind": kind, "value": value}, "range": span}


def parsed(rec: Recognition, text: str, keep: dict[str, Any]) -> dict[str, Any]:
    return {"input": text, "intent": {"intentName": rec.intent, "confidenceScore": 1.0},
            "slots": [_slot(k, v, text) for k, v in rec.slots.items()],
            "id": keep.get("id"), "siteId": keep["siteId"], "sessionId": keep.get("sessionId"),
            "customData": keep.get("customData"), "asrTokens": [], "asrConfidence": None,
            "rawInput": text, "wakewordId": keep.get("wakewordId"), "lang": keep.get("lang")}


def not_recognized(text: str, keep: dict[str, Any]) -> dict[str, Any]:
    return {"input": text, "siteId": keep["siteId"], "id": keep.get("id"),
            "customData": keep.get("customData"), "sessionId": keep.get("sessionId")}


def end_session(session_id: str, speech: str, keep: dict[str, Any]) -> dict[str, Any]:
    return {"sessionId": session_id, "text": speech or None, "customData": keep.get("customData")}
