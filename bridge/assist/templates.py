"""Sentence templates through hassil: Home Assistant's own, ours, and the operator's.

hassil is exact and slow (2–9 ms a sentence, ~250 ms for the first as it parses its
templates lazily), and a home says the same few shapes of sentence with different names all
day. So each answer hassil gives is also remembered by the sentence's *shape*: its words with
every name, area, floor and number the home knows replaced by a placeholder (and a name's
domains kept, as templates depend on them). The next sentence of that shape is answered from
the shape with its own names filled in, without hassil. A shape is remembered only when every
slot of hassil's answer came from such a placeholder or from fixed text (no wildcards, no
unused names), so the shortcut can only give hassil's own answer; the bench and
tests/assist check it does, sentence by sentence. The memory belongs to one `Home`: a new home
starts empty.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml
from hassil import Intents, SlotList, TextSlotList, recognize_best
from home_assistant_intents import get_intents, get_languages

from bridge.assist.config import LANGUAGE
from bridge.assist.home import Entity, Home, Span
from bridge.assist.text import joined, words

log = logging.getLogger(__name__)

# the intents this bridge can act on or answer; HA's others are not loaded (fewer templates, faster)
HA_INTENTS = ("HassTurnOn", "HassTurnOff", "HassToggle", "HassLightSet", "HassGetState", "HassNevermind")
NUMBER_RANGES = {"brightness": (0, 100), "position": (0, 100), "percentage": (0, 100)}
SHAPES_PER_HOME = 4096
# sentences of each intent's main shapes, so hassil builds its per-template matchers at load, not
# on the first few sentences people say
WARM_UP = {
    "en": ["turn on the warm up", "set the warm up to 50%", "set the warm up to red", "is the warm up on",
           "turn off the lights in the warm area", "what is the warm up"],
    "de": ["schalte warm up ein", "stelle warm up auf 50 Prozent", "ist warm up an", "schalte das Licht im warm area aus"],
    "fr": ["allume warm up", "mets warm up à 50 %", "est-ce que warm up est allumé", "éteins les lumières du warm area"],
    "es": ["enciende warm up", "pon warm up al 50 %", "está encendido warm up", "apaga las luces del warm area"],
}
REFUSED = ("refused",)  # a shape hassil matched nothing for, in this home
_DIGITS = re.compile(r"[0-9]+")


@dataclass
class Recognition:
    intent: str
    slots: dict[str, Any]
    recognizer: str
    language: str
    response: str | None = None  # the response key in HA's responses
    target: tuple[int, int] | None = None  # words of the name/area acted on (for "... and the fan")
    speech: str | None = None  # the operator's fixed answer
    words: list[str] = field(default_factory=list)
    domains: tuple[str, ...] = ()  # the only domains the sentence's verb applies to ("lock": locks), if narrowed


def languages() -> list[str]:
    return list(get_languages())


def resolve_language(tag: str) -> str:
    """The language home-assistant-intents has for a tag: itself ("de-CH", "pt-BR") or its base ("en-US" -> en)."""
    if not isinstance(tag, str) or not re.fullmatch(LANGUAGE, tag):
        raise LookupError(f"{str(tag)[:40]!r} is not a language code such as en, en-US or es-419")
    shipped = {code.lower().replace("_", "-"): code for code in get_languages()}
    wanted = tag.lower().replace("_", "-")
    for candidate in (wanted, wanted.split("-")[0]):
        if candidate in shipped:
            return shipped[candidate]
    raise LookupError(f"home-assistant-intents has no language {tag!r} "
                      f"(it has {', '.join(sorted(get_languages()))})")


def own_sentences(language: str) -> dict[str, Any]:
    """Our intents beyond HA's (room presence, cancel all) in hassil's format, if this language has them."""
    path = resources.files("bridge.assist") / "sentences" / f"{language.split('-')[0].split('_')[0]}.yaml"
    if not path.is_file():
        return {}
    return yaml.safe_load(path.read_text(encoding="utf-8")).get("intents", {})


def load_language(language: str) -> dict[str, Any]:
    """HA's data for a language, cut to the intents we handle, with ours merged in."""
    data = get_intents(resolve_language(language))  # never a path: resolve_language checked the tag
    if data is None:
        raise LookupError(f"home-assistant-intents has no language {language!r}")
    data = dict(data)
    data["intents"] = {k: v for k, v in data["intents"].items() if k in HA_INTENTS}
    data["intents"].update(own_sentences(language))
    return data


class TemplateRecognizer:
    """One language's templates, and the shapes they answered in the current home."""

    def __init__(self, language: str, data: dict[str, Any], name: str = "hassil") -> None:
        self.language, self.name = language, name
        self.data = data
        self.intents = Intents.from_dict(data)
        self.vocabulary = _vocabulary(data)
        self._shapes: dict[tuple, tuple | None] = {}
        self._home_id: int | None = None
        self.hits = self.misses = 0

    def warm(self, home: Home) -> None:
        """Make hassil parse every template now (it does on first use), not on a user's first sentence."""
        # a stand-in home: the templates with {name} and {area} build their matchers too
        stand_in = Home((Entity("light.warm_up", "warm up", "light", "warm area"),), ("warm area",))
        for sentence in WARM_UP.get(self.language.split("-")[0], WARM_UP["en"]):
            self.hassil(sentence.split(), stand_in, None)

    def recognize(self, ws: list[str], home: Home, context_area: str | None) -> Recognition | None:
        if self._home_id != id(home):
            self._shapes.clear()
            self._home_id = id(home)
        spans = home.spans(ws)
        shape = _shape(ws, spans, context_area is not None)
        template = self._shapes.get(shape)
        if template is REFUSED:
            self.hits += 1
            return None
        if template is not None:
            found = _fill(template, ws, spans, context_area, self.name, self.language)
            if found is not None:
                self.hits += 1
                return found
        self.misses += 1
        answer = self.hassil(ws, home, context_area, spans)
        if shape not in self._shapes and (answer is not None or not _DIGITS.search(" ".join(ws))):
            if len(self._shapes) >= SHAPES_PER_HOME:
                self._shapes.clear()
            self._shapes[shape] = self._learn(answer, ws, spans, context_area) if answer is not None else REFUSED
        return answer[0] if answer is not None else None

    def hassil(self, ws: list[str], home: Home, context_area: str | None,
               spans: list[Span] | None = None) -> tuple[Recognition, Any] | None:
        """hassil's own answer, with the home's names as HA's default agent gives them (Trie-filtered)."""
        spans = home.spans(ws) if spans is None else spans
        named = {s.value for s in spans if s.kind == "name"}
        names = TextSlotList.from_tuples(
            [(e.name, e.name, {"domain": e.domain}) for n in named for e in home.named(n)],
            allow_template=False, name="name")
        lists: dict[str, SlotList] = {
            "name": names,
            "area": TextSlotList.from_tuples([(a, a) for a in home.areas], allow_template=False, name="area"),
            "floor": TextSlotList.from_tuples([(f, f) for f in home.floors], allow_template=False, name="floor")}
        result = recognize_best(joined(ws), self.intents, slot_lists=lists,
                                intent_context={"area": context_area} if context_area else None,
                                language=self.language, best_slot_name="name")
        if result is None:
            return None
        slots = {k: _plain(e.value) for k, e in result.entities.items()}
        target = next(((s.start, s.end) for s in spans
                       if s.kind in ("name", "area") and slots.get(s.kind) == s.value), None)
        speech = (result.intent_metadata or {}).get("speech")  # the operator's fixed answer (custom)
        return Recognition(result.intent.name, slots, self.name, self.language, result.response,
                           target, speech if isinstance(speech, str) else None, words=list(ws)), result

    @staticmethod
    def _learn(found: tuple[Recognition, Any], ws: list[str], spans: list[Span],
               context_area: str | None) -> tuple | None:
        """How to answer the next sentence of this shape, or None when only hassil may answer it."""
        rec, result = found
        used: set[int] = set()
        sources: list[tuple[str, str, Any]] = []  # (slot, how, where): see _fill
        for slot, entity in result.entities.items():
            if entity.is_wildcard:
                return None
            text = entity.text.strip().lower()
            if slot in ("name", "area", "floor") and text:
                idx = next((i for i, s in enumerate(spans)
                            if i not in used and s.kind == slot and s.value == entity.value), None)
                if idx is None:
                    return None
                used.add(idx)
                sources.append((slot, "span", idx))
            elif slot in NUMBER_RANGES and isinstance(entity.value, (int, float)) and text.isdigit():
                numbers = _numbers(ws, spans)  # the k-th number of the sentence, wherever names put it
                k = next((k for k, i in enumerate(numbers) if _digits(ws[i]) == text), None)
                if k is None or _DIGITS.sub("", ws[numbers[k]]) not in ("", "%"):
                    return None
                sources.append((slot, "number", k))
            elif slot == "area" and not text and context_area is not None and entity.value == context_area:
                sources.append((slot, "context", None))
            elif not text or _DIGITS.search(text) is None:
                sources.append((slot, "fixed", rec.slots[slot]))
            else:
                return None
        if len(used) != len(spans):
            return None
        target_kind = None
        if rec.target is not None:
            target_kind = next(i for i, s in enumerate(spans) if (s.start, s.end) == rec.target)
        return (rec.intent, tuple(sources), rec.response, target_kind, rec.speech)


def _numbers(ws: list[str], spans: list[Span]) -> list[int]:
    """Indexes of the words with digits that are not part of a name."""
    inside = {i for s in spans for i in range(s.start, s.end)}
    return [i for i, w in enumerate(ws) if i not in inside and _DIGITS.search(w)]


def _digits(word: str) -> str:
    """The first run of digits in a word that has one (one of `_numbers`)."""
    found = _DIGITS.search(word)
    assert found is not None  # _numbers picks only words with digits
    return found.group()


def _shape(ws: list[str], spans: list[Span], has_context: bool) -> tuple:
    out: list[str] = []
    i = 0
    for span in spans:
        out += [_DIGITS.sub("#", w) for w in ws[i:span.start]]
        out.append(f"\x00{span.kind}:{','.join(span.domains)}")
        i = span.end
    out += [_DIGITS.sub("#", w) for w in ws[i:]]
    return (tuple(out), has_context)


def _fill(template: tuple, ws: list[str], spans: list[Span], context_area: str | None,
          recognizer: str, language: str) -> Recognition | None:
    intent, sources, response, target_idx, speech = template
    slots: dict[str, Any] = {}
    for slot, how, where in sources:
        if how == "span":
            slots[slot] = spans[where].value
        elif how == "number":
            numbers = _numbers(ws, spans)
            if where >= len(numbers):
                return None
            value = int(_digits(ws[numbers[where]]))
            lo, hi = NUMBER_RANGES[slot]
            if not lo <= value <= hi:
                return None  # hassil decides what an out-of-range number means
            slots[slot] = value
        elif how == "context":
            slots[slot] = context_area
        else:
            slots[slot] = where
    target = (spans[target_idx].start, spans[target_idx].end) if target_idx is not None else None
    return Recognition(intent, slots, recognizer, language, response, target, speech, words=list(ws))


def _plain(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _vocabulary(data: dict[str, Any]) -> frozenset[str]:
    """The words of the templates, their rules, lists and skip words (for the typo stage: never a name's)."""
    text = json.dumps([data.get("intents"), data.get("lists"), data.get("expansion_rules"),
                       data.get("skip_words")], ensure_ascii=False)
    return frozenset(words(re.sub(r"[{}<>()\[\]|]", " ", text)))

