"""Is this sentence a command addressed to us? The rules that decide whether assist may act.

The bridge acts only on an imperative command for now. A sentence that asks, states, reports
what someone said, supposes, sets a condition, names a later time, makes an exception or
negates gets an answer and no action, whichever recognizer understood its words. This is
decided by the sentence's form, with explicit rules per language, never by a similarity score:

1. polite openers and Home Assistant's skip words are set aside ("could you", "bitte", "tu peux");
2. a negation, an exception, a conditional or subordinating word, a time (a unit, a day, "tomorrow",
   "at 7", "at eight", "7:30"), a change by an amount ("raise the lamp by 10") or a hypothetical
   anywhere → not a command;
3. a reporting verb ("said", "gesagt", "dit") anywhere → reported speech;
4. a question word or an inverted verb first ("did", "why", "warum", "est-ce", "a-t-il"), or a
   question mark without a polite opener → a question;
5. a copula or auxiliary ("is", "ist", "est", "está") or a past tense of a command verb
   ("turned", "left") anywhere → a statement;
4. a question word or an inverted verb first ("did", "why", "warum", "est-ce", "a-t-il"), or a
   question mark without a polite opener → a question;
6. a subject pronoun first ("I", "she", "jemand", "on", "alguien") → a statement.

Words inside a name or area of the home never count ("Night Light" is not a time). Questions
and statements are still recognized, for their answer (HassGetState, room presence); only
actions are held to these rules. In a language without rules here only a question mark is
read, and nothing but Home Assistant's own templates may act (pipeline.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bridge.assist.text import NUMBER_WORDS, words

# what the answer says, per verdict (speech.py's keys)
NOT_COMMAND = ("negated", "exception", "conditional", "deferred", "relative", "hypothetical", "reported",
               "statement", "question")


@dataclass(frozen=True)
class Rules:
    openers: tuple[tuple[str, ...], ...]  # polite phrases that leave a command a command
    question_first: frozenset[str]
    subjects: frozenset[str]
    statement: frozenset[str]  # copulas and auxiliaries
    reported: frozenset[str]
    hypothetical: frozenset[str]
    conditional: frozenset[str]
    deferred: frozenset[str]
    exception: frozenset[str]
    negated: frozenset[str]
    command_verbs: frozenset[str] = frozenset()  # for past tenses ("turned") where the language inflects so
    hypothetical_endings: tuple[str, ...] = ()
    inversion: re.Pattern[str] | None = None  # a verb-pronoun inversion that asks ("a-t-il", "est-ce")
    time_after: frozenset[str] = frozenset()  # "at" 7, "um" 7, "à" 7, "a las" 7: a clock time follows
    amounts: frozenset[str] = frozenset()  # "à 50 pourcent" is an amount, not a time
    clock: frozenset[str] = frozenset()  # "at eight", "um acht": a time in words
    relative_verbs: frozenset[str] = frozenset()  # "raise the lamp by 10": a change, not a level
    relative_stems: tuple[str, ...] = ()  # the same, for every person and mood ("sube", "suba", "subí")
    absolute: frozenset[str] = frozenset()  # "dim the lamp to 20": a number after these is a level
    polite: frozenset[str] = field(default_factory=frozenset)  # openers that also make "…?" a command


def _phrases(*texts: str) -> tuple[tuple[str, ...], ...]:
    return tuple(sorted({tuple(words(t)) for t in texts}, key=len, reverse=True))


def _set(text: str) -> frozenset[str]:
    return frozenset(w for t in text.split(",") for w in [" ".join(words(t))] if w)


RULES: dict[str, Rules] = {
    "en": Rules(
        openers=_phrases("please", "kindly", "hey", "hi", "hello", "ok", "okay", "um", "uh", "er", "hmm", "so",
                         "can you", "could you", "would you", "will you", "can you please", "could you please",
                         "would you please", "i want you to", "i'd like you to", "go ahead and", "for me",
                         "i'd like", "i'd like to", "i want", "now", "right now", "just"),
        polite=_set("can you, could you, would you, will you, can you please, could you please, would you please"),
        question_first=_set("what, what's, whats, why, how, how's, when, where, where's, who, who's, whom, whose, "
                            "which, did, didn't, do, does, doesn't, is, isn't, are, aren't, was, wasn't, were, "
                            "weren't, am, has, hasn't, have, haven't, had, can, can't, could, couldn't, should, "
                            "shouldn't, shall, would, wouldn't, will, won't, may, might, must"),
        subjects=_set("i, i'm, i've, i'll, i'd, we, we're, we've, you, you're, he, he's, she, she's, they, they're, "
                      "it's, someone, somebody, everyone, everybody, nobody, anyone, anybody, people, mom, dad"),
        statement=_set("is, are, was, were, am, be, been, being, isn't, aren't, wasn't, weren't, has, have, had, "
                       "hasn't, haven't, it's, that's, there's, left, forgot, forgotten, keeps, stays, seems, "
                       "looks, sounds, got"),
        reported=_set("said, says, told, asked, asks, wants, wanted, mentioned, claims, claimed, "
                      "according, suggested, ordered, shouted, whispered, wrote, texted"),
        hypothetical=_set("would, could, might, should, wish, suppose, supposing, imagine, pretend, hypothetically, "
                          "maybe, perhaps, whether"),
        conditional=_set("if, when, whenever, once, unless, until, till, while, after, before, because, since, "
                         "as soon as, in case, otherwise, then"),
        deferred=_set("second, seconds, sec, secs, minute, minutes, min, mins, hour, hours, hr, hrs, day, days, "
                      "week, weeks, month, months, o'clock, am, pm, tomorrow, tonight, today, later, soon, "
                      "afterwards, morning, evening, afternoon, night, noon, midnight, sunrise, sunset, dusk, "
                      "dawn, weekend, monday, tuesday, wednesday, thursday, friday, saturday, sunday, every, "
                      "daily, hourly, eventually, schedule, timer, delay"),
        exception=_set("except, excepting, excluding, besides, but, apart, other than, save for, instead, aside"),
        negated=_set("not, no, never, don't, dont, do not, doesn't, didn't, won't, can't, cannot, shouldn't, "
                     "nothing, neither, nor, without, stop turning"),
        command_verbs=_set("turn, switch, power, activate, deactivate, start, stop, open, close, lock, unlock, "
                           "enable, disable, dim, brighten, toggle, set, light, shut, kill, flip"),
        time_after=_set("at, by, around, from"),
        amounts=_set("percent, kelvin, kelvins, k, degrees, degree"),
        clock=_set("one, two, three, four, five, six, seven, eight, nine, ten, eleven, twelve, half, quarter"),
        relative_verbs=_set("increase, decrease, raise, lower, reduce, brighten, dim, turn up, turn down, bump"),
        absolute=_set("to, at"),
    ),
    "de": Rules(
        openers=_phrases("bitte", "danke", "hey", "hallo", "ok", "okay", "äh", "ähm", "hm", "hmm", "also", "mal",
                         "doch", "eben", "jetzt", "sofort", "gleich", "gerade", "noch", "gefälligst",
                         "kannst du", "kannst du mir", "kannst du uns", "könntest du", "könntest du mir",
                         "könntest du uns", "würdest du", "würdest du mir", "würdest du uns", "du könntest",
                         "ich möchte", "ich will", "ich würde gerne", "wir möchten", "wir wollen", "du sollst",
                         "können sie", "könnten sie", "würden sie"),
        polite=_set("kannst du, kannst du mir, kannst du uns, könntest du, könntest du mir, könntest du uns, "
                    "würdest du, würdest du mir, würdest du uns, können sie, könnten sie, würden sie"),
        question_first=_set("wer, was, wann, wo, warum, wieso, weshalb, weswegen, wie, welche, welcher, welches, "
                            "welchen, welchem, ist, sind, bin, bist, seid, war, waren, hat, haben, hast, habe, "
                            "hatte, kann, können, kannst, soll, sollte, sollen, darf, dürfen, muss, müssen, gibt, "
                            "gab, wird, werden, würde, könnte, brennt, läuft"),
        subjects=_set("ich, wir, er, sie, es, jemand, man, du, ihr, niemand, keiner, mama, papa"),
        statement=_set("ist, sind, war, waren, bin, bist, seid, sei, gewesen, wird, werden, wurde, wurden, hat, "
                       "habe, haben, hast, hatte, hatten, bleibt, brennt, läuft, vergessen"),
        reported=_set("sagte, sagt, gesagt, meinte, meint, gemeint, bat, gebeten, befahl, fragte, gefragt, "
                      "laut, wollte, möchte gern, erzählt, geschrieben"),
        hypothetical=_set("würde, würden, würdest, könnte, könnten, hätte, hätten, wäre, wären, sollte, sollten, "
                          "vielleicht, angenommen, eventuell, ob"),
        conditional=_set("wenn, falls, sobald, sofern, nachdem, bevor, während, bis, solange, weil, damit, dass, "
                         "sonst, dann"),
        deferred=_set("sekunde, sekunden, minute, minuten, stunde, stunden, tag, tage, tagen, woche, wochen, "
                      "uhr, morgen, übermorgen, später, nachher, demnächst, bald, heute, abend, abends, nacht, "
                      "nachts, morgens, mittag, mittags, nachmittag, nachmittags, früh, montag, dienstag, "
                      "mittwoch, donnerstag, freitag, samstag, sonntag, wochenende, täglich, jeden, jede, "
                      "sonnenuntergang, sonnenaufgang, timer, zeitplan"),
        exception=_set("außer, ausser, ausgenommen, abgesehen, ohne, sondern, statt, anstatt, aber"),
        negated=_set("nicht, kein, keine, keinen, keinem, keiner, nie, niemals, nichts, weder"),
        time_after=_set("um, gegen, ab"),
        amounts=_set("prozent, kelvin, k, grad"),
        clock=_set("eins, ein, zwei, drei, vier, fünf, sechs, sieben, acht, neun, zehn, elf, zwölf, halb, viertel"),
        relative_verbs=_set("erhöhe, erhöhen, senke, senken, verringere, verringern, reduziere, reduzieren, "
                            "dimme, dimmen, mach heller, mach dunkler, heller, dunkler"),
        absolute=_set("auf, zu"),
    ),
    "fr": Rules(
        openers=_phrases("s'il te plaît", "s'il te plait", "s'il vous plaît", "s'il vous plait", "stp", "svp",
                         "please", "merci", "hé", "hey", "salut", "euh", "bon", "alors", "maintenant",
                         "est-ce que tu peux", "est ce que tu peux", "est-ce que vous pouvez", "tu peux", "peux-tu",
                         "peux tu", "vous pouvez", "pouvez-vous", "pourrais-tu", "tu pourrais", "pourriez-vous",
                         "vous pourriez", "veux-tu", "voulez-vous", "je veux que tu", "j'aimerais que tu"),
        polite=_set("est-ce que tu peux, est ce que tu peux, est-ce que vous pouvez, tu peux, peux-tu, peux tu, "
                    "vous pouvez, pouvez-vous, pourrais-tu, tu pourrais, pourriez-vous, vous pourriez, veux-tu, "
                    "voulez-vous"),
        question_first=_set("qui, que, qu', quoi, quand, où, pourquoi, comment, combien, quel, quelle, quels, "
                            "quelles, lequel, laquelle, est-ce, est-ce que, y, dois-je, puis-je, faut-il, état, "
                            "statut"),
        subjects=_set("je, j', tu, il, elle, on, nous, vous, ils, elles, quelqu'un, personne, c', ça, cela, "
                      "maman, papa"),
        statement=_set("est, sont, était, étaient, été, suis, es, sommes, êtes, sera, seront, ai, as, avons, "
                       "avez, ont, avait, avaient, eu, reste, restée, resté, oublié, oubliée, laissé, laissée"),
        reported=_set("dit, disait, dire, demandé, demande, demandait, veut, voulait, selon, ordonné, écrit"),
        hypothetical=_set("si, imagine, imaginons, supposons, peut-être, éventuellement"),
        hypothetical_endings=("erais", "erait", "erions", "eriez", "eraient", "rais", "rait", "rions", "riez",
                              "raient"),
        conditional=_set("si, s', quand, lorsque, lorsqu', dès, pendant, jusqu', jusque, après, avant, parce, "
                         "puisque, puisqu', sinon, ensuite, puis"),
        deferred=_set("seconde, secondes, minute, minutes, heure, heures, jours, semaine, semaines, demain, "
                      "après-demain, tard, bientôt, soir, matin, midi, minuit, lundi, mardi, mercredi, jeudi, "
                      "vendredi, samedi, dimanche, chaque, week-end, quotidien, minuteur, coucher, aube"),
        exception=_set("sauf, excepté, hormis, à part, sans, mais, plutôt"),
        negated=_set("ne, n', pas, jamais, aucun, aucune, rien, ni, nullement"),
        inversion=re.compile(r".+-(t-)?(il|elle|ils|elles|on|je|nous|vous|tu|ce)$"),
        time_after=_set("à, vers, dès"),
        amounts=_set("pourcent, pour, kelvin, kelvins, k, degrés, degré"),
        clock=_set("une, deux, trois, quatre, cinq, six, sept, huit, neuf, dix, onze, douze, midi, minuit"),
        relative_stems=("augment", "baiss", "diminu", "rédui", "réduis", "mont", "descend"),
        absolute=_set("à, a, sur"),
    ),
    "es": Rules(
        openers=_phrases("por favor", "porfa", "gracias", "oye", "hola", "eh", "bueno", "ahora", "ya",
                         "podrías", "podría", "puedes", "podés", "me podrías", "me podría", "me puedes", "me podés",
                         "te importaría", "te importa", "le importa", "le importaría", "te animas a", "te animás a",
                         "quiero que"),
        polite=_set("podrías, podría, puedes, podés, me podrías, me podría, me puedes, me podés, te importaría, "
                    "te importa, le importa, le importaría"),
        question_first=_set("qué, quién, quiénes, cuándo, dónde, adónde, por qué, porqué, cómo, cuál, cuáles, "
                            "cuánto, cuántos, cuánta, cuántas, está, están, estaba, es, son, hay, puedo, debo, "
                            "debería, podemos, hice, encendí, apagué"),
        subjects=_set("yo, tú, él, ella, nosotros, nosotras, vosotros, ellos, ellas, usted, ustedes, alguien, "
                      "nadie, mamá, papá"),
        statement=_set("está, están, estaba, estaban, es, son, era, eran, fue, estuvo, ha, he, has, han, hemos, "
                       "había, sigue, quedó, dejó, dejaste, olvidó, encendí, apagué, encendió, apagó"),
        reported=_set("dijo, dice, dijeron, decía, pidió, pide, pidieron, según, ordenó, escribió"),
        hypothetical=_set("si, imagina, imaginemos, supongamos, quizás, quizá, tal vez, acaso"),
        hypothetical_endings=("ría", "rías", "ríamos", "ríais", "rían"),
        conditional=_set("si, cuando, mientras, hasta, después, antes, apenas, en cuanto, una vez, porque, "
                         "aunque, luego, entonces, sino"),
        deferred=_set("segundo, segundos, minuto, minutos, hora, horas, días, semana, semanas, mañana, "
                      "pasado mañana, tarde, noche, luego, pronto, lunes, martes, miércoles, jueves, viernes, "
                      "sábado, domingo, diario, temporizador, madrugada, amanecer, anochecer, "
                      "atardecer"),
        exception=_set("excepto, salvo, menos, sin, aparte, excepción, pero, sino"),
        negated=_set("no, nunca, jamás, ni, nada, ningún, ninguna, ninguno, tampoco"),
        time_after=_set("a las, a la, sobre las, hacia las"),
        amounts=_set("por, porciento, kelvin, k, grados, grado"),
        clock=_set("una, dos, tres, cuatro, cinco, seis, siete, ocho, nueve, diez, once, doce"),
        relative_stems=("aument", "sub", "baj", "reduc", "reduz", "increment", "decrement", "disminu", "levant",
                        "acort", "rebaj"),
        absolute=_set("a, al"),
    ),
}
_CLOCK = re.compile(r"\d{1,2}[:.h]\d{2}|\d{1,2}h")


def rules_for(language: str) -> Rules | None:
    return RULES.get(re.split(r"[-_]", language)[0].lower())


def _strip_openers(ws: list[str], rules: Rules) -> tuple[list[str], bool]:
    """The words without polite openers and fillers; True when a polite request opened the sentence."""
    out: list[str] = []
    polite, i = False, 0
    while i < len(ws):
        phrase = next((p for p in rules.openers if tuple(ws[i:i + len(p)]) == p), None)
        if phrase is None:
            out.append(ws[i])
            i += 1
            continue
        if not out and " ".join(phrase) in rules.polite:
            polite = True
        i += len(phrase)
    return out, polite


def _hits(ws: list[str], vocabulary: frozenset[str]) -> bool:
    """A word, or a run of two or three words, of the vocabulary."""
    for n in (1, 2, 3):
        for i in range(len(ws) - n + 1):
            if " ".join(ws[i:i + n]) in vocabulary:
                return True
    return False


def _number(word: str) -> bool:
    return word[:1].isdigit() or word in NUMBER_WORDS


def _past(word: str, verbs: frozenset[str]) -> bool:
    if not verbs or not word.endswith("ed"):
        return False
    stem = word[:-2]
    return stem in verbs or stem + "e" in verbs or (len(stem) > 2 and stem[-1] == stem[-2] and stem[:-1] in verbs)


def classify(ws: list[str], question_mark: bool, language: str, named: set[int] | frozenset[int] = frozenset()
             ) -> str | None:
    """None for a command, else why it is not one (a key of NOT_COMMAND). `named`: indexes of name words."""
    rules = rules_for(language)
    if rules is None:
        return "question" if question_mark else None
    free = [w if i not in named else "\x00" for i, w in enumerate(ws)]  # a name's words are not the sentence's
    rest, polite = _strip_openers(free, rules)
    checks = (("negated", rules.negated), ("exception", rules.exception), ("conditional", rules.conditional))
    for verdict, vocabulary in checks:
        if _hits(rest, vocabulary):
            return verdict
    if _hits(rest, rules.deferred) or any(_CLOCK.fullmatch(w) for w in rest) or any(
            " ".join(rest[i:i + n]) in rules.time_after and i + n < len(rest)
            and (rest[i + n].isdigit() or rest[i + n] in rules.clock)
            and (i + n + 1 >= len(rest) or rest[i + n + 1] not in rules.amounts)
            for n in (1, 2) for i in range(len(rest))):
        return "deferred"
    if (_hits(rest, rules.relative_verbs) or any(w.startswith(rules.relative_stems) for w in rest
                                                   if rules.relative_stems)) and any(
            _number(w) and (i == 0 or rest[i - 1] not in rules.absolute) for i, w in enumerate(rest)):
        return "relative"  # "increase the lamp 10%", "sube el brillo en 10": not "dim the lamp to 20%"
    if _hits(rest, rules.hypothetical) or any(
            len(w) > 5 and w.endswith(rules.hypothetical_endings) for w in rest if rules.hypothetical_endings):
        return "hypothetical"
    if _hits(rest, rules.reported):
        return "reported"
    first = rest[0] if rest else ""
    if first in rules.question_first or " ".join(rest[:2]) in rules.question_first or (
            rules.inversion is not None and any(rules.inversion.fullmatch(w) for w in rest[:3])):
        return "question"
    if question_mark and not polite:
        return "question"
    if _hits(rest, rules.statement) or any(_past(w, rules.command_verbs) for w in rest):
        return "statement"
    if first in rules.subjects:
        return "statement"
    return None
