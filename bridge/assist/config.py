"""The `assist:` section: languages, Hermes, the agent runner, the operator's own sentences."""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeAlias

from pydantic import Field

from bridge.config import ExtensionSection, Problem, Section
from bridge.config.types import Bool, Check, Number, Text, expected

LANGUAGE = r"[a-zA-Z]{2,3}([-_]([A-Za-z]{2,4}|\d{3}))?"  # en, en-US, sr-Latn, es-419
INTENT_NAME = r"[A-Za-z][A-Za-z0-9_]{0,63}"


def _languages(v: Any) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) and re.fullmatch(LANGUAGE, x) for x in v):
        raise expected("a list of language codes such as [en, de]")
    return v


def _strings(v: Any) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
        raise expected("a list of non-empty strings")
    return v


def _command(v: Any) -> list[str] | None:
    if v is None:
        return None
    if isinstance(v, str) and v.strip():
        return v.split()
    if isinstance(v, list) and v and all(isinstance(x, str) and x for x in v):
        return v
    raise expected("a command: a program and its arguments, as a list or one string")


def _satellites(v: Any) -> dict[str, str]:
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(a, str) and a.strip()
                                          for k, a in v.items()):
        raise expected("a mapping of site id -> the area it stands in")
    return v


def _slots(v: Any) -> dict[str, Any]:
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, (str, int, float))
                                          for k, x in v.items()):
        raise expected("a mapping of slot name -> a fixed value")
    return v


Languages: TypeAlias = Annotated[list[str], Check(_languages)]
Strings: TypeAlias = Annotated[list[str], Check(_strings)]
Command: TypeAlias = Annotated[list[str] | None, Check(_command, optional=True)]
Satellites: TypeAlias = Annotated[dict[str, str], Check(_satellites)]
FixedSlots: TypeAlias = Annotated[dict[str, Any], Check(_slots)]


class AgentConfig(Section):
    """ADR-133's agent runner, asked when nothing else understood: over MQTT or a subprocess."""

    topic: Annotated[str | None, Text(r"[^#+\x00]{1,200}", "a topic without + or #", optional=True)] = None
    command: Command = None  # a long-lived program speaking JSON lines on stdin/stdout
    timeout: Annotated[float, Number(0.05, 60)] = 3.0  # seconds to wait for one answer


class CustomSentence(Section):
    """One of the operator's intents: hassil templates and/or regular expressions."""

    intent: Annotated[str, Text(INTENT_NAME, "an intent name such as HassTurnOn or MovieTime")]
    sentences: Strings = Field(default_factory=list)  # hassil templates: {name}, {area}, [optional], (a|b)
    patterns: Strings = Field(default_factory=list)  # regular expressions; named groups are slots
    language: Annotated[str, Text(rf"\*|{LANGUAGE}", "a language code or *")] = "*"
    slots: FixedSlots = Field(default_factory=dict)  # fixed slot values, e.g. {domain: light}
    # what to answer instead of the handler's
    speech: Annotated[str | None, Text(what="text", optional=True, max_len=500)] = None


class AssistConfig(ExtensionSection):
    enabled: Bool = False
    language: Annotated[str, Text(LANGUAGE, "a language code such as en or de")] = "en"
    languages: Languages = Field(default_factory=list)  # loaded at start besides `language`
    hermes: Bool = False  # Rhasspy Hermes: hermes/nlu/query -> hermes/intent/<name>
    satellites: Satellites = Field(default_factory=dict)  # site_id -> area, for "turn on the lights"
    # accepted so old configs load; the fallback no longer scores
    semantic_threshold: Annotated[float, Number(0.5, 1.0)] = 0.75
    conversation_ttl: Annotated[float, Number(1, 3600)] = 300.0  # seconds a conversation id keeps its context
    agent: AgentConfig = Field(default_factory=AgentConfig)
    custom: list[CustomSentence] = Field(default_factory=list)

    def check(self, root: Any) -> list[Problem]:
        problems: list[Problem] = []
        if self.agent.topic and self.agent.command:
            problems.append(("agent", "set agent.topic or agent.command, not both"))
        for i, entry in enumerate(self.custom):
            if not entry.sentences and not entry.patterns:
                problems.append((f"custom.{i}", "an entry needs sentences or patterns"))
            for j, pattern in enumerate(entry.patterns):
                try:
                    re.compile(pattern)
                except re.error as exc:
                    problems.append((f"custom.{i}.patterns.{j}", f"not a regular expression: {exc}"))
        return problems

    def all_languages(self) -> list[str]:
        return list(dict.fromkeys([self.language, *self.languages]))
