"""One loaded plugin: its instance, its worker, its host imports, its crashes.

Everything a plugin does runs on its own inbox (one worker thread, a bounded queue whose
overflow is dropped and counted), so a plugin that loops until its deadline stalls only itself.
Each host import pays from the plugin's call budget first (a denied call too), then checks the
plugin's permissions and bounds before it touches anything; a denial answers -3, is counted,
audited (repeats of the same denial within AUDIT_WINDOW coalesce into one record with a count),
and said on `ruview/plugin/<domain>/audit`. What others send the plugin — a state, an event, an
MQTT message, a service call — that is over abi.MAX_BUFFER is dropped and counted by its source,
never delivered and never the plugin's crash. A call that traps,
runs out of fuel or past its deadline ends that call: the instance is dropped (its memory may be
half-written) and made again after a backoff; after `max_crashes` within `crash_window` the
plugin is disabled until it is reloaded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Callable

import orjson
import wasmtime

from bridge import names
from bridge.core.bus import Subscription
from bridge.core.eventdata import StateChanged
from bridge.core.rate import TokenBucket
from bridge.topics import InvalidTopic, check_filter, check_topic
from bridge.plugins import abi
from bridge.plugins.manifest import Manifest
from bridge.plugins.permissions import Permissions
from bridge.plugins.runtime import DeliveryTooLarge, Instance, PluginTrap, Runtime, as_plugin_trap

log = logging.getLogger(__name__)

BACKOFF_FIRST, BACKOFF_MAX = 1.0, 60.0  # seconds before re-instantiating after a crash
AUDIT_WINDOW = 10.0  # seconds: the same denial again within this is counted, not recorded again
AUDIT_KEYS = 256  # distinct denials tracked at once; past that, they coalesce under one key
REASON_MAX = 1000  # characters of a reason in a status or an audit record
# A plugin's worker and what fills its queue (bridge/core/inbox.py). While events stream in, the
# worker looks for more every LINGER seconds instead of sleeping until woken: waking it cost paho's
# network thread a wake-up call and a context switch per message (12 % of that thread at 10,000
# messages/s, py-spy). bench/wasm_plugins.py, bridge CPU per MQTT message: 112-122 µs woken each
# time, 95-102 µs looking every 0.5 ms, 92-99 µs every 2 ms; 1 ms is the middle, and the most an
# event waits for the next look.
LINGER = 0.001
# Back-pressure: a put that finds the queue full waits for room while the plugin's calls cost at
# most FAST_CALL of CPU each. Such a plugin keeps up with MQTT (50 µs is 20,000 events/s, about
# what paho itself takes at QoS 0 on the development machine); its queue fills only when its worker
# was out-run for a moment (by the putting thread and the others, for the GIL), and the wait gives
# it that moment instead of dropping. The wait ends when the plugin finished no call while the
# bridge had PATIENCE seconds of CPU (a garbage collection holds every thread: with 60,000 QoS 1
# publishes queued in paho, 0.1 s was not enough; a machine busy with other processes gives the
# bridge no CPU, and so does not count), and after WAIT_CAP seconds in all; then no more waits until
# it has worked its queue down to half. A slower plugin is never waited for: it drops (counted once)
# and cannot pace the network thread.
PATIENCE = 0.25
WAIT_CAP = 1.0
FAST_CALL = 50e-6
WATCHED = 4096  # entity ids whose "is it one of mine?" answer is remembered (cleared when full)


@dataclass
class Counters:
    events: int = 0
    dropped: int = 0
    denied: int = 0
    bad_pointers: int = 0
    rate_limited: int = 0
    host_calls: int = 0
    crashes: int = 0
    fuel: int = 0
    subscriptions_refused: int = 0
    retained_refused: int = 0
    oversize: dict[str, int] = field(default_factory=dict)  # source -> deliveries dropped as too large


@dataclass
class HostServices:
    """The narrow parts of the bridge a plugin's imports reach (given by the extension)."""

    get_state: Callable[[str], dict[str, Any] | None]
    set_state: Callable[[str, str, dict[str, Any]], None]
    fire_event: Callable[[str, dict[str, Any]], None]
    call_service: Callable[[str, str, dict[str, Any]], Future[Any]]  # queued on the service's inbox
    register_entity: Callable[[str, dict[str, Any]], None]  # (plugin domain, config)
    publish: Callable[[str, bytes, int, bool], bool]
    reserved: Callable[[str], str | None]  # the reserved prefix a topic lies under (permissions.py), if any
    subscribe: Callable[["Plugin", str], None]
    publish_status: Callable[["Plugin"], None]
    audit: Callable[..., None]  # (plugin, action, **detail)
    schedule: Callable[[float, Callable[[], None]], Any]  # run later on the extension's inbox
    new_inbox: Callable[[str, int], Any]
    close_inbox: Callable[[Any], None]
    config_entry: Callable[[Manifest], dict[str, Any]]
    max_crashes: int = 5
    crash_window: float = 300.0
    backoff: float = BACKOFF_FIRST
    local_only: bool = False  # with a share group: only the changes this bridge made (origin LOCAL)


class Plugin:
    def __init__(self, directory: Path, manifest: Manifest, module: wasmtime.Module, runtime: Runtime,
                 services: HostServices, *, trust: str, compiled: str) -> None:
        self.directory, self.manifest, self.module, self.runtime = directory, manifest, module, runtime
        self.domain = manifest.domain
        self.services = services
        self.trust, self.compiled = trust, compiled
        self.permissions = Permissions(manifest.homecore_permissions)
        self.counters = Counters()
        self.state: str = "stopped"
        self.reason: str | None = None
        self.disabled = False
        self.started_ms: float | None = None
        self._instance: Instance | None = None
        self._crash_times: deque[float] = deque()
        self._backoff = services.backoff
        self._bucket = TokenBucket(manifest.limits.host_calls_per_s)
        self.inbox = services.new_inbox(f"plugin-{self.domain}", manifest.limits.queue)
        self.inbox.linger, self.inbox.fast_call = LINGER, FAST_CALL
        self.inbox.patience, self.inbox.wait_cap = PATIENCE, WAIT_CAP
        self.subscriptions: list[str] = []
        self.retained: set[str] = set()  # topics it published retained (capped: limits.retained_topics)
        self.retired = False  # unloaded or replaced: nothing it still does may speak for the domain
        self._denials: dict[tuple[str, str], tuple[float, int]] = {}  # (kind, subject) -> (window start, repeats)
        self._watched: dict[str, bool] = {}  # entity id -> its changes are for this plugin
        self.state_changes: Subscription | None = None  # its place on the bus (the extension subscribes it)

    # ------------------------------------------------------------ lifecycle (queued on the plugin's worker)

    def start(self, done: threading.Event | None = None) -> None:
        """Queue the start on the plugin's worker. Until it has run the plugin is `starting`: a
        service call then waits in the inbox behind it, so the services can be registered before
        the plugin says it is running."""
        if not self.disabled:
            self.state = "starting"
        self.inbox.put(self._start, done)

    def _start(self, done: threading.Event | None) -> None:
        try:
            if self.disabled or self.retired:
                return
            began = time.perf_counter()
            limits = self.manifest.limits
            try:
                self._instance = Instance(self.runtime, self.module, self._imports(),
                                          memory_bytes=limits.memory_mb << 20, table_elements=limits.table_elements,
                                          fuel=limits.fuel_per_call, time_ms=limits.time_per_call_ms)
            except wasmtime.Trap as trap:  # its start function: say why (fuel, time, the trap)
                self._crashed(as_plugin_trap(trap), "instantiate")
                return
            except (wasmtime.WasmtimeError, ValueError) as exc:
                self._crashed(PluginTrap(f"cannot instantiate: {str(exc).splitlines()[0]}", "trap"), "instantiate")
                return
            except PluginTrap as trap:
                self._crashed(trap, "instantiate")
                return
            self.started_ms = (time.perf_counter() - began) * 1000
            entry = orjson.dumps(self.services.config_entry(self.manifest))
            code = self._call("setup_entry", entry)
            if code is None:
                return
            if code < 0:  # it said no: not running, and not a crash to retry
                self._instance = None
                self.state = "failed"
                self.reason = f"setup_entry answered {code} ({abi.CODES.get(code, 'its own error code')})"
                log.error("plugin %s: %s", self.domain, self.reason)
                self.services.publish_status(self)
                return
            self.state, self.reason = "running", None
            self.services.publish_status(self)
        finally:
            if done is not None:
                done.set()

    def stop(self, reason: str = "unloaded") -> None:
        """Tear down (teardown export, if any) and stop the worker (waits for it, up to 2 s: a
        call still running after that ends on its own, and is no longer this domain's voice)."""
        self.retired = True
        self.inbox.put(self._flush_denials)
        self.inbox.put(self._teardown)
        self.services.close_inbox(self.inbox)
        self.state, self.reason = "stopped", reason

    def _teardown(self) -> None:
        if self._instance is not None and "teardown" in self._instance.calls:
            try:
                self._instance.call("teardown")
            except PluginTrap as trap:
                log.info("plugin %s: teardown %s", self.domain, trap)
        self._instance = None

    # ------------------------------------------------------------ events in

    def deliver(self, event_type: str, data: bytes, source: str) -> None:
        """Queue an event for receive_event; a full queue drops it, after a wait for room if the
        plugin is fast (PATIENCE, FAST_CALL), counted once: here, by the router for its MQTT messages
        (the extension adds those), by the bus for its state changes (`states_dropped`)."""
        if len(data) > abi.MAX_BUFFER:
            self.oversized(source)
            return
        if self.state != "running":
            self.counters.dropped += 1  # crashed and waiting to restart, or disabled
            return
        if not self.inbox.put(self._receive, event_type.encode(), data):
            self.counters.dropped += 1

    def wants(self, change: StateChanged) -> bool:
        """Is this change for it: an entity it subscribed to and may read (and, with a share group,
        made here)? Run by the bus on the writer's thread, so a change it does not want never takes
        a place in its queue; reads only the manifest and a cache of answers (a bridge writes the
        same entities again and again)."""
        if self.services.local_only and change.origin != "LOCAL":
            return False
        mine = self._watched.get(change.entity_id)
        if mine is None:
            entity_id = change.entity_id
            mine = self.permissions.allows("state:read", entity_id) and \
                any(fnmatchcase(entity_id, g) for g in self.manifest.subscribed_state_entities)
            if len(self._watched) >= WATCHED:
                self._watched.clear()
            self._watched[entity_id] = mine
        return mine

    @property
    def states_dropped(self) -> int:
        """State changes for it that its full queue refused (counted by the bus as it put them)."""
        return self.state_changes.dropped if self.state_changes is not None else 0

    def on_state_changed(self, change: StateChanged) -> None:
        """On this plugin's inbox, one hop from whoever wrote the state (a writer that fills the queue
        of a plugin that keeps up waits for room, PATIENCE): into receive_event."""
        self.receive_now(b"state_changed", change.json, "state")

    def receive_now(self, event_type: bytes, data: bytes, source: str) -> None:
        """On this plugin's inbox already (its MQTT messages and state changes are delivered there)."""
        if len(data) > abi.MAX_BUFFER:
            self.oversized(source)
        elif self.state != "running":
            self.counters.dropped += 1
        else:
            self._receive(event_type, data)

    def oversized(self, source: str) -> None:
        """A delivery over the limit: the sender's fault, counted by where it came from."""
        self.counters.oversize[source] = self.counters.oversize.get(source, 0) + 1

    def _receive(self, event_type: bytes, data: bytes) -> None:
        if self._instance is not None:
            self.counters.events += 1
            self._call("receive_event", event_type, data)

    def call_service(self, service: str, data: dict[str, Any]) -> bool:
        """Queue a call of one of its services; False when it is too large or the queue is full."""
        body = orjson.dumps(data)
        if len(body) > abi.MAX_BUFFER:
            self.oversized("service")
            return False
        if not self.inbox.put(self._service, service.encode(), body):
            self.counters.dropped += 1
            return False
        return True

    def _service(self, service: bytes, data: bytes) -> None:
        if self._instance is not None:
            self._call("call_service_handler", self.domain.encode(), service, data)

    def _call(self, export: str, *buffers: bytes) -> int | None:
        """What the export answered, or None when it did not return (a crash) or was not called."""
        instance = self._instance
        if instance is None:
            return None
        try:
            code = instance.call_with(export, *buffers)
            self.counters.fuel += instance.fuel_used()
            return code
        except DeliveryTooLarge:
            self.oversized(export)
            return None
        except PluginTrap as trap:
            self._crashed(trap, export)
            return None

    def _crashed(self, trap: PluginTrap, where: str) -> None:
        self._instance = None
        self.counters.crashes += 1
        if self.retired:  # a call that outlived its unload or reload: not this domain's news
            log.info("plugin %s (replaced): %s: %s", self.domain, where, trap)
            return
        now = time.monotonic()
        self._crash_times.append(now)
        while self._crash_times and now - self._crash_times[0] > self.services.crash_window:
            self._crash_times.popleft()
        reason = f"{where}: {trap}"[:REASON_MAX]
        self.services.audit(self.domain, "crash", kind=trap.kind, reason=reason)
        if len(self._crash_times) >= self.services.max_crashes:
            self.disabled = True
            self.state = "crashed"
            self.reason = (f"{reason}; disabled after {len(self._crash_times)} crashes within "
                           f"{self.services.crash_window:g} s (plugin/reload starts it again)")
            log.error("plugin %s: %s", self.domain, self.reason)
            self.services.audit(self.domain, "disable", reason=self.reason)
        else:
            self.state, self.reason = "crashed", f"{reason}; restarting in {self._backoff:g} s"
            log.warning("plugin %s: %s", self.domain, self.reason)
            delay, self._backoff = self._backoff, min(BACKOFF_MAX, self._backoff * 2)
            self.services.schedule(delay, lambda: self.start())
        self.services.publish_status(self)

    # ------------------------------------------------------------ host imports

    def _imports(self) -> dict[str, Callable[..., int]]:
        table: dict[str, Callable[..., int]] = {"hc_log": self.hc_log, "hc_state_get": self.hc_state_get, "hc_state_set": self.hc_state_set,
                 "hc_event_fire": self.hc_event_fire, "hc_service_call": self.hc_service_call,
                 "hc_entity_register": self.hc_entity_register, "hc_mqtt_publish": self.hc_mqtt_publish,
                 "hc_mqtt_subscribe": self.hc_mqtt_subscribe}
        used = {imp.name for imp in self.module.imports}
        return {name: fn for name, fn in table.items() if name in used}

    def _text(self, ptr: int, length: int) -> str | int:
        """The plugin's UTF-8 text at ptr, or BAD_POINTER / INVALID."""
        data = self._instance.read(ptr, length) if self._instance is not None else None
        if data is None:
            self.counters.bad_pointers += 1
            return abi.BAD_POINTER
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return abi.INVALID

    def _json(self, ptr: int, length: int) -> Any:
        """The plugin's JSON object at ptr (empty: {}), or BAD_POINTER / INVALID."""
        text = self._text(ptr, length) if length else "{}"
        if isinstance(text, int):
            return text
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            return abi.INVALID
        return value if isinstance(value, dict) else abi.INVALID

    def _deny(self, kind: str, subject: str) -> int:
        """Count it; the first of a kind and subject in AUDIT_WINDOW is audited, the repeats are
        said as one record with their count when the next window opens."""
        self.counters.denied += 1
        now = time.monotonic()
        key = (kind, subject[:256]) if len(self._denials) < AUDIT_KEYS else (kind, "*")
        began, repeats = self._denials.get(key, (0.0, 0))
        if now - began < AUDIT_WINDOW:
            self._denials[key] = (began, repeats + 1)
            return abi.DENIED
        if repeats:
            self.services.audit(self.domain, "deny", permission=kind, subject=key[1], repeated=repeats,
                                within_s=AUDIT_WINDOW)
        self._denials[key] = (now, 0)
        self.services.audit(self.domain, "deny", permission=kind, subject=key[1])
        return abi.DENIED

    def _flush_denials(self) -> None:
        for (kind, subject), (_, repeats) in self._denials.items():
            if repeats:
                self.services.audit(self.domain, "deny", permission=kind, subject=subject, repeated=repeats,
                                    within_s=AUDIT_WINDOW)
        self._denials.clear()

    def _allowed(self, kind: str, subject: str) -> bool:
        return self.permissions.allows(kind, subject)

    def _budget(self) -> bool:
        self.counters.host_calls += 1
        if self._bucket.take():
            return True
        self.counters.rate_limited += 1
        return False

    def _args(self, *pairs: tuple[int, int]) -> list[str] | int:
        out = []
        for ptr, length in pairs:
            text = self._text(ptr, length)
            if isinstance(text, int):
                return text
            out.append(text)
        return out

    def hc_log(self, level: int, ptr: int, length: int) -> int:
        if not self._budget():  # every call pays, a denied one too
            return abi.RATE_LIMITED
        text = self._args((ptr, length))
        if isinstance(text, int):
            return text
        log.log(level if level in (10, 20, 30, 40, 50) else 20, "plugin %s: %s", self.domain,
                text[0][:1000].replace("\n", " "))
        return abi.OK

    def hc_state_get(self, ptr: int, length: int, out: int, cap: int) -> int:
        if not self._budget():  # every call pays, a denied one too
            return abi.RATE_LIMITED
        args = self._args((ptr, length))
        if isinstance(args, int):
            return args
        entity_id = args[0]
        instance = self._instance
        if instance is None or out <= 0 or not instance.holds(out, cap):
            self.counters.bad_pointers += 1
            return abi.BAD_POINTER
        if not names.valid_entity_id(entity_id):
            return abi.INVALID
        if not self._allowed("state:read", entity_id):
            return self._deny("state:read", entity_id)
        state = self.services.get_state(entity_id)
        if state is None:
            return abi.NOT_FOUND
        data = orjson.dumps(state)
        if len(data) > cap:  # say how much it needs, in the buffer's first 4 bytes (little-endian)
            if cap >= 4:
                instance.write(out, len(data).to_bytes(4, "little"))
            return abi.BUFFER_TOO_SMALL
        if not instance.write(out, data):
            self.counters.bad_pointers += 1
            return abi.BAD_POINTER
        return len(data)

    def hc_state_set(self, ep: int, el: int, sp: int, sl: int, ap: int, al: int) -> int:
        if not self._budget():  # every call pays, a denied one too
            return abi.RATE_LIMITED
        args = self._args((ep, el), (sp, sl))
        if isinstance(args, int):
            return args
        entity_id, value = args
        attributes = self._json(ap, al)
        if isinstance(attributes, int):
            return attributes
        if not names.valid_entity_id(entity_id) or len(value) > 255:
            return abi.INVALID
        if not self._allowed("state:write", entity_id):
            return self._deny("state:write", entity_id)
        self.services.set_state(entity_id, value, attributes)
        return abi.OK

    def hc_event_fire(self, tp: int, tl: int, dp: int, dl: int) -> int:
        if not self._budget():  # every call pays, a denied one too
            return abi.RATE_LIMITED
        args = self._args((tp, tl))
        if isinstance(args, int):
            return args
        event_type, data = args[0], self._json(dp, dl)
        if isinstance(data, int):
            return data
        if not names.is_identifier(event_type):
            return abi.INVALID
        if not self._allowed("event:fire", event_type):
            return self._deny("event:fire", event_type)
        self.services.fire_event(event_type, {**data, "plugin": self.domain})
        return abi.OK

    def hc_service_call(self, dp: int, dl: int, sp: int, sl: int, datap: int, datal: int) -> int:
        if not self._budget():  # every call pays, a denied one too
            return abi.RATE_LIMITED
        args = self._args((dp, dl), (sp, sl))
        if isinstance(args, int):
            return args
        domain, service = args
        data = self._json(datap, datal)
        if isinstance(data, int):
            return data
        if not names.is_identifier(domain) or not names.is_identifier(service):
            return abi.INVALID
        if not self._allowed("service:call", f"{domain}.{service}"):
            return self._deny("service:call", f"{domain}.{service}")
        try:
            answer = self.services.call_service(domain, service, data)
        except LookupError:
            return abi.NOT_FOUND
        if answer.done() and answer.exception() is not None:  # refused at once: its inbox is full
            log.info("plugin %s: %s.%s failed: %s", self.domain, domain, service, answer.exception())
            return abi.FAILED
        answer.add_done_callback(lambda done: self._service_done(domain, service, done))
        return abi.OK

    def _service_done(self, domain: str, service: str, done: Future[Any]) -> None:
        if done.exception() is not None:
            log.info("plugin %s: %s.%s failed: %s", self.domain, domain, service, done.exception())

    def hc_entity_register(self, ptr: int, length: int) -> int:
        if not self._budget():  # every call pays, a denied one too
            return abi.RATE_LIMITED
        config = self._json(ptr, length)
        if isinstance(config, int):
            return config
        if not names.valid_entity_id(config.get("entity_id")) or \
                config["entity_id"].partition(".")[0] not in ("sensor", "binary_sensor"):
            return abi.INVALID  # a plugin announces states (sensor, binary_sensor), never commands
        if not self._allowed("entity:register", config["entity_id"]):
            return self._deny("entity:register", config["entity_id"])
        self.services.register_entity(self.domain, config)
        return abi.OK

    def hc_mqtt_publish(self, tp: int, tl: int, pp: int, pl: int, qos: int, retain: int) -> int:
        if not self._budget():  # every call pays, a denied one too
            return abi.RATE_LIMITED
        args = self._args((tp, tl))
        if isinstance(args, int):
            return args
        topic = args[0]
        payload = self._instance.read(pp, pl) if self._instance is not None else None
        if payload is None:
            self.counters.bad_pointers += 1
            return abi.BAD_POINTER
        try:
            check_topic(topic)
        except InvalidTopic:
            return abi.INVALID
        if qos not in (0, 1) or retain not in (0, 1):
            return abi.INVALID
        if not self.permissions.allows("mqtt:publish", topic, self.services.reserved(topic)):
            return self._deny("mqtt:publish", topic)
        if retain and topic not in self.retained:
            if len(self.retained) >= self.manifest.limits.retained_topics:  # the bridge keeps each one
                self.counters.retained_refused += 1
                return abi.FAILED
            self.retained.add(topic)
        return abi.OK if self.services.publish(topic, payload, qos, bool(retain)) else abi.FAILED

    def hc_mqtt_subscribe(self, ptr: int, length: int) -> int:
        if not self._budget():  # every call pays, a denied one too
            return abi.RATE_LIMITED
        args = self._args((ptr, length))
        if isinstance(args, int):
            return args
        topic_filter = args[0]
        try:
            check_filter(topic_filter)
        except InvalidTopic:
            return abi.INVALID
        if not self._allowed("mqtt:subscribe", topic_filter):
            return self._deny("mqtt:subscribe", topic_filter)
        if topic_filter not in self.subscriptions:
            if len(self.subscriptions) >= self.manifest.limits.subscriptions:  # each is a broker subscription
                self.counters.subscriptions_refused += 1
                return abi.FAILED
            self.subscriptions.append(topic_filter)
            self.services.subscribe(self, topic_filter)
        return abi.OK

    # ------------------------------------------------------------ what others see

    def status(self) -> dict[str, Any]:
        return {"state": self.state, "reason": self.reason[:REASON_MAX] if self.reason else None, **self.manifest.description(),
                "trust": self.trust, "directory": str(self.directory)}

    def health(self) -> dict[str, Any]:
        c = self.counters
        return {"state": self.state, "events": c.events, "dropped": c.dropped + self.states_dropped,
                "oversize": dict(c.oversize),
                "denied": c.denied, "bad_pointers": c.bad_pointers, "rate_limited": c.rate_limited,
                "host_calls": c.host_calls, "crashes": c.crashes, "fuel": c.fuel,
                "subscriptions": len(self.subscriptions), "subscriptions_refused": c.subscriptions_refused,
                "retained_topics": len(self.retained), "retained_refused": c.retained_refused,
                "queued": self.inbox.backlog}

