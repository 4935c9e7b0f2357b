"""A sentence read into words without changing what it means.

Every recognizer and every name of the home is read through here, so a name in a sentence and
the same name in the home are always the same words. Reading keeps meaning or refuses: a sign
or a decimal point stays on its number ("-20%" is not "20%"), French elision is split off the
word it belongs to ("l'interrupteur" is "l'" + "interrupteur", as hassil's templates write it),
hyphenated words stay whole ("a-t-il", "est-ce", "Wi-Fi"), and anything that is neither a word,
a whole number of ASCII digits nor sentence punctuation that ends a word (brackets, braces,
symbols, emoji, "turn.on.the.heater", "5²", a word mixing alphabets such as a Cyrillic "о" in
"kitchen", a fullwidth or mathematical letter) is named in `unplaced`: the sentence is refused,
never read with that part stripped away or folded into what it looks like.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# elided articles and pronouns (French, Italian, Catalan): the word after them is a word of its own
ELISIONS = ("jusqu'", "lorsqu'", "puisqu'", "quoiqu'", "qu'", "dell'", "dall'", "nell'", "sull'", "all'", "un'",
            "l'", "d'", "j'", "m'", "n'", "s'", "t'", "c'")
SENTENCE_MARKS = ".,!?;:¿¡…"
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'", "`": "'", "´": "'", "‐": "-", "‑": "-"})
# every mark that asks, looked for before normalising (NFC folds the Greek question mark into ";")
QUESTION_MARKS = frozenset("?¿\u037e\u061f\uff1f\ufe56\u2e2e\u2047\u2048\u2049\u203d")

def _combining_marks() -> str:
    """A regex class of the combining marks a word carries in many scripts (Devanagari's vowel signs)."""
    ranges, start = [], None
    for cp in range(0x300, 0x10000):
        mark = unicodedata.category(chr(cp)).startswith("M")
        if mark and start is None:
            start = cp
        elif not mark and start is not None:
            ranges.append(f"\\u{start:04x}-\\u{cp - 1:04x}")
            start = None
    return "[" + "".join(ranges) + "]"


_LETTER = rf"(?:[^\W_]{_combining_marks()}*)"  # a letter or digit with its combining marks
_TOKEN = re.compile(rf"""
    (?P<number>[-+−]?[0-9]+(?:[.,:][0-9]+)*(?:\s?%)?(?![^\W_]))
  | (?P<word>{_LETTER}+(?:['-]{_LETTER}+)*'?)
  | (?P<space>\s+)
  | (?P<mark>[.,!?;:¿¡…]+(?=\s|$)|^[¿¡]+)
  | (?P<other>.)
""", re.VERBOSE)
_PLAIN_NUMBER = re.compile(r"[0-9]+%?")
# numbers said in words (en, de, fr, es), which Home Assistant's templates read like digits
NUMBER_WORDS = frozenset(
    "one two three four five six seven eight nine ten eleven twelve fifteen twenty thirty forty fifty sixty "
    "seventy eighty ninety hundred eins ein zwei drei vier fünf sechs sieben acht neun zehn elf zwölf zwanzig "
    "dreißig vierzig fünfzig sechzig siebzig achtzig neunzig hundert un une deux trois quatre cinq six sept huit "
    "neuf dix onze douze vingt trente quarante cinquante soixante cent uno una dos tres cuatro cinco seis siete "
    "ocho nueve diez once doce quince veinte treinta cuarenta cincuenta sesenta setenta ochenta noventa "
    "cien".split())
_ELIDED = re.compile("^(" + "|".join(re.escape(e) for e in ELISIONS) + r")(?=[^\W\d_])")


@dataclass(frozen=True)
class Reading:
    words: list[str]
    question: bool = False  # a "?" or "¿" was said
    unplaced: str | None = None  # the first part no recognizer can place, quoted for the answer


def _script(ch: str) -> str:
    if ch.isascii():
        return "LATIN"
    try:
        return unicodedata.name(ch).split(" ", 1)[0]
    except ValueError:
        return "?"


def _one_script(word: str) -> bool:
    letters = {_script(c) for c in word if c.isalpha()}
    return len(letters) <= 1


def _stray_mark(word: str) -> bool:
    """A combining mark left after NFC in a Latin, Greek or Cyrillic word ("l\u0336ight"): those scripts
    write their letters precomposed, so a mark there dresses one letter up as another."""
    return any(unicodedata.category(c).startswith("M") for c in word) and \
        {_script(c) for c in word if c.isalpha()} <= {"LATIN", "GREEK", "CYRILLIC"}


def read(text: str) -> Reading:
    """The lower-case words of a sentence, whether it asks, and what (if anything) cannot be placed."""
    question = any(c in QUESTION_MARKS for c in text)
    # NFC, not NFKC: compatibility forms (fullwidth, superscript and circled digits, ligatures) are
    # look-alikes of what they fold to, so they stay themselves and are not placed
    text = unicodedata.normalize("NFC", text).translate(_APOSTROPHES).lower()
    out: list[str] = []
    unplaced = None
    for m in _TOKEN.finditer(text):
        kind, token = m.lastgroup, m.group()
        if kind == "space":
            continue
        if kind == "mark":
            continue
        if kind == "number":
            token = re.sub(r"\s", "", token)  # "50 %" (or a narrow no-break space, as French writes it) is "50%"
        if kind == "number" and not _PLAIN_NUMBER.fullmatch(token):
            unplaced = unplaced or token
        elif kind == "other":
            unplaced = unplaced or token
            continue
        elif (not _one_script(token) or unicodedata.normalize("NFKC", token) != token
              or any(c.isnumeric() and not "0" <= c <= "9" for c in token) or _stray_mark(token)):
            unplaced = unplaced or token  # "kitсhen" with a Cyrillic с, "ｈｅａｔｅｒ", "coﬀee", "٥٠", "5²"
        else:
            elided = _ELIDED.match(token)
            if elided:
                out.append(elided.group())
                token = token[elided.end():]
        out.append(token)
    return Reading(out, question, unplaced)


def words(text: str) -> list[str]:
    """The words of a name or a sentence, as recognizers compare them."""
    return read(text).words


def key(text: str) -> str:
    return " ".join(words(text))


def joined(ws: list[str]) -> str:
    """Words back into the text hassil reads: an elided article joins the word after it again."""
    out = ""
    for w in ws:
        out += w if not out or out.endswith("'") else " " + w
    return out
