"""docs/mqtt-api.md's topic tables are the code's topics, both ways, so the contract cannot drift.

The code's topics are every topic and filter the Topics class (bridge/topics.py, the one home
for our topic names) can build, found by introspection so that a new method or attribute is
caught, and Rhasspy's topics in bridge/assist/hermes.py. The documented ones are the `ruview/…`
and `hermes/…` topics in the first column of the page's tables; each `<placeholder>` stands for
one topic level (`<verb>` for one or more: `node/rename`). Every topic the code builds must
match a documented row, and every documented row must match a topic the code builds.
"""

from __future__ import annotations

import inspect
import itertools
import pathlib
import re

import pytest

from bridge import names
from bridge.assist import hermes
from bridge.topics import Topics

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "mqtt-api.md"
BASE = Topics().base  # the default, `ruview`, which the page uses throughout
NODE = "hall-2"  # a node name with a `-`, which its entity ids spell `_`
MULTI_LEVEL = {"verb"}  # request verbs may have levels of their own: node/rename, plugin/list

# a sample for each parameter a topic builder takes; a builder with another parameter fails the
# test until it has one here (and, most likely, a row in docs/mqtt-api.md)
SAMPLES = {
    "verb": ["health_check", "node/rename"],
    "entity_id": ["light.kitchen", *(names.node_entity_id("binary_sensor", NODE, key)
                                     for key in ("presence", "occupancy", "motion"))],
    "event_type": ["node_joined"],
    "domain": ["light"],
    "service": ["turn_on"],
    "name": [NODE],
    "intent": ["HassTurnOn"],
}
# Topics members that are not topics: what it was built from, and helpers that read a topic
NOT_TOPICS = {
    "base", "instance", "share_group",
    "shared",  # wraps a filter in $share/<group>/ (the filter itself is checked)
    "request_verb", "suffix",  # read an incoming topic
}
LAYOUTS = {"one bridge": Topics(BASE),
           "a share group": Topics(BASE, instance="attic", share_group="bridges")}


def _first_cell(row: str) -> str:
    return re.split(r"(?<!\\)\|", row)[1]


def documented() -> list[str]:
    """Every `ruview/…` or `hermes/…` topic in the first column of a table on the page."""
    found = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("|") and not re.fullmatch(r"[|\-: ]+", line):
            found += [t for t in re.findall(r"`([^`]+)`", _first_cell(line))
                      if t.startswith((f"{BASE}/", "hermes/"))]
    return found


def pattern(topic: str) -> re.Pattern[str]:
    """A documented topic as a regex: a `<placeholder>` is one level (`<verb>` one or more)."""
    out = ""
    for i, part in enumerate(re.split(r"<([^<>/]+)>", topic)):
        if i % 2 == 0:
            out += re.escape(part)
        else:
            out += r"[^/+#]+(?:/[^/+#]+)*" if part in MULTI_LEVEL else r"[^/+#]+"
    return re.compile(out)


def _calls(member: str, fn) -> list[tuple[str, tuple, dict]]:
    """Every sample call of a builder: (label, args, kwargs)."""
    params = [p for p in inspect.signature(fn).parameters.values() if p.name != "self"]
    choices = []
    for p in params:
        if p.kind is p.KEYWORD_ONLY and p.annotation in (bool, "bool"):
            choices.append([(p, False), (p, True)])
        elif p.name in SAMPLES:
            choices.append([(p, value) for value in SAMPLES[p.name]])
        else:
            pytest.fail(f"{member} builds a topic from {p.name!r}: give it a sample in "
                        "SAMPLES (and document the topic in docs/mqtt-api.md)")
    calls = []
    for combo in itertools.product(*choices):
        args = tuple(v for p, v in combo if p.kind is not p.KEYWORD_ONLY)
        kwargs = {p.name: v for p, v in combo if p.kind is p.KEYWORD_ONLY}
        calls.append((f"{member}{args}{kwargs or ''}", args, kwargs))
    return calls


def _concrete(topic: str) -> str:
    """A filter as a topic it matches (`+` and `#` as one level), for the comparison."""
    return "/".join("x" if level in ("+", "#") else level for level in topic.split("/"))


def built() -> list[tuple[str, str, str]]:
    """(topic, member, call): every topic and filter the code can produce for the samples."""
    out = []
    for layout, topics in LAYOUTS.items():
        for name, value in inspect.getmembers(topics):
            if name.startswith("_") or name in NOT_TOPICS or value is None:
                continue  # None: a filter that only exists in the other layout
            if isinstance(value, str):
                out.append((_concrete(value), f"Topics.{name}", f"Topics.{name} ({layout})"))
            elif callable(value):
                for call, args, kwargs in _calls(f"Topics.{name}", value):
                    out.append((_concrete(value(*args, **kwargs)), f"Topics.{name}", f"{call} ({layout})"))
            else:
                pytest.fail(f"Topics.{name} is a {type(value).__name__}: a topic, a builder, or in NOT_TOPICS?")
    for name, value in vars(hermes).items():
        if isinstance(value, str) and value.startswith("hermes/"):
            out.append((value, f"hermes.{name}", f"hermes.{name}"))
        elif inspect.isfunction(value) and value.__module__ == hermes.__name__ and name.endswith("_topic"):
            for call, args, kwargs in _calls(f"hermes.{name}", value):
                out.append((value(*args, **kwargs), f"hermes.{name}", call))
    return out


def test_the_page_has_topic_tables_to_compare():
    docs = documented()
    assert len(docs) > 20
    assert len(docs) == len(set(docs)), "a topic is documented twice"
    assert not [t for t in docs if "…" in t or "|" in t], "a documented topic must be written out in full"


def test_every_topic_the_code_builds_is_documented():
    patterns = [pattern(t) for t in documented()]
    missing = [(topic, call) for topic, _, call in built() if not any(p.fullmatch(topic) for p in patterns)]
    assert missing == [], "topics the code builds that docs/mqtt-api.md's tables do not list"


def test_every_documented_topic_is_one_the_code_builds():
    topics = [topic for topic, _, _ in built()]
    stale = [doc for doc in documented() if not any(pattern(doc).fullmatch(t) for t in topics)]
    assert stale == [], "topics docs/mqtt-api.md lists that the code does not build"


def test_every_member_of_topics_is_compared():
    """The introspection sees all of Topics (so a new builder is compared, not skipped) and Hermes."""
    members = {n for n, _ in inspect.getmembers(Topics(BASE)) if not n.startswith("_")} - NOT_TOPICS
    compared = {member for _, member, _ in built()}
    assert {f"Topics.{n}" for n in members} <= compared
    assert {"hermes.QUERY", "hermes.PARSED", "hermes.NOT_RECOGNIZED", "hermes.END_SESSION", "hermes.ERROR",
            "hermes.intent_topic"} <= compared
