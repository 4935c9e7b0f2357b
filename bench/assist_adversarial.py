"""The adversarial assist corpus (tests/assist/corpus): its home as MQTT discovery, its cases, the judge.

Each case is a sentence (or a raw MQTT payload) and the only acceptable outcome: the exact
device commands (or none) and the acceptable response types. A run is judged by the commands
the bridge actually published, read back from the device command topics:

- correct: exactly the expected commands, an accepted response type, a spoken answer in the
  utterance's language that names no internal id;
- refused: nothing done where an action was the only right outcome;
- wrong_action: any other set of commands (a command too many, too few but not none, twice);
- wrong_text: the right commands (or none), but the answer is not one the case accepts.

Read by tests/assist/test_adversarial.py (0 wrong actions) and bench/assist.py (the counts);
`InProcess` runs a case as the extension does, without MQTT (the holdout corpus, the bench).
"""

from __future__ import annotations

import pathlib
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson
import yaml

from bridge.assist.config import AssistConfig
from bridge.assist.handlers import Handlers
from bridge.assist.home import Entity, Home
from bridge.assist.messages import UtteranceError, parse_utterance
from bridge.assist.pipeline import Pipeline
from bridge.assist.speech import Speech
from bridge.core.services import ServiceError
from bridge.homeassistant.commands import COLORS

CORPUS = pathlib.Path(__file__).resolve().parent.parent / "tests" / "assist" / "corpus"
LANGUAGES = ("en", "de", "fr", "es")
VERDICTS = ("correct", "refused", "wrong_action", "wrong_text")
_ENTITY_ID = re.compile(r"\b[a-z_]+\.[a-z0-9_]+\b")
_ENGLISH = ("Sorry", "That sounded", "Turned on", "Turned off", "Timed actions", "I can't")


@dataclass(frozen=True)
class Case:
    language: str  # the corpus file's
    kind: str
    do: tuple[str, ...]  # sorted expected commands: "light.kitchen_light on", "... brightness 40"
    answer: frozenset[str]
    text: str | None = None
    raw: str | None = None
    send_language: str | None = None
    site_id: str | None = None

    def payload(self, case_id: str) -> bytes:
        if self.raw is not None:
            return self.raw.encode("utf-8", "surrogatepass")
        body: dict[str, Any] = {"text": self.text, "language": self.send_language or self.language, "id": case_id}
        if self.site_id:
            body["site_id"] = self.site_id
        return orjson.dumps(body)

    @property
    def said(self) -> str:
        return self.text if self.text is not None else f"raw {self.raw!r}"


def home() -> dict[str, Any]:
    return yaml.safe_load((CORPUS / "home.yaml").read_text(encoding="utf-8"))


def cases(languages: tuple[str, ...] = LANGUAGES, prefix: str = "") -> list[Case]:
    """The corpus (prefix ""), or the holdout written after the rules (prefix "holdout_")."""
    out = []
    for language in languages:
        data = yaml.safe_load((CORPUS / f"{prefix}{language}.yaml").read_text(encoding="utf-8"))
        for c in data["cases"]:
            out.append(Case(language, c["kind"], tuple(sorted(c.get("do") or ())), frozenset(c["answer"]),
                            c.get("text"), c.get("raw"), c.get("language"), c.get("site_id")))
    return out


def command_topic(entity_id: str) -> str:
    return f"corpus/{entity_id}/set"


def discovery(entity: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The retained discovery config a Zigbee2MQTT-like bridge would announce for a corpus entity."""
    domain, object_id = entity["id"].split(".", 1)
    config: dict[str, Any] = {
        "name": None, "unique_id": f"corpus_{object_id}", "default_entity_id": entity["id"],
        "command_topic": command_topic(entity["id"]), "state_topic": f"corpus/{entity['id']}",
        "device": {"identifiers": [f"corpus_{object_id}"], "name": entity["name"],
                   "suggested_area": entity["area"]}}
    if domain == "light":
        config.update({"schema": "json", "brightness": True, "brightness_scale": 100,
                       "supported_color_modes": ["rgb"]})
    elif domain in ("switch", "fan"):
        config.update({"payload_on": "ON", "payload_off": "OFF"})
    return f"homeassistant/{domain}/{object_id}/{domain}/config", config


def command_of(topic: str, payload: bytes) -> str:
    """A published device command as the corpus writes it ("light.desk_lamp brightness 40")."""
    entity_id = topic.split("/")[1]
    if not entity_id.startswith("light."):
        return f"{entity_id} {payload.decode(errors='replace').lower()}"
    body = orjson.loads(payload)
    if body.get("state") == "OFF":
        return f"{entity_id} off"
    if "brightness" in body:
        return f"{entity_id} brightness {body['brightness']}"
    if "color" in body:
        rgb = (body["color"]["r"], body["color"]["g"], body["color"]["b"])
        name = next((n for n, c in COLORS.items() if c == rgb), str(rgb))
        return f"{entity_id} color {name}"
    return f"{entity_id} on"


def judge(case: Case, commands: list[str], answer: dict[str, Any] | None) -> str:
    if Counter(commands) != Counter(case.do):
        return "refused" if case.do and not commands else "wrong_action"
    if answer is None or answer.get("response_type") not in case.answer:
        return "wrong_text"
    speech = ((answer.get("speech") or {}).get("plain") or {}).get("speech") or ""
    if not speech.strip() or _ENTITY_ID.search(speech):
        return "wrong_text"
    if case.language != "en" and case.raw is None and speech.startswith(_ENGLISH):  # raw: the bridge's language
        return "wrong_text"
    return "correct"


def tally(results: list[tuple[Case, str]]) -> dict[str, Any]:
    """Counts per verdict, and of the cases whose only right outcome was an action, how many were refused."""
    counts = Counter(v for _, v in results)
    acting = [v for c, v in results if c.do]
    return {"n": len(results), **{v: counts.get(v, 0) for v in VERDICTS},
            "acting": len(acting), "acting_refused": acting.count("refused")}


class InProcess:
    """The extension's path from an utterance to device calls and an answer, without MQTT (as
    tests/assist/test_safety.py drives it), recording each call as the corpus writes commands."""

    def __init__(self) -> None:
        h = home()
        self.home = Home(tuple(Entity(e["id"], e["name"], e["id"].split(".")[0], e["area"]) for e in h["entities"]),
                         tuple(sorted({e["area"] for e in h["entities"]})))
        self.satellites = h["satellites"]
        self.pipeline = Pipeline(AssistConfig(enabled=True))
        self.speech = Speech(self.pipeline.responses)
        self.handlers = Handlers(self.speech, self._call, lambda _id: None, lambda *_: None, dict)
        self.commands: list[str] = []
        for language in ("en", "de", "fr", "es"):
            self.pipeline.language(language, self.home)

    def _call(self, domain: str, service: str, data: dict) -> None:
        entity = data["entity_id"]
        if entity.split(".")[0] not in ("light", "switch", "fan"):  # as bridge/homeassistant/devices.py
            raise ServiceError(f"{entity} cannot be switched")
        if str(data.get("color_name", "red")).replace(" ", "").lower() not in COLORS:
            raise ServiceError(f"unknown color_name {data['color_name']!r}")
        if "brightness_pct" in data:
            self.commands.append(f"{entity} brightness {data['brightness_pct']}")
        elif "color_name" in data:
            self.commands.append(f"{entity} color {data['color_name']}")
        else:
            self.commands.append(f"{entity} {'off' if service == 'turn_off' else 'on'}")

    def run(self, case: Case) -> tuple[list[str], dict[str, Any]]:
        """A case as the extension takes it off MQTT: parsed (fail closed), understood, acted on."""
        try:
            u = parse_utterance(case.payload("in-process"))
            body = self.answer(u.text, u.language or "en", u.site_id)
        except (UtteranceError, LookupError):
            return [], {"response_type": "error", "speech": {"plain": {"speech": "refused"}}}
        return list(self.commands), body

    def answer(self, text: str, language: str, site_id: str | None = None) -> dict[str, Any]:
        """What the extension answers (response_type and speech), the commands in self.commands."""
        self.commands = []
        area = self.satellites.get(site_id or "")
        u = self.pipeline.understand(text, language, self.home, area)
        if u.refusal is not None or not u.recognitions:
            refused = self.handlers.refused(language, u.refusal, u.detail)
            return {"response_type": "error", "speech": {"plain": {"speech": refused.speech}}}
        outcomes = self.handlers.handle_all(u.recognitions, self.home, area)
        kinds = {o.response_type for o in outcomes}
        kind = "error" if "error" in kinds else "query_answer" if "query_answer" in kinds else "action_done"
        return {"response_type": kind, "speech": {"plain": {"speech": " ".join(o.speech for o in outcomes if o.speech)}}}
