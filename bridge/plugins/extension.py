"""The plugin host as an extension: find, verify, load and supervise WASM plugins, and connect
them to the bridge's states, events, services and MQTT.

Loading a plugin directory, in this order: manifest (validated) -> module hash and signature
(trust.py, before anything is compiled) -> compile, or the compile cache -> imports and exports
against the ABI, imports against `host_imports_required` -> subscriptions, services and
dependencies against the manifest's permissions -> instantiate and `setup_entry` on the plugin's
own worker. A plugin that fails any step is `rejected` with the reason on its status topic.

Verifying and compiling run on the host's `loader` inbox, so a large module being compiled never
holds up events for the plugins already running; activation comes back to this inbox. One owner
per name: a plugin's domain may not be one the bridge or another feature uses (RESERVED_DOMAINS,
or any domain with services already registered), and a service name is never replaced.

With `bridge.share_group`, several bridges run the same plugins; each state change and event is
delivered only on the bridge that made it (origin LOCAL), and MQTT subscriptions are shared, so
one presence change turns a light on once.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import wasmtime

from bridge import names
from bridge.core.api import ApiError
from bridge.core.eventdata import EventFired, PluginEntities, StateChanged
from bridge.core.payload import dumps
from bridge.core.services import ServiceCall, ServiceError, ServiceFuture
from bridge.core.store import StoreError
from bridge.extension import Extension, ExtensionContext
from bridge.mqtt.router import Message, Route
from bridge.plugins import abi, trust
from bridge.plugins.audit import AuditLog
from bridge.plugins.config import PluginsConfig
from bridge.plugins.host import LINGER, HostServices, Plugin
from bridge.plugins.files import PluginFileError, read_bounded
from bridge.plugins.schema import entry_problem
from bridge.plugins.schema import form as schema_form
from bridge.plugins.manifest import MANIFEST, Manifest, ManifestError, load_manifest
from bridge.plugins.permissions import Permissions
from bridge.plugins.runtime import Runtime, check_module

MAX_MODULE_BYTES = 16 * 1024 * 1024
MAX_ENTRY_BYTES = 64 * 1024  # entry data a request may give a plugin
UNLOADED, LOADED_DIRS = "unloaded", "loaded_dirs"  # what plugin/unload and plugin/load asked for (state store)
TICK = 1.0  # seconds between time_changed events
REASON_MAX = 1000  # characters of a rejection reason kept, published and audited
# Domains a plugin may not take: Home Assistant's (its services are the bridge's devices') and the
# bridge's own features and topic levels.
RESERVED_DOMAINS = frozenset({
    "homeassistant", "light", "switch", "fan", "cover", "lock", "climate", "sensor", "binary_sensor",
    "number", "button", "select", "text", "scene", "script", "automation", "input_boolean",
    "input_number", "input_select", "input_text", "input_button", "media_player", "vacuum",
    "alarm_control_panel", "camera", "device_tracker", "person", "zone", "sun", "weather", "notify",
    "event", "update", "siren", "valve", "water_heater", "humidifier", "lawn_mower", "image", "todo",
    "calendar", "conversation", "intent", "assist_satellite", "group", "timer", "counter", "tts", "stt",
    "bridge", "node", "nodes", "plugin", "plugins", "assist", "http", "homekit", "mqtt", "state",
    "service", "ruview"})

Fingerprint = tuple[tuple[str, int, int, int], ...]


class Prepared(NamedTuple):
    """A plugin verified and compiled, ready to start."""
    manifest: Manifest
    module: wasmtime.Module
    verdict: trust.Verdict
    compiled: str  # how the module was compiled: freshly, or from the cache
    digest: str  # the module's hash, for the audit log
    files: Fingerprint  # the files as they were read, for the watcher


class PluginError(Exception):
    """A plugin that cannot be loaded; str() names its directory and the cause."""


class PluginsExtension(Extension[PluginsConfig]):
    name = "plugins"
    Config = PluginsConfig

    def start(self, ctx: ExtensionContext[PluginsConfig]) -> None:
        self.ctx = ctx
        self.cfg = ctx.config
        self.topics = ctx.topics
        self.runtime = Runtime(Path(self.cfg.cache_dir).expanduser())
        ctx.spawn("epoch", lambda: self.runtime.tick(ctx.stopping))
        self.audit_log = AuditLog(Path(self.cfg.audit_log).expanduser())
        self.plugins: dict[str, Plugin] = {}
        self.rejected: dict[str, dict[str, Any]] = {}  # status topic key -> status
        self.entities: dict[str, dict[str, dict[str, Any]]] = {}  # plugin domain -> entity id -> config
        self._routes: dict[str, list[Route]] = {}  # plugin domain -> MQTT routes
        self._seen: dict[str, Fingerprint] = {}  # plugin directory -> its files as last read, for the watcher
        self._settling: dict[str, Fingerprint] = {}  # plugin directory -> a change not yet acted on
        self._alone = not ctx.topics.share_group
        ctx.inbox.linger = LINGER  # state changes and events stream in here too (host.py)
        self.loader = ctx.new_inbox("loader", 64)  # verify and compile here, off the delivery path
        self._loading: set[str] = set()  # directories the loader has now
        if not self.cfg.trusted_keys and not self.cfg.allow_unsigned:
            ctx.log.warning("plugins: plugins.trusted_keys is empty, so no plugin can load; add the "
                            "public key `ruview-bridge plugin keygen` printed")
        if self.cfg.allow_unsigned:
            ctx.log.warning("plugins: plugins.allow_unsigned is ON: unsigned and untrusted plugins run "
                            "(development only)")
        # A plugin's host imports run on its own worker; what they change here hops onto this
        # extension's inbox (`_here`), so the plugins' shared tables have one thread.
        self.services = HostServices(
            get_state=self._get_state, set_state=self._set_state, fire_event=self._fire_event,
            call_service=self._call_service, register_entity=self._here(self._register_entity),
            publish=self._publish, reserved=self._reserved, subscribe=self._here(self._subscribe),
            publish_status=self._here(self._publish_status), audit=self._audit,
            schedule=lambda delay, fn: ctx.call_later(delay, fn), new_inbox=ctx.new_inbox,
            close_inbox=ctx.close_inbox, config_entry=self._config_entry, max_crashes=self.cfg.max_crashes,
            crash_window=self.cfg.crash_window, backoff=self.cfg.restart_backoff, local_only=not self._alone)
        ctx.listen(EventFired, self._on_event)  # state changes go straight to each plugin's inbox (_activate)
        for verb, handler in (("plugin/list", self._req_list), ("plugin/load", self._req_load),
                              ("plugin/unload", self._req_unload), ("plugin/reload", self._req_reload),
                              ("plugin/configure", self._req_configure)):
            ctx.register_request(verb, handler, scope="instance")
        ctx.add_health("plugins", lambda: {d: self.health_of(p) for d, p in sorted(self.plugins.items())})
        ctx.add_health("plugins_disk", self._disk_health)  # a full or read-only disk, said here (audit.py)
        self.load_all()
        ctx.call_later(TICK, self._tick)
        if self.cfg.watch:
            ctx.call_later(self.cfg.watch_interval, self._watch)

    def stop(self) -> None:
        for domain in list(self.plugins):
            self.unload(domain, "the bridge stopped")

    def _disk_health(self) -> dict[str, Any]:
        """What the plugins keep on disk, and whether it is being written."""
        cache = self.runtime.cache
        return {"audit_log": self.audit_log.health(),
                "compile_cache": cache.health() if cache is not None else None}

    def health_of(self, plugin: Plugin) -> dict[str, Any]:
        """A plugin's figures; `dropped` also counts the MQTT messages its full queue did not take
        (the router counts those on its routes), so each delivery it missed is counted once."""
        health = plugin.health()
        health["dropped"] += sum(route.dropped for route in self._routes.get(plugin.domain, ()))
        return health

    # ------------------------------------------------------------ finding and loading

    def plugin_dirs(self) -> list[Path]:
        """Every directory holding a manifest.json: each configured directory, or its subdirectories,
        and those plugin/load loaded (kept in the state store)."""
        found = []
        for configured in [*self.cfg.dirs, *self.ctx.store.get(LOADED_DIRS, [])]:
            root = Path(configured).expanduser()
            if (root / MANIFEST).is_file():
                found.append(root)
            elif root.is_dir():
                found.extend(sorted(p for p in root.iterdir() if (p / MANIFEST).is_file()))
        unique: dict[Path, Path] = {}
        for directory in found:
            unique.setdefault(directory.resolve(), directory)
        return list(unique.values())

    def load_all(self) -> None:
        """Load every plugin found, dependencies first; refuse those whose dependency is missing."""
        candidates: dict[str, tuple[Path, Manifest]] = {}
        for directory in self.plugin_dirs():
            self._seen[str(directory)] = _fingerprint(directory)
            try:
                manifest = load_manifest(directory)
            except ManifestError as exc:
                self._reject(directory, None, str(exc))
                continue
            if manifest.domain in candidates or manifest.domain in self.plugins:
                self._reject(directory, manifest, f"{directory}: domain {manifest.domain} is already "
                             f"loaded from {candidates.get(manifest.domain, (self._dir_of(manifest.domain),))[0]}")
                continue
            candidates[manifest.domain] = (directory, manifest)
        for domain in _dependency_order(candidates, set(self.plugins), self._reject_missing):
            directory, manifest = candidates[domain]
            try:
                self.load(directory)
            except PluginError as exc:
                self._reject(directory, manifest, str(exc))

    def _reject_missing(self, domain: str, directory: Path, manifest: Manifest, why: str) -> None:
        self._reject(directory, manifest, f"{directory}: {why}")

    def _dir_of(self, domain: str) -> str:
        plugin = self.plugins.get(domain)
        return str(plugin.directory) if plugin else "?"

    def load(self, directory: Path) -> Plugin:
        """Verify and start the plugin in `directory` here and now (at start); PluginError (and
        nothing changed) if it may not run."""
        return self._activate(directory, self._prepare(directory))

    def load_later(self, directory: Path, replacing: str | None = None) -> "Future[Plugin]":
        """Verify and compile on the loader, then activate on this inbox; the future holds the plugin
        or the PluginError (whose cause is also said in a status, as with `load`)."""
        done: Future[Plugin] = Future()

        def prepare() -> None:
            try:
                prepared = self._prepare(directory, replacing)
            except PluginError as exc:
                self.ctx.inbox.put(self._refused, directory, replacing, exc, done)
                return
            self.ctx.inbox.put(self._prepared, directory, replacing, prepared, done)

        if not self.loader.put(prepare):
            done.set_exception(PluginError(f"{directory}: the loader is busy; try again"))
        return done

    def _prepared(self, directory: Path, replacing: str | None, prepared: Prepared,
                  done: "Future[Plugin]") -> None:
        try:
            if replacing is not None:
                if replacing not in self.plugins:
                    raise PluginError(f"no plugin {replacing!r} is loaded (it was unloaded meanwhile)")
                self.unload(replacing, "reloading")
            done.set_result(self._activate(directory, prepared))
        except PluginError as exc:
            self._refused(directory, None, exc, done)

    def _refused(self, directory: Path, replacing: str | None, exc: PluginError,
                 done: "Future[Plugin]") -> None:
        plugin = self.plugins.get(replacing) if replacing else None
        if plugin is not None:  # an update refused: the old version runs on, its status says why
            plugin.reason = f"the changed files were refused, still running {plugin.manifest.version}: {exc}"
            self.ctx.log.error("plugins: %s", plugin.reason[:REASON_MAX])
            self._audit(plugin.domain, "reject", reason=str(exc)[:REASON_MAX])
            self._publish_status(plugin)
        else:
            self._reject(directory, _manifest_or_none(directory), str(exc))
        done.set_exception(exc)

    def _prepare(self, directory: Path, replacing: str | None = None) -> Prepared:
        """Everything short of running it: manifest, trust, permissions, compile, ABI. Runs on
        the loader (or at start); reads nothing this inbox owns.

        The files' fingerprint is taken before they are read, so a change that lands while they
        are verified or compiled is one the watcher still sees. The module is read once, bounded,
        and those bytes are what is verified and compiled.
        """
        files = _fingerprint(directory)
        source = str(directory / MANIFEST)
        try:
            manifest = load_manifest(directory)
        except ManifestError as exc:
            raise PluginError(str(exc)) from None
        if replacing is not None and manifest.domain != replacing:
            raise PluginError(f"{source}: the domain changed from {replacing} to {manifest.domain} "
                              "(unload the old plugin first)")
        module_path = directory / manifest.wasm_module
        try:
            module_bytes = read_bounded(module_path, MAX_MODULE_BYTES)
        except PluginFileError as exc:
            raise PluginError(str(exc)) from None
        try:
            verdict = trust.verify(manifest, module_bytes, source, trusted_keys=self.cfg.trusted_keys,
                                   allow_unsigned=self.cfg.allow_unsigned,
                                   allow_hash_only=self.cfg.allow_hash_only_signatures)
        except trust.TrustError as exc:
            raise PluginError(str(exc)) from None
        if verdict.warning:
            self.ctx.log.warning("plugins: %s", verdict.warning)
        problem = self._grant_problem(manifest)
        if problem:
            raise PluginError(f"{source}: {problem}")
        problem = entry_problem(manifest.config_schema, self._entry_data(manifest.domain), manifest.domain)
        if problem:  # the data setup_entry would get breaks the signed config_schema (schema.py)
            raise PluginError(f"{source}: {problem}")
        try:
            module, compiled = self.runtime.compile(module_bytes, trust.digest(module_bytes))
            check_module(module, manifest.host_imports_required)
        except ValueError as exc:
            raise PluginError(f"{module_path}: {exc}") from None
        except Exception as exc:  # wasmtime's compile errors
            raise PluginError(f"{module_path}: not a valid WebAssembly module: {str(exc).splitlines()[0]}") from None
        return Prepared(manifest, module, verdict, compiled, trust.digest(module_bytes), files)

    def _activate(self, directory: Path, prepared: Prepared) -> Plugin:
        manifest, module, verdict, compiled, digest, files = prepared
        source = directory / MANIFEST
        if manifest.domain in self.ctx.store.get(UNLOADED, []):
            raise PluginError(f"{source}: {manifest.domain} stays unloaded (plugin/unload asked for it; "
                              "plugin/load loads it again)")
        if manifest.domain in self.plugins:
            raise PluginError(f"{directory}: domain {manifest.domain} is already loaded from "
                              f"{self.plugins[manifest.domain].directory} (unload it first)")
        missing = [d for d in manifest.dependencies if d not in self.plugins]
        if missing:
            raise PluginError(f"{source}: needs plugin {', '.join(missing)}, which is not loaded")
        taken = self._domain_taken(manifest.domain)
        if taken:
            raise PluginError(f"{source}: domain {manifest.domain} {taken}; choose another")
        plugin = Plugin(directory, manifest, module, self.runtime, self.services, trust=verdict.how,
                        compiled=compiled)
        # Registered before it starts, so they exist by the time its status says running; a call
        # that comes meanwhile waits on the plugin's worker behind the start. A name someone else
        # holds is never replaced: the plugin is refused instead.
        registered: list[str] = []
        for service in manifest.registered_services:
            domain, _, name = service.partition(".")
            try:
                self.ctx.register_service(domain, name, partial(self._plugin_service, plugin))
            except ValueError as exc:
                for done in registered:
                    self.ctx.unregister_service(*done.split(".", 1))
                self.ctx.close_inbox(plugin.inbox)
                raise PluginError(f"{source}: registered_services: {exc}") from None
            registered.append(service)
        self.plugins[manifest.domain] = plugin
        if manifest.subscribed_state_entities:  # behind its start on its inbox: none is missed meanwhile
            plugin.state_changes = self.ctx.listen(StateChanged, plugin.on_state_changed, plugin.inbox,
                                                   plugin.wants)
        self._forget_rejected(manifest.domain)
        self._seen[str(directory)] = files
        started = threading.Event()
        plugin.start(started)
        started.wait(max(1.0, manifest.limits.time_per_call_ms / 1000 * 3))
        for topic_filter in manifest.subscriptions:  # once running, so that retained messages reach it
            self._subscribe(plugin, topic_filter)
        self.ctx.modules.put(plugin.manifest.cog_id or plugin.domain, {**plugin.manifest.description(),
                                                                      "state": plugin.state})
        self._audit(plugin.domain, "load", version=manifest.version, module=digest, trust=verdict.how,
                    compiled=compiled)
        self.ctx.log.info("plugins: loaded %s %s from %s (%s, %s)", manifest.domain, manifest.version,
                          directory, verdict.how, compiled)
        return plugin

    def _domain_taken(self, domain: str) -> str | None:
        """Why a plugin may not take `domain`, if it may not: one owner per name."""
        if domain in RESERVED_DOMAINS:
            return "is reserved (Home Assistant's or the bridge's own)"
        if any(name.split(".", 1)[0] == domain for name in self.ctx.service_names()):
            return "already has services registered by the bridge or another feature"
        return None

    def _grant_problem(self, manifest: Manifest) -> str | None:
        granted = Permissions(manifest.homecore_permissions)
        for topic_filter in manifest.subscriptions:
            if not granted.allows("mqtt:subscribe", topic_filter):
                return f"subscriptions: {topic_filter} is not granted by an mqtt:subscribe permission"
        for service in manifest.registered_services:
            if service.partition(".")[0] != manifest.domain:
                return f"registered_services: {service} is outside the plugin's own domain {manifest.domain}"
        for glob in manifest.subscribed_state_entities:
            if not any(granted.allows("state:read", probe) for probe in (glob, glob.replace("*", "x"))):
                return f"subscribed_state_entities: {glob} is not granted by a state:read permission"
        return None

    def unload(self, domain: str, reason: str = "unloaded") -> bool:
        plugin = self.plugins.pop(domain, None)
        if plugin is None:
            return False
        if plugin.state_changes is not None:
            plugin.state_changes()
        for route in self._routes.pop(domain, []):
            self.ctx.mqtt.unsubscribe(route)
        for service in plugin.manifest.registered_services:
            self.ctx.unregister_service(*service.split(".", 1))
        plugin.stop(reason)
        if reason != "reloading":
            self._say_status(domain, plugin.status())
        self.entities.pop(domain, None)
        self.ctx.emit(PluginEntities(domain, domain))
        self.ctx.modules.remove(plugin.manifest.cog_id or domain)
        self._audit(domain, "unload", reason=reason)
        return True

    def _reject(self, directory: Path, manifest: Manifest | None, reason: str) -> None:
        """Say why a directory's plugin may not run: on its domain's status topic, unless that
        domain runs from another directory (its status is the running plugin's, never the loser's)."""
        reason = reason[:REASON_MAX]
        domain = manifest.domain if manifest else names.slugify(directory.name)
        running = self.plugins.get(domain)
        owns_status = running is None or running.directory == directory
        key = domain if owns_status else f"{domain}@{directory}"
        status = {"state": "rejected", "reason": reason, "directory": str(directory),
                  **(manifest.description() if manifest else {"domain": domain})}
        self.rejected[key] = status
        self.ctx.log.error("plugins: rejected %s", reason)
        self._audit(domain, "reject", reason=reason, directory=str(directory)[:REASON_MAX])
        if owns_status:
            self._say_status(domain, status)

    def _forget_rejected(self, domain: str) -> None:
        self.rejected.pop(domain, None)

    def _say_status(self, domain: str, status: dict[str, Any] | None) -> None:
        """The one place a plugin status topic is written (None: cleared)."""
        self.ctx.mqtt.publish(self.topics.plugin_status(domain), dumps(status) if status else b"",
                              qos=1, retain=True)

    # ------------------------------------------------------------ the watcher and the clock

    def _watch(self) -> None:
        """Hot load: a new plugin directory loads, a changed one reloads, a removed one unloads.

        A change is acted on once it has held still for one look, so a plugin being copied in or
        removed file by file is never loaded half-written.
        """
        try:
            present = {str(d): d for d in self.plugin_dirs()}
            for domain, plugin in list(self.plugins.items()):
                if str(plugin.directory) not in present:
                    self.unload(domain, "its directory is gone")
            for key, status in list(self.rejected.items()):
                if status.get("directory") and status["directory"] not in present:
                    del self.rejected[key]  # nothing left to say about it
                    if "@" not in key and key not in self.plugins:  # it held the status topic
                        self._say_status(key, None)
            loaded = {str(p.directory): domain for domain, p in self.plugins.items()}
            for key, directory in present.items():
                files = _fingerprint(directory)
                if files == self._seen.get(key):
                    self._settling.pop(key, None)
                    continue
                if self._settling.get(key) != files:
                    self._settling[key] = files  # changed since the last look: wait until it holds still
                    continue
                self._settling.pop(key, None)
                self._seen[key] = files
                if key in self._loading:
                    continue  # still being verified or compiled: looked at again when done
                if key in loaded:
                    self.ctx.log.info("plugins: %s changed; reloading", directory)
                self._loading.add(key)
                self.load_later(directory, replacing=loaded.get(key)).add_done_callback(
                    partial(self._loaded, key))
        finally:
            if not self.ctx.stopping.is_set():
                self.ctx.call_later(self.cfg.watch_interval, self._watch)

    def _loaded(self, key: str, _done: "Future[Plugin]") -> None:
        self.ctx.inbox.put(self._loading.discard, key)  # the watcher may look at it again

    def reload(self, domain: str) -> "Future[Plugin]":
        """The plugin again from its files. The new files are verified first: if they may not run,
        the old plugin keeps running (its status says why the update was refused)."""
        plugin = self.plugins.get(domain)
        if plugin is None:
            raise PluginError(f"no plugin {domain!r} is loaded")
        return self.load_later(plugin.directory, replacing=domain)

    def _tick(self) -> None:
        data = orjson.dumps({"now": round(time.time(), 3)})
        for plugin in list(self.plugins.values()):
            if "time_changed" in plugin.manifest.subscribed_events:
                plugin.deliver("time_changed", data, "time")
        if not self.ctx.stopping.is_set():
            self.ctx.call_later(TICK, self._tick)

    # ------------------------------------------------------------ events into plugins (on this inbox)

    def _on_event(self, event: EventFired) -> None:
        if not self._alone and event.origin != "LOCAL":
            return
        event_type = event.event_type
        data = None
        for plugin in list(self.plugins.values()):
            wanted = plugin.manifest.subscribed_events
            if event_type in wanted or ("*" in wanted and event_type != "time_changed"):
                if event.data.get("plugin") == plugin.domain:
                    continue  # its own event, back
                data = data or orjson.dumps(event.as_dict())
                plugin.deliver(event_type, data, "event")

    @staticmethod
    def _on_mqtt(plugin: Plugin, msg: Message) -> None:
        """On the plugin's own inbox (its subscriptions are delivered there, one hop from paho's
        thread): the message as JSON, text as text, anything else as hex; over the delivery limit
        it is dropped and counted against MQTT, never cut and never the plugin's crash."""
        if len(msg.payload) > abi.MAX_BUFFER:  # cannot fit whatever its encoding
            plugin.oversized("mqtt")
            return
        try:
            body: dict[str, Any] = {"topic": msg.topic, "payload": msg.payload.decode("utf-8")}
        except UnicodeDecodeError:
            body = {"topic": msg.topic, "payload": None, "payload_hex": msg.payload.hex()}
        body["retain"] = bool(msg.retain)
        plugin.receive_now(b"mqtt_message", orjson.dumps(body), "mqtt")

    def _plugin_service(self, plugin: Plugin, call: ServiceCall) -> dict[str, Any]:
        if plugin.state not in ("running", "starting"):
            raise ServiceError(f"plugin {plugin.domain} is {plugin.state}")
        if not plugin.call_service(call.service, call.data):
            raise ServiceError(f"plugin {plugin.domain} did not take the call: its data is over "
                               f"{abi.MAX_BUFFER >> 10} KiB, or its queue is full")
        return {"queued": True}

    # ------------------------------------------------------------ what host imports reach (plugin workers)

    def _here(self, fn: Any) -> Any:
        """fn, run on this extension's inbox whichever plugin worker asks for it."""
        def hop(*args: Any) -> None:
            if self.ctx.inbox.on_worker:
                fn(*args)
            else:
                self.ctx.inbox.put(fn, *args)
        return hop

    def _get_state(self, entity_id: str) -> dict[str, Any] | None:
        state = self.ctx.states.get(entity_id)
        return {"state": state.state, "attributes": state.attributes,
                "last_changed": state.last_changed} if state else None

    def _set_state(self, entity_id: str, value: str, attributes: dict[str, Any]) -> None:
        self.ctx.states.set(entity_id, value, attributes)

    def _fire_event(self, event_type: str, data: dict[str, Any]) -> None:
        self.ctx.events.fire(event_type, data)

    def _call_service(self, domain: str, service: str, data: dict[str, Any]) -> ServiceFuture:
        """Queue the call on the service's own inbox; LookupError for a service nobody offers.
        The plugin does not wait for the answer (its call has a deadline of its own)."""
        try:
            return self.ctx.call_service(domain, service, data)
        except ServiceError as exc:
            raise LookupError(str(exc)) from None

    def _register_entity(self, domain: str, config: dict[str, Any]) -> None:
        entities = self.entities.setdefault(domain, {})
        entities[config["entity_id"]] = dict(config)
        title = self.plugins[domain].manifest.name if domain in self.plugins else domain
        self.ctx.emit(PluginEntities(domain, title, tuple(entities.values())))

    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> bool:
        return self.ctx.mqtt.publish(topic, payload, qos, retain)

    def _subscribe(self, plugin: Plugin, topic_filter: str) -> None:
        if self.plugins.get(plugin.domain) is not plugin:
            return  # unloaded or replaced since it asked
        route = self.ctx.mqtt.subscribe(self.topics.shared(topic_filter), partial(self._on_mqtt, plugin),
                                        inbox=plugin.inbox)
        self._routes.setdefault(plugin.domain, []).append(route)

    def _reserved(self, topic: str) -> str | None:
        """The reserved part of the bridge's topics that `topic` lies under, if any: a plugin's
        wide mqtt:publish grant does not reach it (permissions.py). The bridge's API, statuses,
        node, home state, events and service calls, assist, and Home Assistant's discovery and
        Hermes; topics other plugins listen on are not reserved (plugins may talk to each other)."""
        base = self.topics.base + "/"
        for level in ("bridge/", "plugin/", "node/", "state/", "event/", "service/", "assist/"):
            if topic.startswith(base + level):
                return base + level
        for prefix in ("homeassistant/", "hermes/"):
            if topic.startswith(prefix):
                return prefix
        return None

    def _publish_status(self, plugin: Plugin) -> None:
        """A plugin's status, only while it is the one running for its domain."""
        if self.plugins.get(plugin.domain) is not plugin:
            return
        self._say_status(plugin.domain, plugin.status())
        if plugin.domain in self.plugins:
            self.ctx.modules.put(plugin.manifest.cog_id or plugin.domain,
                                 {**plugin.manifest.description(), "state": plugin.state})

    def _audit(self, plugin: str, action: str, **detail: Any) -> None:
        entry = self.audit_log.record(plugin, action, **detail)
        if action in ("deny", "crash", "disable", "reject", "load", "unload"):
            self.ctx.mqtt.publish(self.topics.plugin_audit(plugin), dumps(entry), qos=0)

    def _config_entry(self, manifest: Manifest) -> dict[str, Any]:
        return {"entry_id": manifest.domain, "domain": manifest.domain, "title": manifest.name,
                "data": self._entry_data(manifest.domain), "options": {}, "version": 1}

    def _entry_data(self, domain: str) -> Any:
        """A plugin's entry data: what plugin/configure stored, while plugins.entries still says what it
        said then (editing config.yaml afterwards wins); otherwise plugins.entries'."""
        configured = self.cfg.entries.get(domain, {})
        kept = self.ctx.store.get(f"entry/{domain}")
        if isinstance(kept, dict) and "data" in kept and kept.get("config") == configured:
            return kept["data"]
        return configured

    # ------------------------------------------------------------ bridge requests

    def _req_list(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"plugins": [{**p.status(), **self.health_of(p), "config_form": schema_form(p.manifest.config_schema),
                             "entry": self._entry_data(d)} for d, p in sorted(self.plugins.items())],
                "rejected": [s for _, s in sorted(self.rejected.items())]}

    def _domain_arg(self, request: dict[str, Any]) -> str:
        domain = request.get("domain", request.get("value"))
        if not isinstance(domain, str) or domain not in self.plugins:
            raise ApiError(f"no plugin {str(domain)[:64]!r} is loaded (loaded: {', '.join(sorted(self.plugins)) or 'none'})")
        return domain

    def _req_load(self, request: dict[str, Any]) -> "Future[dict[str, Any]]":
        path = request.get("path", request.get("value"))
        if not isinstance(path, str) or not path:
            raise ApiError('give the plugin\'s directory: {"path": "/path/to/plugin"}')
        directory = Path(path).expanduser()
        if not (directory / MANIFEST).is_file():
            raise ApiError(f"{directory}: no {MANIFEST} there")
        try:
            domain = load_manifest(directory).domain
        except ManifestError as exc:
            raise ApiError(str(exc)) from None
        before = (self.ctx.store.get(UNLOADED, []), self.ctx.store.get(LOADED_DIRS, []))
        self._keep(unloaded=[d for d in before[0] if d != domain],
                   loaded_dirs=sorted({*before[1], str(directory.resolve())}))
        loading = self.load_later(directory)
        loading.add_done_callback(lambda done: done.exception() and self.ctx.inbox.put(
            self._keep_quietly, before))  # a load that failed is not wanted at the next start either
        return _status_later(loading)

    def _req_unload(self, request: dict[str, Any]) -> dict[str, Any]:
        domain = self._domain_arg(request)
        self._keep(unloaded=sorted({*self.ctx.store.get(UNLOADED, []), domain}))
        self.unload(domain, "unloaded by request")
        return {"domain": domain, "state": "stopped"}

    def _keep(self, *, unloaded: list[str] | None = None, loaded_dirs: list[str] | None = None) -> None:
        """Commit what requests asked for before doing it: kept over restarts, or refused."""
        changes = {k: v for k, v in ((UNLOADED, unloaded), (LOADED_DIRS, loaded_dirs)) if v is not None}
        try:
            self.ctx.store.put_many(changes)
        except StoreError as exc:
            raise ApiError(f"not changed: {exc}") from None

    def _keep_quietly(self, before: tuple[list[str], list[str]]) -> None:
        try:
            self.ctx.store.put_many({UNLOADED: before[0], LOADED_DIRS: before[1]})
        except StoreError as exc:
            self.ctx.log.error("plugins: %s", exc)

    def _req_reload(self, request: dict[str, Any]) -> "Future[dict[str, Any]]":
        return _status_later(self.reload(self._domain_arg(request)))

    def _req_configure(self, request: dict[str, Any]) -> "Future[dict[str, Any]]":
        """New entry data for a loaded plugin: checked against its signed config_schema (every
        problem at once), kept in the state store, then the plugin reloaded with it."""
        domain = self._domain_arg(request)
        data = request.get("data")
        if not isinstance(data, dict):
            raise ApiError('give the entry data: {"domain": "...", "data": {...}}')
        if len(orjson.dumps(data)) > MAX_ENTRY_BYTES:
            raise ApiError(f"the entry data is over {MAX_ENTRY_BYTES // 1024} KiB")
        problem = entry_problem(self.plugins[domain].manifest.config_schema, data, domain)
        if problem:
            raise ApiError(problem)
        try:
            self.ctx.store.put(f"entry/{domain}", {"data": data, "config": self.cfg.entries.get(domain, {})})
        except StoreError as exc:
            raise ApiError(f"not changed: {exc}") from None
        return _status_later(self.reload(domain))


def _status_later(loading: "Future[Plugin]") -> "Future[dict[str, Any]]":
    """The answer to a load or reload request, once the loader and this inbox are done with it."""
    answer: Future[dict[str, Any]] = Future()

    def done(finished: "Future[Plugin]") -> None:
        exc = finished.exception()
        if exc is not None:
            answer.set_exception(ApiError(str(exc)) if isinstance(exc, PluginError) else exc)
        else:
            answer.set_result(finished.result().status())

    loading.add_done_callback(done)
    return answer


def _fingerprint(directory: Path) -> Fingerprint:
    """What the watcher compares: the name, inode, size and modification time of the directory,
    its manifest and its modules. Inode and size also catch a file rewritten, or swapped in by a
    rename, within one tick of the filesystem's clock, where the modification time alone would not
    change."""
    files = []
    for path in (directory, directory / MANIFEST, *sorted(directory.glob("*.wasm"))):
        try:
            stat = path.stat()
        except OSError:
            continue
        files.append((path.name, stat.st_ino, stat.st_size, stat.st_mtime_ns))
    return tuple(files)


def _manifest_or_none(directory: Path) -> Manifest | None:
    try:
        return load_manifest(directory)
    except ManifestError:
        return None


def _dependency_order(candidates: dict[str, tuple[Path, Manifest]], loaded: set[str], refuse) -> list[str]:
    """Domains in an order where each comes after its dependencies; the rest refused with the reason."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(domain: str, chain: tuple[str, ...]) -> bool:
        if domain in loaded:
            return True
        if state.get(domain) == "done":
            return True
        if state.get(domain) in ("failed",):
            return False
        if domain in chain:
            return False
        directory, manifest = candidates[domain]
        for dep in manifest.dependencies:
            if dep not in candidates and dep not in loaded:
                refuse(domain, directory, manifest, f"needs plugin {dep}, which is not installed")
                state[domain] = "failed"
                return False
            if dep in chain + (domain,):
                refuse(domain, directory, manifest, f"dependency cycle: {' -> '.join(chain + (domain, dep))}")
                state[domain] = "failed"
                return False
            if not visit(dep, chain + (domain,)):
                refuse(domain, directory, manifest, f"needs plugin {dep}, which could not load")
                state[domain] = "failed"
                return False
        state[domain] = "done"
        order.append(domain)
        return True

    for domain in sorted(candidates):
        visit(domain, ())
    return order
