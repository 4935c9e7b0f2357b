"""Assist as an extension: utterances in on `<base>/assist/utterance`, answers out, intents acted on.

Every utterance is handled on this extension's inbox: parsed (fail closed), recognized
(pipeline.py), acted on through the service registry (handlers.py), then answered on
`<base>/assist/response` (and the MQTT 5 Response Topic with its Correlation Data) and
announced on `<base>/assist/intent/<Intent>` for automations. With a share group the
utterance topic is subscribed through `$share/<group>/`, so one bridge answers each one.
The home the recognizers name is rebuilt beside the current one when entities, areas or node
rooms change, and swapped in between two utterances.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from typing import Any

from bridge.assist import hermes
from bridge.assist.agent import AgentRunner
from bridge.assist.config import AssistConfig
from bridge.assist.handlers import ACTIONS, Handlers, Outcome
from bridge.assist.home import NAMEABLE, build_home, key
from bridge.assist.messages import Utterance, UtteranceError, parse_utterance, response
from bridge.assist.pipeline import QUERIES, Pipeline
from bridge.assist.speech import Speech
from bridge.assist.templates import Recognition
from bridge.core.payload import dumps
from bridge.core.directory import NodeChange
from bridge.core.eventdata import StateChanged
from bridge.core.reply import answer
from bridge.core.rooms import rooms
from bridge.core.services import CALL_TIMEOUT
from bridge.extension import Extension, ExtensionContext
from bridge.mqtt.router import Message

log = logging.getLogger(__name__)

HOME_REBUILD_DELAY = 0.2  # seconds: a burst of discovery configs makes one new home, not fifty
AGENT_SLOTS = frozenset({"name", "area", "floor", "domain", "device_class", "brightness", "color", "state"})


class AssistExtension(Extension[AssistConfig]):
    name = "assist"
    Config = AssistConfig

    def start(self, ctx: ExtensionContext[AssistConfig]) -> None:
        self.ctx, self.cfg = ctx, ctx.config
        if "semantic_threshold" in self.cfg.model_fields_set:
            log.warning("assist.semantic_threshold is set but no longer used: the fallback acts only when every "
                        "word is placed, with no score (docs/assist.md); remove it from the config")
        self.counts: Counter[str] = Counter()
        self.pipeline = Pipeline(self.cfg)
        self.speech = Speech(self.pipeline.responses)
        self.handlers = Handlers(self.speech, lambda domain, service, data: ctx.call_service(
                                     domain, service, data).answer(CALL_TIMEOUT), ctx.states.get, ctx.events.fire,
                                 lambda: rooms(ctx.nodes.all()))
        self._rooms: tuple[str, ...] = tuple(sorted(rooms(ctx.nodes.all())))
        self.home = build_home(ctx.states.all(), self._rooms)
        self._rebuild_pending = False
        self._pending: dict[str, tuple[Utterance, Message | None, float, dict | None, str | None]] = {}
        self._custom_intents = {e.intent for e in self.cfg.custom}
        ctx.listen(StateChanged, self._on_state_changed)  # before loading: no change is missed meanwhile
        ctx.nodes.watch(self._on_node, states=False)
        for code in self.cfg.all_languages():  # loaded and warmed now, not on someone's first sentence
            self.pipeline.language(code, self.home)
        self._schedule_rebuild()
        self.agent = AgentRunner(ctx, self.cfg.agent, self._on_agent_answer)
        self.agent.start()
        t = ctx.topics
        ctx.mqtt.subscribe(t.shared(t.assist_utterance), self._on_utterance, accept_retained=False)
        if self.cfg.hermes:
            ctx.mqtt.subscribe(t.shared(hermes.QUERY), self._on_hermes, accept_retained=False)
        ctx.add_info("assist", lambda: {"languages": sorted(self.pipeline.languages),
                                        "hermes": self.cfg.hermes, "agent": self.agent.transport})
        ctx.add_health("assist", self._health)

    def stop(self) -> None:
        self.agent.stop()

    def _health(self) -> dict[str, Any]:
        shapes = {code: {"hits": lang.templates.hits, "misses": lang.templates.misses}
                  for code, lang in self.pipeline.languages.items()}
        return {**self.counts, "entities": len(self.home.entities), "areas": len(self.home.areas),
                "shapes": shapes, "agent_restarts": self.agent.restarts, "agent_pending": len(self._pending)}

    # ------------------------------------------------------------ the home

    def _on_state_changed(self, change: StateChanged) -> None:
        old, new = change.old_state, change.new_state
        domain = change.entity_id.split(".", 1)[0]
        if domain not in NAMEABLE:
            return
        if old is not None and new is not None and _naming(old) == _naming(new):
            return  # a state value changed, not a name, area or class
        self._schedule_rebuild()

    def _on_node(self, change: NodeChange) -> None:
        if not change.identity_changed:
            return  # a node's state, published every few seconds: its room is what it was
        now = tuple(sorted(rooms(self.ctx.nodes.all())))
        if now != self._rooms:
            self._rooms = now
            self._schedule_rebuild()

    def _schedule_rebuild(self) -> None:
        if not self._rebuild_pending:
            self._rebuild_pending = True
            self.ctx.call_later(HOME_REBUILD_DELAY, self._rebuild)

    def _rebuild(self) -> None:
        self._rebuild_pending = False
        home = build_home(self.ctx.states.all(), self._rooms)
        if home.fingerprint() != self.home.fingerprint():
            self.home = home
            self.counts["home_rebuilds"] += 1

    # ------------------------------------------------------------ utterances

    def _on_utterance(self, msg: Message) -> None:
        started = time.perf_counter()
        self.counts["utterances"] += 1
        try:
            u = parse_utterance(msg.payload)
        except UtteranceError as exc:
            self._refuse(exc.utterance, msg, started, str(exc))
            return
        try:
            self._understand(u, msg, started)
        except LookupError as exc:
            self._refuse(u, msg, started, str(exc))

    def _understand(self, u: Utterance, msg: Message | None, started: float, hermes_keep: dict | None = None) -> None:
        """Recognize, then act and answer (or ask the agent); LookupError for a language we cannot load."""
        language = u.language or self.cfg.language
        area = self.cfg.satellites.get(u.site_id or "")
        understood = self.pipeline.understand(u.text, language, self.home, area,
                                              _conversation(u, hermes_keep is not None))
        if understood.refusal is not None:
            self._publish(u, language, [], [self.handlers.refused(language, understood.refusal, understood.detail)],
                          msg, started, hermes_keep, understood.refusal)
            return
        if u.dry_run and msg is not None:
            self._would(u, language, understood.recognitions, msg, started)
            return
        if not understood.recognitions and self.agent.configured:
            self._ask_agent(u, language, msg, started, hermes_keep, understood.form)
            return
        self._finish(u, language, understood.recognitions, msg, started, hermes_keep)

    def _would(self, u: Utterance, language: str, recs: list[Recognition], msg: Message, started: float) -> None:
        """A dry run: what the sentence was understood as and the service calls it would make, none
        made (no intent event, no follow-up, no agent). response_type "dry_run"; data.would lists the
        calls, or data.code says why nothing would be done."""
        would: list[dict[str, Any]] = []
        problem: Outcome | None = None if recs else self.handlers.error(language, "no_intent_match", "no_intent")
        for rec in recs:
            if rec.intent not in ACTIONS:
                continue  # a question or an own intent changes nothing
            plan = self.handlers.plan(rec, self.home, self.cfg.satellites.get(u.site_id or ""))
            if isinstance(plan, Outcome):
                problem = problem or plan
                continue
            would += [{"service": f"{c.domain}.{c.service}", "entity_id": c.entity.entity_id, "name": c.entity.name,
                       "data": dict(c.data)} for c in plan.calls]
        data: dict[str, Any] = {"would": [] if problem else would, "targets": [], "success": [], "failed": []}
        if problem is not None:
            data["code"] = problem.code
        intents = [{"name": r.intent, "slots": r.slots, "recognizer": r.recognizer} for r in recs]
        answer(self.ctx.mqtt, msg, self.ctx.topics.assist_response, response(
            u, language=language, response_type="error" if problem else "dry_run",
            speech=problem.speech if problem else "", intent=intents[0] if intents else None, data=data,
            elapsed_ms=(time.perf_counter() - started) * 1e3, intents=intents))

    def _refuse(self, u: Utterance | None, msg: Message, started: float, problem: str) -> None:
        self.counts["refused"] += 1
        language = (u.language if u and u.language else None) or self.cfg.language
        body = response(u, language=language, response_type="error",
                        speech=self.speech.own(language, "invalid", error=problem), intent=None,
                        data={"code": "invalid_utterance", "error": problem, "targets": [], "success": [],
                              "failed": []},
                        elapsed_ms=(time.perf_counter() - started) * 1e3)
        answer(self.ctx.mqtt, msg, self.ctx.topics.assist_response, body)

    def _finish(self, u: Utterance, language: str, recs: list[Recognition], msg: Message | None,
                started: float, hermes_keep: dict | None = None) -> None:
        if not recs:
            self.counts["not_understood"] += 1
            outcome = self.handlers.error(language, "no_intent_match", "no_intent")
            self._publish(u, language, [], [outcome], msg, started, hermes_keep)
            return
        outcomes = self.handlers.handle_all(recs, self.home, self.cfg.satellites.get(u.site_id or ""))
        if len(outcomes) != len(recs):  # one part could not be done, or the parts contradict: none was
            self._publish(u, language, [], outcomes, msg, started, hermes_keep, "not_done")
            return
        for rec in recs:
            self.counts[f"recognized_{rec.recognizer.split('+')[0]}"] += 1
        self._publish(u, language, recs, outcomes, msg, started, hermes_keep)

    def _publish(self, u: Utterance, language: str, recs: list[Recognition], outcomes: list[Outcome],
                 msg: Message | None, started: float, hermes_keep: dict | None, reason: str | None = None) -> None:
        errors = [o for o in outcomes if o.response_type == "error"]
        kind = "error" if errors else ("query_answer" if any(o.response_type == "query_answer" for o in outcomes)
                                       else "action_done")
        speech = " ".join(o.speech for o in outcomes if o.speech)
        data: dict[str, Any] = {"targets": [t for o in outcomes for t in o.targets],
                                "success": [t for o in outcomes for t in o.success],
                                "failed": [t for o in outcomes for t in o.failed]}
        if errors:
            data["code"] = errors[0].code
        if reason is not None:
            data["reason"] = reason  # why nothing was done: a form verdict (docs/assist.md), unplaced, ...
        intents = [{"name": r.intent, "slots": r.slots, "recognizer": r.recognizer} for r in recs]
        body = response(u, language=language, response_type=kind, speech=speech,
                        intent=intents[0] if intents else None, data=data,
                        elapsed_ms=(time.perf_counter() - started) * 1e3, intents=intents)
        for rec, outcome in zip(recs, outcomes):
            if outcome.response_type == "error":
                continue  # an automation on ruview/assist/intent/<Intent> hears only what was done
            self.ctx.mqtt.publish(self.ctx.topics.assist_intent(rec.intent), dumps({
                "intent": rec.intent, "slots": rec.slots, "recognizer": rec.recognizer, "text": u.text,
                "language": language, "id": u.id, "site_id": u.site_id, "conversation_id": u.conversation_id,
                "response_type": outcome.response_type,
                "targets": [t["id"] for t in outcome.success]}), qos=1)
        self.counts[kind] += 1
        if not errors and recs:
            # a follow-up continues what was done
            self.pipeline.conversations.put(_conversation(u, hermes_keep is not None), recs[-1])
        if hermes_keep is not None:
            self._hermes_out(u, [] if errors else recs, speech, hermes_keep)  # Rhasspy acts on hermes/intent/*
        elif msg is not None:
            answer(self.ctx.mqtt, msg, self.ctx.topics.assist_response, body)

    # ------------------------------------------------------------ the agent runner

    def _ask_agent(self, u: Utterance, language: str, msg: Message | None, started: float,
                   hermes_keep: dict | None = None, form: str | None = None) -> None:
        request_id = uuid.uuid4().hex
        self._pending[request_id] = (u, msg, started, hermes_keep, form)
        sent = self.agent.ask({"id": request_id, "text": u.text, "language": language,
                               "site_id": u.site_id, "home": self.home.context()})
        if not sent:
            self._agent_failed(request_id, "the agent is not running")
            return
        self.ctx.call_later(self.cfg.agent.timeout, lambda: self._agent_failed(request_id, "timeout"))

    def _agent_failed(self, request_id: str, why: str) -> None:
        pending = self._pending.pop(request_id, None)
        if pending is None:
            return
        self.counts["agent_failed"] += 1
        u, msg, started, keep, _form = pending
        language = u.language or self.cfg.language
        outcome = self.handlers.error(language, "no_intent_match", "no_intent")
        if why == "timeout":
            outcome.speech = self.speech.own(language, "agent_timeout")
        self._publish(u, language, [], [outcome], msg, started, keep)

    def _on_agent_answer(self, body: dict[str, Any]) -> None:
        request_id = body.get("id")
        pending = self._pending.pop(request_id, None) if isinstance(request_id, str) else None
        if pending is None:
            return  # late (already answered as a timeout) or another bridge's
        u, msg, started, keep, form = pending
        language = u.language or self.cfg.language
        rec = self._agent_intent(body.get("intent"), language, u)
        if rec is not None and form is not None and rec.intent not in QUERIES:
            # the agent too may only act on a command: "did I turn on the light?" is answered, not done
            self._publish(u, language, [], [self.handlers.refused(language, form)], msg, started, keep, form)
            return
        self._finish(u, language, [rec] if rec is not None else [], msg, started, keep)

    def _agent_intent(self, intent: Any, language: str, u: Utterance) -> Recognition | None:
        """The agent's intent if it is one we act on, with plain slots; targets are checked by the handler."""
        if not isinstance(intent, dict) or not isinstance(intent.get("name"), str):
            return None
        name, slots = intent["name"], intent.get("slots") or {}
        if not (self.handlers.handles(name) or name in self._custom_intents) or not isinstance(slots, dict):
            return None
        if not all(k in AGENT_SLOTS and isinstance(v, (str, int, float)) and not isinstance(v, bool)
                   for k, v in slots.items()):
            return None
        return Recognition(name, dict(slots), "agent", language, words=key(u.text).split())

    # ------------------------------------------------------------ Hermes

    def _on_hermes(self, msg: Message) -> None:
        started = time.perf_counter()
        self.counts["hermes_queries"] += 1
        try:
            u, keep = hermes.parse_query(msg.payload)
        except UtteranceError as exc:
            self.ctx.mqtt.publish(hermes.ERROR, dumps({"error": str(exc), "siteId": "default", "context": None,
                                                       "sessionId": None}), qos=1)
            return
        try:
            self._understand(u, None, started, keep)
        except LookupError as exc:
            self.ctx.mqtt.publish(hermes.ERROR, dumps({"error": str(exc), "siteId": keep["siteId"],
                                                       "sessionId": keep.get("sessionId")}), qos=1)

    def _hermes_out(self, u: Utterance, recs: list[Recognition], speech: str, keep: dict) -> None:
        publish = self.ctx.mqtt.publish
        if recs:
            for rec in recs:
                body = dumps(hermes.parsed(rec, u.text, keep))
                publish(hermes.PARSED, body, qos=1)
                publish(hermes.intent_topic(rec.intent), body, qos=1)
        else:
            publish(hermes.NOT_RECOGNIZED, dumps(hermes.not_recognized(u.text, keep)), qos=1)
        if isinstance(keep.get("sessionId"), str):
            publish(hermes.END_SESSION, dumps(hermes.end_session(keep["sessionId"], speech, keep)), qos=1)


def _conversation(u: Utterance, hermes_session: bool = False) -> str | None:
    """A conversation is one satellite's: another site (or client) naming the same id starts its own,
    and a Hermes session is never an utterance's conversation."""
    if not u.conversation_id:
        return None
    return "\x00".join(("hermes" if hermes_session else "assist", u.site_id or "", u.conversation_id))


def _naming(state) -> tuple:
    a = state.attributes
    return (a.get("friendly_name"), a.get("area"), a.get("floor"), a.get("device_class"))
