"""The assist accuracy corpus: Home Assistant's own English test sentences, their fixture homes,
and deterministic perturbations of them (fillers, one-letter typos in names, two-target compounds).

Read by bench/assist.py (the figures) and tests/assist (the floor they may not fall below). The
sentences are upstream's (tests/assist/fixtures/README.md: origin and licence).
"""

from __future__ import annotations

import pathlib
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import yaml

from bridge.assist.home import Entity, Home, key
from bridge.assist.templates import Recognition

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "tests" / "assist" / "fixtures"
INTENTS = ("HassTurnOn", "HassTurnOff", "HassLightSet", "HassGetState")
ACTIONS = ("HassTurnOn", "HassTurnOff", "HassToggle", "HassLightSet")
NO_CONTEXT = "__context_area__"  # what upstream's harness passes when a file names no context area


@dataclass
class Case:
    intent: str
    text: str
    expected: list[dict[str, Any]]  # one slots dict per expected action (two for a compound)
    home: Home
    context_area: str
    source: str
    kind: str = "upstream"
    intents: list[str] = field(default_factory=list)


def _home(t: dict[str, Any]) -> Home:
    area_floor = {a["name"]: a.get("floor") for a in t.get("areas") or []}
    entities = tuple(Entity(f"{e['domain']}.{key(e['name']).replace(' ', '_')}", e["name"], e["domain"],
                            e.get("area"), area_floor.get(e.get("area")),
                            (e.get("attributes") or {}).get("device_class"))
                     for e in t.get("entities") or [])
    areas = tuple(a["name"] for a in t.get("areas") or [])
    floors = tuple(dict.fromkeys([f["name"] for f in t.get("floors") or []]
                                 + [f for f in area_floor.values() if f]))
    return Home(entities, areas, floors)


def upstream(language: str = "en") -> list[Case]:
    cases = []
    for path in sorted((FIXTURES / language).glob("*/*.yaml")):
        intent, t = path.parent.name, yaml.safe_load(path.read_text(encoding="utf-8"))
        home = _home(t)
        ctx = next((a["name"] for a in t.get("areas") or [] if a.get("context_area")), NO_CONTEXT)
        for group in t["tests"]:
            for sentence in group["sentences"]:
                cases.append(Case(intent, sentence, [dict(group.get("slots") or {})], home, ctx,
                                  f"{intent}/{path.stem}", intents=[intent]))
    return cases


def _names_in(case: Case) -> list[str]:
    text = key(case.text)
    values = [e.name for e in case.home.entities] + list(case.home.areas) + list(case.home.floors)
    return [v for v in values if re.search(rf"\b{re.escape(key(v))}\b", text)]


def _typo(word: str) -> str:
    i = len(word) // 2
    c = word[i]
    return word[:i] + ("a" if c == "e" else "e") + word[i + 1:]  # a vowel swapped, a letter kept in place


def perturbed(cases: list[Case]) -> list[Case]:
    out = []
    for c in cases:
        out.append(Case(c.intent, "hey " + c.text, c.expected, c.home, c.context_area, c.source, "filler", c.intents))
        ws = c.text.split()
        out.append(Case(c.intent, " ".join(ws[:1] + ["um"] + ws[1:]), c.expected, c.home, c.context_area,
                        c.source, "filler", c.intents))
        long_words = sorted({w for n in _names_in(c) for w in key(n).split() if len(w) >= 5}, key=len)
        if long_words:
            word = long_words[-1]
            text = re.sub(rf"\b{re.escape(word)}\b", _typo(word), c.text, count=1, flags=re.IGNORECASE)
            out.append(Case(c.intent, text, c.expected, c.home, c.context_area, c.source, "typo", c.intents))
        if c.source.endswith("/name_only") and c.intent in ("HassTurnOn", "HassTurnOff"):
            named = c.expected[0].get("name")
            domain = next((e.domain for e in c.home.entities if e.name == named), None)
            # a device of the same kind: "open the sliding door and the curtain", never "... and the light"
            # (HA's "open" is for covers: the light would not be opened, and must not be switched on)
            other = next((e for e in c.home.entities if e.name != named and e.domain == domain
                          and key(e.name) not in key(c.text)), None)
            if other is not None:
                out.append(Case(c.intent, f"{c.text} and the {other.name.lower()}",
                                c.expected + [{"name": other.name}], c.home, c.context_area, c.source, "compound",
                                [c.intent, c.intent]))
    return out


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, (int, float)) and not isinstance(want, bool):
        return isinstance(got, (int, float)) and float(got) == float(want)
    return isinstance(got, str) and key(got) == key(str(want))


def verdict(case: Case, recs: list[Recognition]) -> str:
    """correct | refused | wrong (recognized something else, but acted on nothing) | wrong_action."""
    if not recs:
        return "refused"
    ok = len(recs) == len(case.expected) and all(
        r.intent == i and all(_same(r.slots.get(k), v) for k, v in want.items())
        for r, i, want in zip(recs, case.intents, case.expected))
    if ok:
        return "correct"
    acted = [r for r in recs if r.intent in ACTIONS]
    if not acted:
        return "wrong"
    wanted_names = {key(str(w.get("name"))) for w in case.expected if w.get("name")}
    for r in acted:
        polarity_wrong = r.intent != case.intent and case.intent in ACTIONS
        target_wrong = (r.slots.get("name") is not None and key(str(r.slots["name"])) not in wanted_names)
        if polarity_wrong or target_wrong or case.intent not in ACTIONS:
            return "wrong_action"
    return "wrong"


def score(cases: list[Case], recognize: Callable[[Case], list[Recognition]]) -> dict[str, Any]:
    tally: dict[str, dict[str, int]] = {}
    failures = []
    for c in cases:
        v = verdict(c, recognize(c))
        row = tally.setdefault(c.kind, {"n": 0, "correct": 0, "refused": 0, "wrong": 0, "wrong_action": 0})
        row["n"] += 1
        row[v] += 1
        if v != "correct":
            failures.append((c.kind, v, c.source, c.text))
    return {"by_kind": tally, "failures": failures}
