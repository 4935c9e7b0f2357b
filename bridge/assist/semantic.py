"""ADR-133's semantic fallback, guarded: similar sentences may suggest an intent, never decide one.

Sentences are feature-hashed (word unigrams and character trigrams, FNV-1a, 2^10 buckets,
L2-normalised) with every name and area the home knows replaced by a placeholder, and
compared by cosine with exemplars sampled from the templates of the intents it may suggest.
Measured on HA's fixtures (docs/assist.md), such a matcher alone picks the wrong intent one
time in twenty, on/off flips included — so a suggestion is kept only when:

- the text negates nothing ("don't", "not", "never" ...);
- for on/off intents, the text itself says the polarity ("on", "open", "off", "close" ...) and
  not its opposite: similarity can never choose between opposite actions;
- its target resolves exactly: one whole name of the home, or an area with a domain word.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from itertools import islice

import numpy as np
from hassil import Intents
from hassil.sample import sample_expression

from bridge.assist.home import Home, Span, words
from bridge.assist.robust import base_language
from bridge.assist.templates import Recognition

DIM = 1 << 10
SUGGESTS = ("HassTurnOn", "HassTurnOff", "HassGetState")
PER_TEMPLATE = 4
POLARITY = {
    "en": {"HassTurnOn": {"on", "open", "activate", "start", "enable", "lock", "up", "illuminate"},
           "HassTurnOff": {"off", "close", "deactivate", "stop", "disable", "unlock", "shut", "out"}},
    "de": {"HassTurnOn": {"an", "ein", "einschalten", "anschalten", "öffne", "öffnen", "auf", "aktiviere"},
           "HassTurnOff": {"aus", "ausschalten", "abschalten", "schließe", "schließen", "zu", "deaktiviere"}},
}
# "don't turn on the fan" is as similar to "turn on the fan" as a sentence gets
NEGATIONS = {"en": {"not", "don't", "dont", "never", "no", "without", "neither", "nor"},
             "de": {"nicht", "kein", "keine", "keinen", "nie", "niemals", "ohne"}}
DOMAIN_WORDS = {"en": {"light": "light", "lights": "light", "lamp": "light", "lamps": "light",
                       "fan": "fan", "fans": "fan", "switch": "switch", "switches": "switch"},
                "de": {"licht": "light", "lichter": "light", "lampe": "light", "lampen": "light",
                       "ventilator": "fan", "schalter": "switch"}}


def _fnv(token: str) -> int:
    h = 0x811C9DC5
    for b in token.encode("utf-8"):
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def _features(tokens: list[str]) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    for t in tokens:
        v[_fnv("w:" + t) % DIM] += 1.0
    text = " " + " ".join(tokens) + " "
    for i in range(len(text) - 2):
        v[_fnv("c:" + text[i:i + 3]) % DIM] += 0.5
    n = float(np.linalg.norm(v))
    return v / n if n else v


def _placeheld(ws: list[str], spans: list[Span]) -> list[str]:
    out, i = [], 0
    for s in spans:
        out += ws[i:s.start] + [f"slot_{s.kind}"]
        i = s.end
    return out + ws[i:]


@dataclass
class Suggestion:
    intent: str
    score: float


class SemanticMatcher:
    def __init__(self, intents: Intents, language: str, threshold: float) -> None:
        self.language, self.threshold = base_language(language), threshold
        rng = random.Random(0)
        seen: set[tuple[str, str]] = set()
        for name in SUGGESTS:
            intent = intents.intents.get(name)
            for data in intent.data if intent else ():
                for sentence in data.sentences:
                    try:  # lists left as {name} / {area}: cheap, and the placeholders the query gets too
                        samples = list(islice(sample_expression(sentence.expression, {}, intents.expansion_rules,
                                                                language=language, expand_lists=False,
                                                                expand_ranges=False), 64))
                    except Exception:  # a template hassil cannot sample: no exemplars from it
                        continue
                    for text in rng.sample(samples, min(PER_TEMPLATE, len(samples))):
                        seen.add((name, " ".join(words(re.sub(r"\{(name|area|floor)\}", r" slot_\1 ", text)))))
        self.labels = [n for n, _ in sorted(seen)]
        self.matrix = (np.stack([_features(t.split()) for _, t in sorted(seen)])
                       if seen else np.zeros((0, DIM), dtype=np.float32))

    def suggest(self, ws: list[str], home: Home) -> Recognition | None:
        if not len(self.labels):
            return None
        spans = home.spans(ws)
        scores = self.matrix @ _features(_placeheld(ws, spans))
        best = int(np.argmax(scores))
        if float(scores[best]) < self.threshold:
            return None
        return self._guarded(self.labels[best], ws, spans)

    def _guarded(self, intent: str, ws: list[str], spans: list[Span]) -> Recognition | None:
        said = set(ws)
        if said & NEGATIONS.get(self.language, set()):
            return None
        polarity = POLARITY.get(self.language, {})
        if intent in ("HassTurnOn", "HassTurnOff"):
            other = "HassTurnOff" if intent == "HassTurnOn" else "HassTurnOn"
            if not said & polarity.get(intent, set()) or said & polarity.get(other, set()):
                return None
        names = [s for s in spans if s.kind == "name"]
        areas = [s for s in spans if s.kind == "area"]
        if len(names) == 1 and not areas:
            return Recognition(intent, {"name": names[0].value}, "semantic", self.language,
                               target=(names[0].start, names[0].end), words=list(ws))
        domains = {DOMAIN_WORDS.get(self.language, {}).get(w) for w in ws} - {None}
        if intent != "HassGetState" and not names and len(areas) == 1 and len(domains) == 1:
            return Recognition(intent, {"area": areas[0].value, "domain": domains.pop()}, "semantic",
                               self.language, target=(areas[0].start, areas[0].end), words=list(ws))
        return None
