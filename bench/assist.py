"""Assist: accuracy on HA's own sentences (and perturbed), recognition latency against hassil,
end-to-end latency over a real Mosquitto against a bare echo, and the memory English costs.

    python -m bench.assist                       # everything
    python -m bench.assist --only accuracy       # or corpus, refusals, latency, e2e, memory

Accuracy: the upstream English test files of HassTurnOn/Off, HassLightSet and HassGetState
(tests/assist/fixtures), each against its own fixture home, then the same sentences with a
"hey" prefix, an "um" after the first word, a one-letter typo in the longest name word, and
(name_only on/off files) a second target "... and the <other device>". Baseline: hassil
alone (HA's strict stage) on the same sentences, same run. A wrong answer that acts — wrong
polarity or wrong entity — is counted apart from a refusal; so are out-of-scope sentences.

Corpus: the adversarial corpus (tests/assist/corpus/{en,de,fr,es}.yaml) and the holdout a red-team
pass wrote after the rules (holdout_*.yaml), in process, each case judged by the device calls
made: correct / refused / wrong action / wrong text (bench/assist_adversarial.py).

Refusal cost: the English corpus's commands and its refusals, each said ten times in one
shuffled stream; the median and p99 of each, and their ratio, same run.

Latency: a home of 50 entities in 10 areas; utterances made from the fixture phrasings with
the home's names, each one hassil with HA's full English templates recognizes (HA's default
agent, names Trie-filtered as HA does) — ours and that baseline on the same utterances.

End to end: the bridge as `ruview-bridge run` (HA discovery in, assist on) with the 50 devices
announced on the broker; a client publishes an utterance and waits for its response, one at
a time. Baseline: the same client's round trip through the same broker to a bare paho echo.

Exit status 1 when the work was not done: cases missing, answers not received.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

from bench.assist_adversarial import cases as adversarial_cases
from bench.assist_adversarial import home as corpus_home
from bench.assist_adversarial import InProcess, judge, tally
from bench.assist_corpus import ACTIONS, Case, perturbed, score, upstream
from bench.harness import bridge_process, percentile, stop
from bridge.assist.config import AssistConfig
from bridge.assist.home import Entity, Home, key, words
from bridge.assist.pipeline import Pipeline

AREAS = ["Kitchen", "Living Room", "Bedroom", "Office", "Hallway", "Bathroom", "Garage", "Dining Room",
         "Nursery", "Attic"]
KINDS = [("Ceiling Light", "light"), ("Floor Lamp", "light"), ("Fan", "fan"), ("Plug", "switch"),
         ("Heater Switch", "switch")]
OUT_OF_SCOPE = ["play jazz", "what is the meaning of life", "set a timer for five minutes", "what's the weather",
                "turn of the kitchen ceiling light", "dim the kitchen ceiling light a bit", "turn on the garage heater",
                "tell me a joke", "open the pod bay doors", "turn the music up", "order a pizza", "call mom",
                "kitchen", "turn", "on off on off", "switch the office plug of", "close the kitchen",
                "who are you", "turn on and off the kitchen fan", "what time is it",
                "don't turn on the kitchen fan", "do not turn off the office fan", "never switch on the office fan",
                "please don't switch the kitchen fan on"]


def fixture_home() -> Home:
    entities = tuple(Entity(f"{d}.{key(a + ' ' + n).replace(' ', '_')}", f"{a} {n}", d, a)
                     for a in AREAS for n, d in KINDS)
    return Home(entities, tuple(AREAS))


# ------------------------------------------------------------------ accuracy

def accuracy() -> bool:
    pipeline = Pipeline(AssistConfig(enabled=True))
    base = upstream()
    cases = {"upstream": base, "perturbed": perturbed(base)}
    if len(base) < 280:
        print(f"only {len(base)} upstream sentences found in tests/assist/fixtures: not the corpus", file=sys.stderr)
        return False
    home = fixture_home()
    pipeline.language("en", home)
    lang = pipeline.languages["en"]

    def ours(c: Case):
        return pipeline.recognize(c.text, "en", c.home, c.context_area)

    def hassil_alone(c: Case):
        found = lang.templates.hassil(words(c.text), c.home, c.context_area)
        return [found[0]] if found else []

    print("Accuracy: correct intent and slots (wrong = recognized otherwise, acted on nothing; "
          "wrong action = wrong polarity or entity)")
    print(f"{'set':<22}{'n':>6}{'hassil alone':>14}{'ruview-bridge':>15}{'refused':>9}{'wrong':>7}{'wrong action':>14}")
    totals = {}
    for label, cs in cases.items():
        mine, theirs = score(cs, ours), score(cs, hassil_alone)
        for kind, row in mine["by_kind"].items():
            t = theirs["by_kind"][kind]
            print(f"{label + ':' + kind:<22}{row['n']:>6}{t['correct'] / t['n']:>14.1%}{row['correct'] / row['n']:>15.1%}"
                  f"{row['refused']:>9}{row['wrong']:>7}{row['wrong_action']:>14}")
            agg = totals.setdefault(label, [0, 0, 0, 0])
            agg[0] += row["n"]
            agg[1] += row["correct"]
            agg[2] += row["wrong_action"]
            agg[3] += t["correct"]
        for kind, verdict, source, text in mine["failures"][:8]:
            print(f"    {verdict:<12} {kind:<9} {source:<28} {text}")
    acted = [t for t in OUT_OF_SCOPE if any(r.intent in ACTIONS for r in pipeline.recognize(t, "en", home))]
    print(f"{'out of scope':<22}{len(OUT_OF_SCOPE):>6}{'':>14}{'':>15}{'':>9}{'':>7}{len(acted):>14}"
          + (f"   acted on: {acted}" if acted else ""))
    up, pe = totals["upstream"], totals["perturbed"]
    print(f"upstream {up[1] / up[0]:.1%} (target >= 98%), perturbed {pe[1] / pe[0]:.1%} (target >= 90%; "
          f"hassil alone {pe[3] / pe[0]:.1%}), wrong actions {up[2] + pe[2] + len(acted)} (target 0)")
    return True


# ------------------------------------------------------------------ latency

def utterances(home: Home, n: int, seed: int = 7) -> list[str]:
    """Fixture phrasings said with this home's names (domain kept), in a shuffled order."""
    rng = random.Random(seed)
    phrasings = set()
    for c in upstream():
        name = c.expected[0].get("name")
        if c.intent not in ("HassTurnOn", "HassTurnOff", "HassLightSet", "HassGetState") or not name:
            continue
        if c.home.areas or c.home.floors:
            continue
        domain = next(e.domain for e in c.home.entities if e.name == name)
        if domain not in ("light", "fan", "switch"):
            continue
        text = re.sub(rf"\b{re.escape(key(name))}\b", "{name}", key(c.text))
        if "{name}" in text:
            phrasings.add((text, domain))
    phrasings = sorted(phrasings)
    by_domain: dict[str, list[Entity]] = {}
    for e in home.entities:
        by_domain.setdefault(e.domain, []).append(e)
    out = []
    while len(out) < n:
        text, domain = phrasings[len(out) % len(phrasings)]
        entity = rng.choice(by_domain.get(domain) or by_domain["light"])
        out.append(text.replace("{name}", entity.name.lower()))
    rng.shuffle(out)
    return out


def latency(n: int) -> bool:
    from hassil import Intents, TextSlotList, Trie, recognize_best
    from home_assistant_intents import get_intents

    home = fixture_home()
    full = Intents.from_dict(get_intents("en"))
    names = TextSlotList.from_tuples([(e.name, e.name, {"domain": e.domain}) for e in home.entities],
                                     allow_template=False, name="name")
    trie = Trie()
    for v in names.values:
        trie.insert(v.text_in.text.strip().lower(), v)
    area = TextSlotList.from_tuples([(a, a) for a in home.areas], allow_template=False, name="area")
    floor = TextSlotList.from_tuples([], allow_template=False, name="floor")

    def ha(text: str):
        lists = {"name": TextSlotList(name="name", values=[r[2] for r in trie.find(text)]),
                 "area": area, "floor": floor}
        return recognize_best(text, full, slot_lists=lists, language="en", best_slot_name="name")

    ha("turn on the kitchen ceiling light")  # hassil's own lazy parse, before timing
    said = [u for u in utterances(home, n) if ha(u) is not None]  # matched commands only
    pipeline = Pipeline(AssistConfig(enabled=True))
    pipeline.language("en", home)
    lang = pipeline.languages["en"].templates
    hits0, misses0 = lang.hits, lang.misses
    ours, theirs, agree = [], [], 0
    gc.disable()
    try:
        for text in said:
            t0 = time.perf_counter()
            recs = pipeline.recognize(text, "en", home)
            t1 = time.perf_counter()
            r = ha(text)
            t2 = time.perf_counter()
            ours.append((t1 - t0) * 1e3)
            theirs.append((t2 - t1) * 1e3)
            agree += bool(recs) and recs[0].intent == r.intent.name
    finally:
        gc.enable()
    if len(said) < n // 2 or agree < len(said) * 0.98:
        print(f"latency: only {len(said)} matched utterances, {agree} recognized alike: the work was not done",
              file=sys.stderr)
        return False
    hits, misses = lang.hits - hits0, lang.misses - misses0
    print(f"\nRecognition latency, {len(said)} matched commands, home of {len(home.entities)} entities in "
          f"{len(home.areas)} areas ({len({u for u in said})} distinct sentences; shapes remembered: "
          f"{hits} answered from a shape, {misses} by hassil)")
    print(f"{'':<34}{'median':>9}{'p90':>9}{'p99':>9}{'max':>9}  ms")
    for label, xs in (("hassil, HA's English (baseline)", theirs), ("ruview-bridge assist", ours)):
        print(f"{label:<34}{statistics.median(xs):>9.3f}{percentile(xs, 90):>9.3f}{percentile(xs, 99):>9.3f}{max(xs):>9.2f}")
    print(f"ratio of medians (ours / hassil): {statistics.median(ours) / statistics.median(theirs):.3f}; "
          f"p99 ratio {percentile(ours, 99) / percentile(theirs, 99):.3f}  (targets: median <= 1 ms, p99 <= 5 ms)")
    return True


# ------------------------------------------------------------------ end to end

ECHO = r"""
import socket, sys, paho.mqtt.client as paho
c = paho.Client(paho.CallbackAPIVersion.VERSION2)
c.on_connect = lambda c, *a: c.subscribe("echo/request", qos=1)
c.on_message = lambda c, u, m: c.publish("echo/response", m.payload, qos=1)
c.connect("127.0.0.1", int(sys.argv[1]))
c.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as the bridge's own connection does
c.loop_forever()
"""


def _device_config(entity: Entity) -> tuple[str, dict]:
    obj = entity.entity_id.split(".", 1)[1]
    cfg = {"name": None, "command_topic": f"z2m/{obj}/set", "state_topic": f"z2m/{obj}",
           "unique_id": f"{obj}_bench", "default_entity_id": entity.entity_id,
           "device": {"identifiers": [f"bench_{obj}"], "name": entity.name, "suggested_area": entity.area}}
    if entity.domain == "light":
        cfg.update(schema="json", brightness=True)
    else:
        cfg.update(payload_on="ON", payload_off="OFF")
    return f"homeassistant/{entity.domain}/{obj}/{entity.domain}/config", cfg


class RoundTrips:
    """One client: publish, wait for the answer carrying the same id."""

    def __init__(self, port: int, request: str, response: str) -> None:
        import paho.mqtt.client as paho
        self.request, self._event, self._want, self.received = request, threading.Event(), None, 0
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        ready = threading.Event()
        self.client.on_connect = lambda c, *a: c.subscribe(response, qos=1)
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as a satellite would
        self.client.loop_start()
        if not ready.wait(10):
            raise RuntimeError("the benchmark client could not subscribe")

    def _on_message(self, _c, _u, msg) -> None:
        if self._want is not None and self._want.encode() in msg.payload:
            self.received += 1
            self._event.set()

    def once(self, payload: dict, timeout: float = 5.0) -> float | None:
        self._want = payload["id"]
        self._event.clear()
        t0 = time.perf_counter()
        self.client.publish(self.request, json.dumps(payload), qos=1)
        if not self._event.wait(timeout):
            return None
        return (time.perf_counter() - t0) * 1e3

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def e2e(n: int, nagle: bool = False) -> bool:
    from tests.brokers import Mosquitto
    import paho.mqtt.client as paho

    home = fixture_home()
    # Mosquitto's default leaves Nagle on: an answer it writes right after a PUBACK waits for the
    # client's delayed ACK (~40 ms on Linux) whoever answers; `set_tcp_nodelay true` (docs/assist.md)
    broker = Mosquitto(extra_conf="" if nagle else "set_tcp_nodelay true\n").start()
    procs = []
    tmp = tempfile.mkdtemp()
    try:
        announcer = paho.Client(paho.CallbackAPIVersion.VERSION2)
        announcer.connect("127.0.0.1", broker.port)
        announcer.loop_start()
        for e in home.entities:
            topic, cfg = _device_config(e)
            announcer.publish(topic, json.dumps(cfg), qos=1, retain=True).wait_for_publish(5)
        announcer.loop_stop()
        announcer.disconnect()
        procs.append(bridge_process({"mqtt": {"url": f"mqtt://127.0.0.1:{broker.port}"}, "nodes": {"enabled": False},
                                     "homeassistant": {"collect_seconds": 0, "birth_delay": 0},
                                     "assist": {"enabled": True}}, tmp))
        procs.append(subprocess.Popen([sys.executable, "-c", ECHO, str(broker.port)]))
        said = utterances(home, n, seed=11)
        user = RoundTrips(broker.port, "ruview/assist/utterance", "ruview/assist/response")
        deadline = time.monotonic() + 30
        while user.once({"text": said[0], "id": uuid.uuid4().hex}, 1.0) is None:  # the bridge is up
            if time.monotonic() > deadline:
                print("the bridge never answered", file=sys.stderr)
                return False
        echo = RoundTrips(broker.port, "echo/request", "echo/response")
        while echo.once({"id": uuid.uuid4().hex}, 1.0) is None:
            if time.monotonic() > deadline:
                print("the echo never answered", file=sys.stderr)
                return False
        ours, bare = [], []
        for text in said:
            ours.append(user.once({"text": text, "id": uuid.uuid4().hex}))
            bare.append(echo.once({"text": text, "id": uuid.uuid4().hex}))
        user.close()
        echo.close()
        lost = sum(x is None for x in ours) + sum(x is None for x in bare)
        if lost:
            print(f"e2e: {lost} answers never arrived: the work was not done", file=sys.stderr)
            return False
        print(f"\nEnd to end over Mosquitto ({'default config: Nagle on' if nagle else 'set_tcp_nodelay true'}), "
              f"{len(said)} utterances one at a time (publish -> response received), "
              f"the bridge as `ruview-bridge run` with {len(home.entities)} discovered devices")
        print(f"{'':<34}{'median':>9}{'p90':>9}{'p99':>9}{'max':>9}  ms")
        for label, xs in (("bare paho echo (baseline)", bare), ("ruview-bridge assist", ours)):
            print(f"{label:<34}{statistics.median(xs):>9.3f}{percentile(xs, 90):>9.3f}{percentile(xs, 99):>9.3f}{max(xs):>9.2f}")
        print(f"ratio of medians (ours / echo): {statistics.median(ours) / statistics.median(bare):.2f}  "
              "(target: median <= 5 ms)")
        return True
    finally:
        stop(*procs)
        broker.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------ the adversarial corpus and refusal cost

def corpus() -> bool:
    """The adversarial corpus's counts, in process (tests/assist/test_adversarial.py runs it over MQTT)."""
    bridge = InProcess()
    results = [(case, judge(case, *bridge.run(case))) for case in adversarial_cases()]
    holdout = [(case, judge(case, *bridge.run(case))) for case in adversarial_cases(prefix="holdout_")]
    print("\nAdversarial corpus (tests/assist/corpus: en, de, fr, es; the only acceptable outcome per case):")
    print(f"{'language':<10}{'n':>6}{'correct':>9}{'refused':>9}{'wrong action':>14}{'wrong text':>12}")
    for language in ("en", "de", "fr", "es", "all"):
        rows = [(c, v) for c, v in results if language in ("all", c.language)]
        t = tally(rows)
        print(f"{language:<10}{t['n']:>6}{t['correct']:>9}{t['refused']:>9}{t['wrong_action']:>14}{t['wrong_text']:>12}")
    t = tally(results)
    print(f"wrong actions {t['wrong_action']} (target 0); actions refused {t['acting_refused']} of {t['acting']} "
          f"({t['acting_refused'] / max(t['acting'], 1):.1%}, target <= 5%)")
    h = tally(holdout)
    print(f"holdout (tests/assist/corpus/holdout_*.yaml, written against the rules by red-team passes): {h['n']} cases, "
          f"{h['correct']} correct, {h['refused']} refused, {h['wrong_action']} wrong action, {h['wrong_text']} wrong text")
    return t["n"] >= 400 and t["wrong_action"] == 0 and h["n"] >= 400


def refusal_cost(repeats: int = 10, seed: int = 3) -> bool:
    """Median and p99 of a refusal against a recognized command, both from the English corpus, each
    sentence said `repeats` times in one shuffled stream (first hearings and repeats, as a home hears)."""
    bridge = InProcess()
    english = [c for c in adversarial_cases(("en",)) if c.text is not None and c.send_language is None]
    commands = [c for c in english if c.do and not c.site_id]
    refusals = [c for c in english if not c.do and c.answer == frozenset({"error"}) and not c.site_id]
    stream = [("command", c) for c in commands for _ in range(repeats)] + \
             [("refusal", c) for c in refusals for _ in range(repeats)]
    random.Random(seed).shuffle(stream)
    times: dict[str, list[float]] = {"command": [], "refusal": []}
    acted_wrongly = 0
    for kind, c in stream:
        started = time.perf_counter()
        bridge.answer(c.text, "en")
        times[kind].append((time.perf_counter() - started) * 1e3)
        acted_wrongly += kind == "refusal" and bool(bridge.commands)
    med = {k: statistics.median(v) for k, v in times.items()}
    p99 = {k: percentile(v, 99) for k, v in times.items()}
    print(f"\nRefusal cost: {len(commands)} commands and {len(refusals)} refusals of the English corpus, each said "
          f"{repeats} times, shuffled (in process: recognition, planning, answer)")
    for k in ("command", "refusal"):
        print(f"  {k:<8} n={len(times[k]):>5}  median {med[k]:.3f} ms  p99 {p99[k]:.2f} ms")
    print(f"  refusal / command: median {med['refusal'] / med['command']:.2f}x, p99 {p99['refusal'] / p99['command']:.2f}x"
          f" (target <= 3x; p99 <= 5 ms for both)")
    return acted_wrongly == 0 and len(refusals) >= 50 and len(commands) >= 30


# ------------------------------------------------------------------ memory

MEMORY = r"""
import gc, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
import bridge.app, bridge.extension, numpy, orjson, yaml  # the bridge without assist
gc.collect(); before = rss()
from bridge.assist.config import AssistConfig
from bridge.assist.pipeline import Pipeline
from bench.assist import fixture_home
home = fixture_home()
p = Pipeline(AssistConfig(enabled=True)); p.language("en", home)
for t in ["turn on the kitchen ceiling light", "is the office fan on", "set the bedroom floor lamp to 40%"]:
    p.recognize(t, "en", home)
gc.collect(); print(before, rss())
"""


def memory(rounds: int) -> bool:
    deltas = []
    for _ in range(rounds):
        out = subprocess.run([sys.executable, "-c", MEMORY], capture_output=True, text=True, timeout=120,
                             cwd=os.getcwd())
        if out.returncode:
            print(out.stderr, file=sys.stderr)
            return False
        before, after = map(float, out.stdout.split())
        deltas.append((before, after))
    print(f"\nMemory, English loaded and warmed (templates, shapes), {rounds} fresh processes:")
    for before, after in deltas:
        print(f"  bridge without assist {before:.1f} MB -> with English {after:.1f} MB: +{after - before:.1f} MB")
    print(f"median extra {statistics.median(a - b for b, a in deltas):.1f} MB (target <= 40 MB)")
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["accuracy", "corpus", "refusals", "latency", "e2e", "memory"])
    ap.add_argument("--utterances", type=int, default=2000, help="latency: how many")
    ap.add_argument("--e2e-utterances", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3, help="memory: fresh processes")
    ap.add_argument("--nagle", action="store_true", help="e2e: Mosquitto's default config (Nagle on)")
    args = ap.parse_args()
    ok = True
    if args.only in (None, "accuracy"):
        ok &= accuracy()
    if args.only in (None, "corpus"):
        ok &= corpus()
    if args.only in (None, "refusals"):
        ok &= refusal_cost()
    if args.only in (None, "latency"):
        ok &= latency(args.utterances)
    if args.only in (None, "e2e"):
        ok &= e2e(args.e2e_utterances, args.nagle)
    if args.only in (None, "memory"):
        ok &= memory(args.rounds)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
