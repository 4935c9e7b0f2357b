"""Every example of the safety issue, in process: the sentence, what the bridge may call, what it says.

The bridge acts only on an imperative command addressed to it (docs/assist.md, "What it acts
on"). Each test drives the pipeline and the handlers exactly as the extension does and records
the service calls they make; tests/assist/test_adversarial.py runs the same rules over MQTT."""

from __future__ import annotations

import pytest

from bench.assist_adversarial import home as corpus_home
from bridge.assist.config import AssistConfig
from bridge.assist.handlers import Handlers, Outcome
from bridge.assist.home import Entity, Home
from bridge.assist.messages import UtteranceError, parse_utterance
from bridge.assist.phrases import OWN
from bridge.assist.pipeline import Pipeline
from bridge.assist.speech import Speech
from bridge.core.services import ServiceError


def _home() -> Home:
    h = corpus_home()
    entities = tuple(Entity(e["id"], e["name"], e["id"].split(".")[0], e["area"]) for e in h["entities"])
    return Home(entities, tuple(sorted({e.area for e in entities if e.area})))


HOME = _home()
SATELLITES = corpus_home()["satellites"]


class Assistant:
    """The extension's path from text to service calls, without MQTT."""

    def __init__(self) -> None:
        self.pipeline = Pipeline(AssistConfig(enabled=True))
        self.speech = Speech(self.pipeline.responses)
        self.calls: list[tuple[str, str, dict]] = []
        self.failing: set[str] = set()
        self.handlers = Handlers(self.speech, self._call, lambda _id: None, lambda *_: None, dict)

    def _call(self, domain: str, service: str, data: dict) -> None:
        if data["entity_id"] in self.failing:
            raise ServiceError(f"{data['entity_id']}: cover cannot be turned on/off here")
        self.calls.append((service, data["entity_id"], {k: v for k, v in data.items() if k != "entity_id"}))

    def say(self, text: str, language: str = "en", site_id: str | None = None) -> tuple[list, Outcome | None, object]:
        self.calls.clear()
        area = SATELLITES.get(site_id or "")
        understood = self.pipeline.understand(text, language, HOME, area)
        if understood.refusal is not None or not understood.recognitions:
            return [], None, understood
        outcomes = self.handlers.handle_all(understood.recognitions, HOME, area)
        return list(self.calls), outcomes, understood


@pytest.fixture(scope="module")
def assistant():
    a = Assistant()
    for language in ("en", "de", "fr", "es"):
        a.pipeline.language(language, HOME)
    return a


QUESTIONS = ["did I turn on the kitchen light?", "should I turn on the kitchen light", "can I turn on the desk lamp?",
             "how do I turn on the kitchen light", "what happens if I turn off the coffee plug",
             "why is the kitchen light off?", "did someone switch the heater on", "could I switch on the exhaust fan"]


@pytest.mark.parametrize("text", QUESTIONS)
def test_a_question_switches_nothing(assistant, text):
    calls, _, understood = assistant.say(text)
    assert calls == [] and understood.form in ("question", "hypothetical", "conditional"), understood


@pytest.mark.parametrize("text, why", [
    ("turn on the kitchen light in 5 minutes", "deferred"), ("turn on the kitchen light tomorrow", "deferred"),
    ("switch off the heater at 7 pm", "deferred"), ("turn off the coffee plug in an hour", "deferred"),
    ("turn off the kitchen light when I leave", "conditional"),
    ("when the sun sets turn on the kitchen light", "conditional"),
    ("if it gets dark turn on the desk lamp", "conditional"),
    ("she said turn on the kitchen light", "reported"), ("my wife told me to switch off the heater", "reported"),
    ("turn off all the lights except the desk lamp", "exception"),
    ("don't turn on the ceiling fan", "negated"), ("I would turn on the desk lamp", "hypothetical"),
    ("schalte das Küchenlicht in 5 Minuten ein", "deferred"), ("wenn es dunkel wird schalte die Stehlampe ein", "conditional"),
    ("allume le plafonnier dans dix minutes", "deferred"), ("si la nuit tombe allume le plafonnier", "conditional"),
    ("enciende la cafetera mañana", "deferred"), ("apaga todas las luces excepto la lámpara de pie", "exception")])
def test_deferred_conditional_reported_and_excepted_commands_are_not_for_now(assistant, text, why):
    language = {"schalte": "de", "wenn": "de", "allume": "fr", "si": "fr", "enciende": "es", "apaga": "es"}.get(
        text.split()[0], "en")
    calls, _, understood = assistant.say(text, language)
    assert calls == [] and understood.refusal == why, understood


def test_a_deferred_command_is_told_that_timed_actions_are_not_supported(assistant):
    assert "not supported" in assistant.speech.own("en", "deferred")
    assert "nicht unterstützt" in assistant.speech.own("de", "deferred")


@pytest.mark.parametrize("text", ["the desk lamp is on", "someone left the kitchen light on",
                                  "I turned off the heater", "the kitchen light was on all night",
                                  "das Küchenlicht ist an"])
def test_a_statement_switches_nothing(assistant, text):
    calls, _, understood = assistant.say(text, "de" if "Küchenlicht" in text else "en")
    assert calls == [] and understood.form in ("statement", "deferred"), understood


def test_lock_and_open_keep_their_domains(assistant):
    calls, outcomes, _ = assistant.say("lock the coffee plug")
    assert calls == [] and (outcomes is None or outcomes[0].code == "no_valid_targets")
    calls, _, _ = assistant.say("open the desk lamp")
    assert calls == []


@pytest.mark.parametrize("text", ["turn on the ceiling lamp", "turn on the kitchen lamp fan", "turn on the desk fan",
                                  "switch on the coffee"])
def test_a_name_is_matched_whole_never_by_one_shared_word(assistant, text):
    calls, _, _ = assistant.say(text)
    assert calls == []


def test_an_area_that_does_not_exist_is_no_valid_targets(assistant):
    calls, _, understood = assistant.say("turn on the fan in the basement")
    assert calls == [] and understood.refusal == "no_area" and understood.detail == "basement", understood


def test_a_shared_name_acts_only_when_an_area_settles_it(assistant):
    calls, outcomes, _ = assistant.say("turn on the lamp")
    assert calls == [] and outcomes[0].code == "no_valid_targets"
    assert "Bedroom" in outcomes[0].speech and "Living Room" in outcomes[0].speech, outcomes[0].speech
    calls, _, _ = assistant.say("turn on the lamp in the bedroom")
    assert calls == [("turn_on", "light.bedroom_lamp", {})]
    calls, _, _ = assistant.say("turn on the lamp", site_id="bedroom-satellite")
    assert calls == [("turn_on", "light.bedroom_lamp", {})]
    calls, outcomes, _ = assistant.say("turn on the lamp", site_id="kitchen-satellite")  # no lamp there: still two
    assert calls == [] and outcomes[0].code == "no_valid_targets"


@pytest.mark.parametrize("text", ["set the kitchen light to -20%", "set the kitchen light to +20%",
                                  "set the kitchen light to 20.5%", "turn on the kitchen light 💡",
                                  "[turn on the kitchen light]", "(turn on the kitchen light)",
                                  "{{ turn on the kitchen light }}", "turn on the kitchen light #",
                                  "turn on the kit\u0441hen light", '"turn on the kitchen light"'])
def test_text_the_recognizers_cannot_place_is_refused_not_stripped(assistant, text):
    calls, _, understood = assistant.say(text)
    assert calls == [] and understood.refusal in ("unplaced", "question"), understood


@pytest.mark.parametrize("payload", [b'["turn on the kitchen light"]', "turn on the kitchen\u200b light".encode(),
                                     "turn on the \u202ekitchen light".encode(), b"turn on the kitchen light\x00"])
def test_a_json_array_zero_width_or_direction_override_is_refused_before_recognition(payload):
    with pytest.raises(UtteranceError):
        parse_utterance(payload)


def test_compounds_have_limits_contradictions_are_refused_and_repeats_act_once(assistant):
    flood = " and ".join(["turn on the kitchen light", "turn off the kitchen light"] * 60)
    calls, _, understood = assistant.say(flood)
    assert calls == [] and understood.refusal == "too_long"
    calls, _, understood = assistant.say("turn on the kitchen light and the desk lamp and the heater and the fan")
    assert calls == [] and understood.refusal == "too_many_parts"
    calls, outcomes, _ = assistant.say("turn on the kitchen light and turn off the kitchen light")
    assert calls == [] and outcomes[0].code == "no_intent_match" and "contradict" in outcomes[0].speech
    calls, _, _ = assistant.say("turn on the heater and turn on the heater")
    assert calls == [("turn_on", "switch.heater", {})]
    calls, _, _ = assistant.say("turn on the kitchen light and the desk lamp")
    assert calls == [("turn_on", "light.kitchen_light", {}), ("turn_on", "light.desk_lamp", {})]


def test_french_elision_and_hyphenated_inversion_are_understood(assistant):
    calls, _, _ = assistant.say("allume l'interrupteur de la cuisine", "fr")
    assert calls == [("turn_on", "switch.bouilloire", {})]
    calls, outcomes, understood = assistant.say("y a-t-il des lumières allumées", "fr")
    assert calls == [] and understood.recognitions[0].intent == "HassGetState"


@pytest.mark.parametrize("tag, text, entity", [("en-US", "turn on the desk lamp", "light.desk_lamp"),
                                               ("de-AT", "schalte die Stehlampe ein", "light.stehlampe"),
                                               ("fr-CA", "allume le plafonnier", "light.plafonnier"),
                                               ("es-419", "enciende la cafetera", "switch.cafetera")])
def test_a_language_tag_means_its_language(assistant, tag, text, entity):
    calls, _, _ = assistant.say(text, tag)
    assert calls == [("turn_on", entity, {})]


def test_toggle_is_understood(assistant):
    calls, _, _ = assistant.say("toggle the kitchen light")
    assert calls == [("toggle", "light.kitchen_light", {})]


@pytest.mark.parametrize("language, text", [("de", "öffne das Garage Door"), ("fr", "ouvre le Garage Door"),
                                            ("es", "abre el Garage Door"), ("en", "open the garage door")])
def test_a_failure_is_answered_in_the_language_without_an_internal_id(assistant, language, text):
    assistant.failing = {"cover.garage_door"}
    try:
        calls, outcomes, understood = assistant.say(text, language)
    finally:
        assistant.failing = set()
    assert outcomes is not None, understood
    speech = outcomes[0].speech
    assert outcomes[0].code == "failed_to_handle" and "cover." not in speech and "Garage Door" in speech, speech
    if language != "en":
        assert not speech.startswith("Sorry"), speech


def test_every_shipped_language_has_every_answer():
    assert {set(table) == set(OWN["en"]) for table in OWN.values()} == {True}
    assert set(OWN) == {"en", "de", "fr", "es"}


# ------------------------------------------------------------ what red-team passes found, as classes

@pytest.mark.parametrize("text, language", [
    ("lock the front door and turn off the kitchen light", "en"),  # the lock would fail after the light acted
    ("open the garage door and the kitchen light", "en"),  # a bare later part is not "turn on"
    ("turn off the exhaust fan and set the kitchen light to black", "en"),  # a colour no light command has
    ("ouvre la Garage Door et éteins la bouilloire", "fr"),
    ("turn on the lamp in the bedroom and the lamp", "en")])  # the second lamp has no area of its own
def test_a_compound_is_checked_whole_before_any_part_acts(assistant, text, language):
    calls, _, _ = assistant.say(text, language)
    assert calls == []


@pytest.mark.parametrize("text, language", [("stop the heater off", "en"), ("disable the off switch of the heater", "en"),
                                            ("stoppe das Ausschalten der Stehlampe", "de"),
                                            ("arrête d'éteindre le plafonnier", "fr")])
def test_the_fallback_needs_exactly_one_word_of_polarity(assistant, text, language):
    assert assistant.say(text, language)[0] == []


@pytest.mark.parametrize("text, language", [("turn on the kitchen light at eight", "en"),
                                            ("schalte die Stehlampe um acht ein", "de"),
                                            ("allume le plafonnier à huit heures", "fr"),
                                            ("enciende la cafetera a las ocho", "es")])
def test_a_clock_time_in_words_is_deferred(assistant, text, language):
    calls, _, understood = assistant.say(text, language)
    assert calls == [] and understood.refusal == "deferred", understood


@pytest.mark.parametrize("text, language", [("increase the desk lamp brightness by 10%", "en"),
                                            ("aumenta el brillo de la lámpara de pie en 10 por ciento", "es"),
                                            ("increase the desk lamp 10%", "en"), ("turn down the desk lamp 20 percent", "en"),
                                            ("dimme die Stehlampe 20 Prozent", "de"), ("augmente le plafonnier 10 %", "fr"),
                                            ("suba el brillo de la lámpara de pie en 10", "es")])
def test_a_change_by_an_amount_is_not_a_level(assistant, text, language):
    assert assistant.say(text, language)[0] == []
    # a level is still a level: "to", "auf", "à", "al" before the number
    assert assistant.say("dim the desk lamp to 20%", "en")[2].refusal != "relative"


@pytest.mark.parametrize("text, language", [("desk lamp 2", "en"), ("Stehlampe 2", "de"),
                                            ("enciende la lámpara de pie 2", "es"), ("desk lamp two", "en"),
                                            ("desk lamp one hundred", "en"), ("Stehlampe zwei", "de")])
def test_a_bare_number_after_a_name_is_not_a_brightness(assistant, text, language):
    assert assistant.say(text, language)[0] == []


@pytest.mark.parametrize("text", ["turn on the kitchen light\u037e", "turn.on.the.heater", "turn on switch.heater",
                                  "turn on the ｈｅａｔｅｒ", "turn on the coﬀee plug", "set the desk lamp to 5²%",
                                  "set the desk lamp to ٥٠%", "turn on the kitchen lighṫ", "turn on the kitchen light at eight"])
def test_look_alikes_and_folded_characters_are_not_read_as_what_they_resemble(assistant, text):
    assert assistant.say(text)[0] == []


def test_a_german_particle_said_last_belongs_to_every_part(assistant):
    calls, _, _ = assistant.say("schalte den Ventilator und die Kaffeemaschine aus", "de")
    assert sorted(calls) == [("turn_off", "fan.ventilator", {}), ("turn_off", "switch.kaffeemaschine", {})]


def test_french_typography_and_fillers(assistant):
    calls, _, _ = assistant.say("mets le plafonnier à 50\u202f%", "fr")  # a narrow no-break space before %
    assert calls == [("turn_on", "light.plafonnier", {"brightness_pct": 50})]
    calls, _, _ = assistant.say("hé, allume la lampe de chevet tout de suite", "fr")
    assert calls == [("turn_on", "light.lampe_de_chevet", {})]


def test_the_operators_own_sentences_act_as_written_but_a_partial_match_is_held():
    config = AssistConfig(enabled=True, custom=[{"intent": "MovieTime", "sentences": ["(it's|it is) movie time"]},
                                                {"intent": "BrewCoffee", "patterns": ["brew (me )?a coffee"]}])
    pipeline = Pipeline(config)
    assert [r.intent for r in pipeline.understand("it's movie time", "en", HOME).recognitions] == ["MovieTime"]
    assert [r.intent for r in pipeline.understand("brew me a coffee", "en", HOME).recognitions] == ["BrewCoffee"]
    held = pipeline.understand("did you brew a coffee?", "en", HOME)
    assert held.recognitions == [] and held.refusal == "question", held


def test_a_joiner_inside_a_name_does_not_split_it():
    home = Home((Entity("switch.tea_and_toast", "Tea and Toast", "switch", "Kitchen"),
                 Entity("switch.tea", "Tea", "switch", "Kitchen"), Entity("switch.toast", "Toast", "switch", "Kitchen")),
                ("Kitchen",))
    recs = Pipeline(AssistConfig(enabled=True)).understand("turn on the tea and toast", "en", home).recognitions
    assert [(r.intent, r.slots.get("name")) for r in recs] == [("HassTurnOn", "Tea and Toast")]


def test_plus_joins_two_commands_it_is_not_a_misspelt_plug(assistant):
    calls, _, _ = assistant.say("turn on the heater plus the ceiling fan")
    assert sorted(calls) == [("turn_on", "fan.ceiling_fan", {}), ("turn_on", "switch.heater", {})]


def test_a_stray_combining_mark_in_a_latin_word_is_refused_but_a_devanagari_word_is_read(assistant):
    assert assistant.say("turn on the kitchen l\u0336ight")[2].refusal == "unplaced"
    from bridge.assist.text import read
    assert read("Heater चालू करो").words == ["heater", "चालू", "करो"] and read("Heater चालू करो").unplaced is None


def test_a_site_or_conversation_id_with_a_control_character_is_refused():
    for field in ("site_id", "conversation_id"):
        with pytest.raises(UtteranceError, match=field):
            parse_utterance(f'{{"text": "turn on the heater", "{field}": "a\\u0000b"}}'.encode())


def test_a_semantic_threshold_still_in_a_config_is_said_to_be_unused(caplog):
    from unittest.mock import MagicMock

    from bridge.assist.extension import AssistExtension
    ctx = MagicMock()
    ctx.config = AssistConfig(enabled=True, semantic_threshold=0.8)
    ctx.nodes.all.return_value = {}
    ctx.states.all.return_value = []
    with caplog.at_level("WARNING"):
        try:
            AssistExtension().start(ctx)
        except Exception:  # the mock context goes no further than the check this test is about
            pass
    assert "semantic_threshold is set but no longer used" in caplog.text
