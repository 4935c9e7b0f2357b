"""Recognition in order, first confident match wins (ADR-133's recognizer chain), inside the safety model.

First the sentence is read (text.py: refused if any part cannot be placed) and its form judged
(form.py: only a command may act). Then:

1. Home Assistant's templates (and ours) through hassil, in the utterance's language;
2. the operator's sentences and regular expressions;
3. the robustness layer: fillers dropped, one-letter typos in names fixed, "A and B [and C]" split;
4. the semantic fallback (semantic.py: other verbs and word orders, every word accounted for);
then the extension asks the agent runner, if one is configured. A conversation's last answer
lets one follow-up borrow its target ("turn it off") or its words ("and the fan"). Stages 3-4
and follow-ups run only in languages with form rules; elsewhere only exact templates act.
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from bridge.assist import robust
from bridge.assist.config import AssistConfig, CustomSentence
from bridge.assist.form import classify, rules_for
from bridge.assist.handlers import MAX_PARTS
from bridge.assist.home import Home
from bridge.assist.semantic import LEXICONS, SemanticMatcher
from bridge.assist.templates import Recognition, TemplateRecognizer, load_language, resolve_language
from bridge.assist.text import NUMBER_WORDS, read, words

log = logging.getLogger(__name__)

PRONOUNS = {"en": {"it", "them", "that", "those", "this"}, "de": {"es", "sie", "ihn", "das"},
            "fr": {"le", "la", "les", "l'"}, "es": {"lo", "la", "los", "las"}}
# intents that only answer; every other intent (HA's actions, cancel all, an operator's own) acts
QUERIES = frozenset({"HassGetState", "HassNevermind", "RuViewRoomPresence", "RuViewOccupiedRooms"})
MAX_WORDS = 40  # no command is longer; hassil is not asked to read a page
# verdicts that are never recognized: whatever their words, they are not for now
HELD = frozenset({"negated", "exception", "conditional", "deferred", "relative", "hypothetical", "reported"})


@dataclass
class Understood:
    """What a sentence was taken to mean, or why nothing is done (`refusal`, with `detail` to quote)."""

    recognitions: list[Recognition] = field(default_factory=list)
    refusal: str | None = None  # a form verdict, or unplaced, too_long, too_many_parts
    detail: str | None = None
    form: str | None = None  # None: a command


class PatternRecognizer:
    """The operator's regular expressions, in registration order; named groups are slots."""

    def __init__(self, entries: list[CustomSentence]) -> None:
        self._rules = [(re.compile(p, re.IGNORECASE), e) for e in entries for p in e.patterns]

    def recognize(self, ws: list[str], language: str) -> Recognition | None:
        text = " ".join(ws)
        for rx, entry in self._rules:
            m = rx.search(text)
            if m is None:
                continue
            slots = {**entry.slots, **{k: v for k, v in m.groupdict().items() if v is not None}}
            # a match inside a longer sentence ("did you brew a coffee?") is held to the safety rules;
            # a whole sentence the operator wrote is a command because the operator wrote it so
            how = "custom" if m.span() == (0, len(text)) else "custom+partial"
            return Recognition(entry.intent, slots, how, language, speech=entry.speech, words=list(ws))
        return None


@dataclass
class Language:
    templates: TemplateRecognizer
    custom: TemplateRecognizer | None
    patterns: PatternRecognizer
    semantic: SemanticMatcher
    template_words: frozenset[str]
    responses: dict[str, Any]


def _custom_data(ha: dict[str, Any], entries: list[CustomSentence]) -> dict[str, Any] | None:
    intents: dict[str, Any] = {}
    for entry in entries:
        if entry.sentences:
            intents.setdefault(entry.intent, {"data": []})["data"].append(
                {"sentences": entry.sentences, "slots": dict(entry.slots),
                 "metadata": {"speech": entry.speech} if entry.speech else {}})
    if not intents:
        return None
    return {"language": ha["language"], "intents": intents, "lists": ha.get("lists", {}),
            "expansion_rules": ha.get("expansion_rules", {}), "skip_words": ha.get("skip_words", [])}


def load(language: str, config: AssistConfig) -> Language:
    data = load_language(language)
    entries = [e for e in config.custom if e.language in ("*", language, robust.base_language(language))]
    custom = _custom_data(data, entries)
    templates = TemplateRecognizer(language, data)
    return Language(templates, TemplateRecognizer(language, custom, "custom") if custom else None,
                    PatternRecognizer(entries), SemanticMatcher(language), templates.vocabulary,
                    data.get("responses", {}))


class Conversations:
    """conversation_id -> the last answer's words and target, for one follow-up; bounded, expiring."""

    def __init__(self, ttl: float, size: int = 1000) -> None:
        self.ttl, self.size = ttl, size
        self._items: OrderedDict[str, tuple[float, Recognition]] = OrderedDict()

    def get(self, cid: str | None) -> Recognition | None:
        if not cid or cid not in self._items:
            return None
        at, rec = self._items[cid]
        if time.monotonic() - at > self.ttl:
            del self._items[cid]
            return None
        return rec

    def put(self, cid: str | None, rec: Recognition) -> None:
        if not cid:
            return
        self._items[cid] = (time.monotonic(), rec)
        self._items.move_to_end(cid)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


class Pipeline:
    def __init__(self, config: AssistConfig) -> None:
        self.config = config
        self.languages: dict[str, Language] = {}
        self.conversations = Conversations(config.conversation_ttl)

    def language(self, code: str, home: Home) -> Language:
        """A language's recognizers, loaded and warmed on first use; a tag means its language ("en-US": en)."""
        code = resolve_language(code)
        lang = self.languages.get(code)
        if lang is None:
            started = time.perf_counter()
            lang = self.languages[code] = load(code, self.config)
            lang.templates.warm(home)
            log.info("assist: language %s loaded in %.0f ms", code, (time.perf_counter() - started) * 1e3)
        return lang

    def responses(self, code: str) -> dict[str, Any] | None:
        """HA's answers for a loaded language (speech.py renders them)."""
        try:
            lang = self.languages.get(resolve_language(code))
        except LookupError:
            return None
        return lang.responses if lang is not None else None

    def recognize(self, text: str, language: str, home: Home, context_area: str | None = None,
                  conversation_id: str | None = None) -> list[Recognition]:
        return self.understand(text, language, home, context_area, conversation_id).recognitions

    def understand(self, text: str, language: str, home: Home, context_area: str | None = None,
                   conversation_id: str | None = None) -> Understood:
        """The sentence's intents, or why it is refused; actions only for a command (form.py)."""
        lang = self.language(language, home)
        reading = read(text)
        ws = reading.words
        if len(ws) > MAX_WORDS:
            return Understood(refusal="too_long")
        named = {i for s in home.spans(ws) for i in range(s.start, s.end)}
        form = classify(ws, reading.question, language, named)
        if form in HELD:
            return Understood(refusal=form, form=form)
        if reading.unplaced is not None:
            return Understood(refusal="unplaced", detail=reading.unplaced, form=form)
        robust_too = rules_for(language) is not None
        try:
            found = self._stages(ws, lang, home, context_area, language, robust_too)
        except TooManyParts:
            return Understood(refusal="too_many_parts", form=form)
        if not found and robust_too and form is None:
            found = self._follow_up(ws, lang, home, context_area, language, self.conversations.get(conversation_id))
        if not found and form is None:
            unknown = self._unknown_target(ws, lang, home, context_area, language)
            if unknown is not None:
                return Understood(refusal=unknown[0], detail=unknown[1], form=form)
        trailing = next((r for r in found if _number_after_name(r, home)), None)
        if trailing is not None:
            return Understood(refusal="unplaced", detail=trailing.words[-1], form=form)
        if form is not None and any(r.intent not in QUERIES and r.recognizer != "custom" for r in found):
            # "did I turn on the light?" asks; it does not say. The operator's own sentences, matched
            # exactly, are commands because the operator wrote them so ("it's movie time").
            return Understood(refusal=form, form=form)
        return Understood(found, form=form)  # the extension remembers it for a follow-up once it was done

    def _unknown_target(self, ws: list[str], lang: Language, home: Home, context_area: str | None,
                        language: str) -> tuple[str, str] | None:
        """("no_area", the words) when the sentence is a command for an area the home does not have
        ("turn on the fan in the basement"), as Home Assistant answers it."""
        known = lang.template_words | home.vocabulary
        unknown = [i for i, w in enumerate(ws) if w not in known and not w.isdigit()]
        if not unknown or unknown[0] == 0 or unknown[-1] - unknown[0] + 1 != len(unknown):
            return None  # nothing unknown, no command word before it ("play jazz"), or unknown in two places
        start, end = unknown[0], unknown[-1] + 1
        # an area stands in for the unknown words: if the sentence is then a command for that area, it
        # named an area the home does not have (one hassil run at most; an unknown device name is
        # answered as not understood, which costs nothing more)
        for sample in home.areas[:1]:
            rec = self._exact(ws[:start] + words(sample) + ws[end:], lang, home, context_area, language)
            if rec is not None and rec.slots.get("area") == sample:
                return "no_area", " ".join(ws[start:end])
        return None

    def _exact(self, ws: list[str], lang: Language, home: Home, context_area: str | None,
               language: str) -> Recognition | None:
        if not ws:
            return None
        rec = lang.templates.recognize(ws, home, context_area)
        if rec is None and lang.custom is not None:
            rec = lang.custom.recognize(ws, home, context_area)
        if rec is None:
            rec = lang.patterns.recognize(ws, language)
        return rec

    def _stages(self, ws: list[str], lang: Language, home: Home, context_area: str | None,
                language: str, robust_too: bool) -> list[Recognition]:
        cleaned = fixed = None
        if robust_too:
            cleaned = robust.strip_fillers(ws, language)
            fixed = robust.fix_typos(cleaned, home.vocabulary, lang.template_words)
            best = fixed or cleaned
            in_a_name = any(s.end - s.start > 1 and any(w in robust.JOINERS.get(robust.base_language(language), ())
                                                        for w in best[s.start:s.end]) for s in home.spans(best))
            parts = None if in_a_name else robust.split_compound(best, language)  # "Tea and Toast" is one name
            if parts:  # tried first: HA's templates join two commands nowhere, and a sentence costs one
                if len(parts) > MAX_PARTS:  # hassil run fewer; "each and every light" falls through
                    raise TooManyParts
                compound = self._compound(parts, lang, home, context_area, language)
                if compound:
                    return compound
        rec = self._exact(ws, lang, home, context_area, language)
        if rec is not None or cleaned is None:
            return [rec] if rec is not None else []
        if cleaned != ws:
            rec = self._exact(cleaned, lang, home, context_area, language)
            if rec is not None:
                return [_tagged(rec, "filler")]
        if fixed is not None:
            rec = self._exact(fixed, lang, home, context_area, language)
            if rec is not None:
                return [_tagged(rec, "typo")]
        rec = lang.semantic.suggest(fixed or cleaned, home)
        return [rec] if rec is not None else []

    def _compound(self, parts: list[list[str]], lang: Language, home: Home, context_area: str | None,
                  language: str) -> list[Recognition]:
        """Every part understood, or nothing: half a compound command is not done.

        A later part is first read in the words of the one before ("... off the X and the Y" turns
        Y off). Alone it is read only when it says its own verb: a bare name is HA's "turn it on",
        which would make "open the door and the light" or "close the door and the light" switch the
        light on. An area said after the first target stays with the first target."""
        out: list[Recognition] = []
        for part in parts:
            rec = None
            if out and out[-1].target is not None:
                rec = self._exact(self._borrowed(out[-1], part, language, home), lang, home, context_area, language)
            if rec is None:
                if out and not _has_verb(part, language):
                    return []
                rec = self._exact(part, lang, home, context_area, language)
            if rec is None:
                return []
            out.append(_tagged(rec, "compound"))
        return out

    @staticmethod
    def _borrowed(last: Recognition, part: list[str], language: str, home: Home) -> list[str]:
        assert last.target is not None
        first = last.words
        if any(s.kind in ("area", "floor") for s in home.spans(first[last.target[1]:])):
            first = first[:last.target[1]]  # "the lamp in the bedroom and the lamp": the second has no area
        return robust.borrow(first, last.target, part, language)

    def _follow_up(self, ws: list[str], lang: Language, home: Home, context_area: str | None,
                   language: str, last: Recognition | None) -> list[Recognition]:
        if last is None or last.target is None or not ws:
            return []
        ws = robust.strip_fillers(ws, language)
        joiners = robust.JOINERS.get(robust.base_language(language), set())
        if ws and ws[0] in joiners:  # "and the fan"
            rec = self._exact(robust.borrow(last.words, last.target, ws[1:], language),
                              lang, home, context_area, language)
            return [_tagged(rec, "follow-up")] if rec is not None else []
        pronouns = PRONOUNS.get(robust.base_language(language), set())
        hit = next((i for i, w in enumerate(ws) if w in pronouns), None)
        if hit is not None and last.words and last.recognizer.endswith("+compound"):
            return []  # "turn them off" after "... the heater and the fan": not one target to borrow
        if hit is not None and _has_verb(ws, language):  # "turn it off"; "it" alone is a bare name: "turn it on"
            named = last.words[last.target[0]:last.target[1]]
            rec = self._exact(ws[:hit] + named + ws[hit + 1:], lang, home, context_area, language)
            if rec is not None and "area" in last.slots and "area" not in rec.slots:
                rec.slots["area"] = last.slots["area"]  # "the lamp in the bedroom", not the satellite's lamp
            return [_tagged(rec, "follow-up")] if rec is not None else []
        return []


def _number_after_name(rec: Recognition, home: Home) -> bool:
    """A level said as a bare number right after a device's name, at the end ("desk lamp 2",
    "Stehlampe zwei"): HA's templates read it as a brightness, but it is as likely the rest of a
    name ("Lamp 2") said to a home that has no such device. A level says "%" or "to"/"auf"/"à"."""
    ws = rec.words
    names = [s for s in home.spans(ws) if s.kind == "name"]
    if "brightness" not in rec.slots or not names or names[-1].end >= len(ws):
        return False
    tail = ws[names[-1].end:]  # "2", "two", "one hundred": only a number, nothing that says it is a level
    return all(w.isdigit() or w in NUMBER_WORDS for w in tail)  # HA reads these as a level


class TooManyParts(Exception):
    """A compound of more than MAX_PARTS commands: refused whole."""


def _has_verb(ws: list[str], language: str) -> bool:
    """Does a compound's part say what to do itself ("turn off the fan", "set the lamp to 20%")?"""
    lexicon = LEXICONS.get(robust.base_language(language))
    return lexicon is not None and any(w in lexicon.on or w in lexicon.off or w in lexicon.carriers for w in ws)


def _tagged(rec: Recognition, how: str) -> Recognition:
    rec.recognizer = f"{rec.recognizer}+{how}"
    return rec
