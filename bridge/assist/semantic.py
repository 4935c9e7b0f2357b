"""The fallback for near-misses of a command: other verbs and word orders, every word accounted for.

Home Assistant's templates know "turn on the ceiling fan"; people also say "make the ceiling fan
go on", "power the fan off", "kitchen lights in the office off". This fallback reads such a
sentence word by word and acts only when *every* word is placed:

- a whole name or area of the home (never one shared word of it),
- a verb that carries a polarity and the domains it applies to ("on"/"off" switch lights,
  switches and fans; "open"/"close" covers and valves; "lock"/"unlock" locks — as HA's templates
  restrict them),
- a verb that carries none ("turn", "make", "power", "go"), an article or preposition, or a
  domain word ("lights", "fan") that names what an area's devices are.

Exactly one word that says on or off, one target (a name, or an area with a domain word); a
word it cannot place — a
time, a condition, "except", a name or area the home does not have — means no action. There is
no score: a sentence either is such a command or it is not. Languages without a lexicon here
have no fallback (only their exact templates act).
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.assist.home import Home, Span
from bridge.assist.templates import Recognition
from bridge.assist.text import words

SWITCHABLE = ("light", "switch", "fan", "input_boolean")
COVERS = ("cover", "valve")
LOCKS = ("lock",)


@dataclass(frozen=True)
class Lexicon:
    on: dict[str, tuple[str, ...]]  # word -> the domains it turns on (opens, locks)
    off: dict[str, tuple[str, ...]]
    carriers: frozenset[str]  # verbs without polarity of their own
    glue: frozenset[str]  # articles, prepositions
    domains: dict[str, str]  # "lights" -> light


def _words(text: str) -> frozenset[str]:
    return frozenset(w for t in text.split(",") for w in words(t))


def _polar(**groups: str) -> dict[str, tuple[str, ...]]:
    table = {"switch": SWITCHABLE, "cover": COVERS, "lock": LOCKS}
    return {w: table[group] for group, text in groups.items() for w in _words(text)}


LEXICONS = {
    "en": Lexicon(
        on=_polar(switch="on, activate, enable, start", cover="open", lock="lock"),
        off=_polar(switch="off, deactivate, disable, stop, out", cover="close, shut", lock="unlock"),
        carriers=_words("turn, switch, make, put, get, power, go, flip, set, have, let, toggle"),
        glue=_words("the, my, a, in, of, to, all, at, on the"),
        # not "switch": it is the verb ("switch on the kitchen" names no kind of device)
        domains={"light": "light", "lights": "light", "lamp": "light", "lamps": "light", "fan": "fan",
                 "fans": "fan", "plug": "switch", "plugs": "switch"},
    ),
    "de": Lexicon(
        on=_polar(switch="an, ein, einschalten, anschalten, anmachen, aktiviere, aktivieren, starte, starten",
                  cover="öffne, öffnen, auf, aufmachen", lock="abschließen, verriegeln, verriegle, zusperren"),
        off=_polar(switch="aus, ausschalten, abschalten, ausmachen, deaktiviere, deaktivieren, stoppe, stoppen",
                   cover="schließe, schließen, zu, zumachen", lock="aufschließen, entriegeln, entriegle"),
        carriers=_words("schalte, schalt, schalten, mach, mache, machen, stelle, stell, dreh, drehe, knipse, "
                        "knips, setze, setz"),
        glue=_words("der, die, das, den, dem, des, mein, meine, meinen, im, in, vom, von, alle, im raum"),
        domains={"licht": "light", "lichter": "light", "lampe": "light", "lampen": "light",
                 "ventilator": "fan", "ventilatoren": "fan", "schalter": "switch", "steckdose": "switch"},
    ),
    "fr": Lexicon(
        on=_polar(switch="allume, allumer, active, activer, démarre, démarrer, lance, lancer",
                  cover="ouvre, ouvrir", lock="verrouille, verrouiller"),
        off=_polar(switch="éteins, éteindre, éteint, désactive, désactiver, arrête, arrêter, coupe, couper",
                   cover="ferme, fermer", lock="déverrouille, déverrouiller"),
        carriers=_words("mets, mettre, fais, faire"),
        glue=_words("le, la, les, l', du, de, des, d', dans, mon, ma, mes, en, tout, toutes, tous"),
        domains={"lumière": "light", "lumières": "light", "lampe": "light", "lampes": "light",
                 "ventilateur": "fan", "ventilateurs": "fan", "interrupteur": "switch", "prise": "switch"},
    ),
    "es": Lexicon(
        on=_polar(switch="enciende, encender, prende, prender, activa, activar", cover="abre, abrir",
                  lock="bloquea, bloquear"),
        off=_polar(switch="apaga, apagar, desactiva, desactivar, detén, detener", cover="cierra, cerrar",
                   lock="desbloquea, desbloquear"),
        carriers=_words("pon, poner, haz, hacer"),
        glue=_words("el, la, los, las, del, de, en, mi, mis, todas, todos, al"),
        domains={"luz": "light", "luces": "light", "lámpara": "light", "lámparas": "light",
                 "ventilador": "fan", "ventiladores": "fan", "interruptor": "switch", "enchufe": "switch"},
    ),
}


def _language(language: str) -> str:
    return language.replace("_", "-").split("-")[0].lower()


class SemanticMatcher:
    """On/off for a sentence whose every word is a name, an area, a verb or glue (see above)."""

    def __init__(self, language: str) -> None:
        self.language = _language(language)
        self.lexicon = LEXICONS.get(self.language)

    def suggest(self, ws: list[str], home: Home) -> Recognition | None:
        lex = self.lexicon
        if lex is None or not ws:
            return None
        spans = home.spans(ws)
        covered = {i for s in spans for i in range(s.start, s.end)}
        polar: list[str] = []
        domain_words: set[str] = set()
        for i, w in enumerate(ws):
            if i in covered:
                continue
            if w in lex.on or w in lex.off:
                polar.append(w)
            elif w in lex.domains:
                domain_words.add(lex.domains[w])
            elif w not in lex.carriers and w not in lex.glue:
                return None  # a word this fallback cannot place: not its sentence to guess
        if len(polar) != 1:
            return None  # none, or two: "on off", "stop switching it off", "disable the off switch"
        word = polar[0]
        intent = "HassTurnOn" if word in lex.on else "HassTurnOff"
        return self._target(intent, lex.on.get(word) or lex.off[word], domain_words, spans, ws)

    def _target(self, intent: str, allowed: tuple[str, ...], domain_words: set[str], spans: list[Span],
                ws: list[str]) -> Recognition | None:
        names = [s for s in spans if s.kind == "name"]
        areas = [s for s in spans if s.kind == "area"]
        if len(names) > 1 or len(areas) > 1 or len(domain_words) > 1 or any(s.kind == "floor" for s in spans):
            return None
        domains = [d for d in allowed if not domain_words or d in domain_words]
        if not domains:
            return None  # "open the lights"
        slots: dict[str, object] = {"domain": domains[0]} if len(domains) == 1 else {}
        if names:
            target = names[0]
            slots["name"] = target.value
            if areas:
                slots["area"] = areas[0].value
        elif areas and domain_words:
            target = areas[0]
            slots["area"] = target.value
        else:
            return None
        return Recognition(intent, slots, "semantic", self.language, target=(target.start, target.end),
                           words=list(ws), domains=tuple(domains))
