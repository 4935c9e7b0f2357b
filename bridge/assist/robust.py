"""What people say that strict templates refuse: fillers, one-letter typos in names, "X and Y".

Each rewrite is conservative and says what it did, so a rewritten sentence still goes through
the exact recognizers and is resolved against the home like any other:

- fillers: "hey", "um", "could you", "please" ... wherever they are (per language);
- typos: a word that is neither a template word nor a name word, one edit away from exactly
  one word of the home's names and areas, with the same first letter, becomes that word —
  never a command word, so "of" can never become "off", nor "eight" the "light" of a name;
- compounds: "turn on the kitchen light and the fan" is two sentences, the second borrowing the
  first's words around its target ("turn on the fan").
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable

FILLERS = {
    "en": {"words": {"hey", "hi", "hello", "ok", "okay", "um", "umm", "uh", "uhh", "er", "erm", "hmm", "uhm",
                     "please", "kindly", "just", "now", "thanks", "so", "well", "yo"},
           "phrases": [("could", "you"), ("can", "you"), ("would", "you"), ("will", "you"), ("for", "me"),
                       ("thank", "you"), ("i", "want", "you", "to"), ("i'd", "like", "you", "to"),
                       ("go", "ahead", "and"), ("right", "now")]},
    "de": {"words": {"hey", "hallo", "ok", "okay", "äh", "ähm", "hm", "hmm", "bitte", "mal", "doch", "danke", "also"},
           "phrases": [("kannst", "du"), ("könntest", "du"), ("würdest", "du")]},
    "fr": {"words": {"hé", "hey", "salut", "euh", "bon", "merci", "stp", "svp", "maintenant"},
           "phrases": [("tout", "de", "suite"), ("s'", "il", "te", "plaît"), ("s'", "il", "vous", "plaît"), ("tu", "peux"),
                       ("vous", "pouvez"), ("peux-tu",), ("pouvez-vous",)]},
    "es": {"words": {"oye", "hola", "eh", "porfa", "gracias", "bueno", "ahora", "ya"},
           "phrases": [("ahora", "mismo"), ("por", "favor"), ("puedes",), ("podrías",)]},
}
# words that join two commands, and articles a borrowed target drops ("and the fan" -> "fan")
JOINERS = {"en": {"and", "also", "plus"}, "de": {"und", "sowie"}, "fr": {"et"}, "es": {"y", "e"}}
PARTICLES = {"de": {"ein", "an", "aus", "auf", "zu", "um", "ab"}}  # separable verbs' particles, said last
ARTICLES = {"en": {"the", "my", "a"}, "de": {"der", "die", "das", "den", "dem", "mein", "meine"},
            "fr": {"le", "la", "les", "l'", "mon", "ma", "mes"}, "es": {"el", "la", "los", "las", "mi", "mis"}}


def base_language(language: str) -> str:
    return re.split(r"[-_]", language)[0].lower()


def strip_fillers(ws: list[str], language: str) -> list[str]:
    table = FILLERS.get(base_language(language))
    if not table:
        return ws
    out: list[str] = []
    i = 0
    while i < len(ws):
        phrase = next((p for p in table["phrases"] if tuple(ws[i:i + len(p)]) == p), None)
        if phrase is not None:
            i += len(phrase)
            continue
        if ws[i] not in table["words"]:
            out.append(ws[i])
        i += 1
    return out


def _one_edit(a: str, b: str) -> bool:
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


def fix_typos(ws: list[str], names: Iterable[str], template_words: frozenset[str]) -> list[str] | None:
    """The words with unknown ones corrected to the home's names (unique, one edit), or None if none.

    A word with a letter that no template word and no name has ("lighṫ", "ħeater") is a look-alike,
    not a typo: it is left as it is (and the sentence is not understood)."""
    alphabet = _alphabet(template_words, frozenset(names))
    names = [n for n in names if len(n) >= 4]
    out, changed = list(ws), False
    joiners = {w for words_of in JOINERS.values() for w in words_of}
    for i, w in enumerate(ws):
        if len(w) < 4 or w in template_words or w in joiners or w.isdigit() or not set(w) <= alphabet:
            continue  # "plus" joins two commands; it is not a misspelt "plug"
        if w in names:
            continue
        candidates = {n for n in names if _one_edit(w, n)}
        # one name word only, with the same first letter: "eight" is one letter from the "light" of
        # "Kitchen Light", and "night" too; people misspell the middle of a word, not its start
        if len(candidates) == 1 and next(iter(candidates))[0] == w[0]:
            out[i] = candidates.pop()
            changed = True
    return out if changed else None


@lru_cache(maxsize=16)
def _alphabet(template_words: frozenset[str], names: frozenset[str]) -> frozenset[str]:
    """Every letter the templates and the home's names use (per language and home; frozensets cache their hash)."""
    return frozenset(c for w in (*template_words, *names) for c in w)


def split_compound(ws: list[str], language: str) -> list[list[str]] | None:
    """The parts of "A and B [and C]", or None when there is no joiner between two non-empty parts."""
    joiners = JOINERS.get(base_language(language), set())
    parts: list[list[str]] = [[]]
    for w in ws:
        if w in joiners:
            parts.append([])
        else:
            parts[-1].append(w)
    parts = [p for p in parts if p]
    if len(parts) < 2:
        return None
    particles = PARTICLES.get(base_language(language), set())
    if parts[-1][-1] in particles and len(parts[-1]) > 1 and not any(p[-1] in particles for p in parts[:-1]):
        # "schalte den Ventilator und die Kaffeemaschine aus": the particle belongs to the first
        # part's verb; the later parts borrow it from there ("schalte die Kaffeemaschine aus")
        particle = parts[-1][-1]
        parts = [p + [particle] for p in parts[:-1]] + [parts[-1][:-1]]
    return parts


def borrow(first: list[str], target: tuple[int, int], other: list[str], language: str) -> list[str]:
    """`other` ("the fan") said in the words of `first` around its target ("turn on [the kitchen light]")."""
    articles = ARTICLES.get(base_language(language), set())
    while other and other[0] in articles:
        other = other[1:]
    return first[:target[0]] + other + first[target[1]:]
