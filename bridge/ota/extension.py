"""The "ota" extension: firmware rollouts, recalibrate and re-target over the nodes' HTTP API.

Request verbs: `node/ota` {"nodes": [names] | "all", "version"?} starts a staged rollout (one
canary, then batches of `ota.batch_size`, halting at the first failure), `node/ota_status` says
where it is, `node/recalibrate` {"node"} and `node/set-target` {"node", "target": "IPv4:PORT"};
`firmware/pull` answers the nodes' pull client for the HTTP API (bridge/ota/http_api.py).
Every handler runs on the extension's inbox; the HTTP calls to nodes, which take seconds to
minutes, run on one supervised worker thread, whose results come back to the inbox. The
rollout's progress is kept in the state store (committed before it is published), so a bridge
restarted mid-rollout carries on with the nodes not yet verified.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from bridge.core.api import ApiError
from bridge.core.directory import NodeChange, NodeEvent, NodeInfo
from bridge.core.payload import dumps
from bridge.core.store import StoreError
from bridge.extension import Extension, ExtensionContext
from bridge.mqtt.router import Message
from bridge.ota import discovery, releases
from bridge.ota.config import OtaConfig
from bridge.topics import DiscoveryTopics
from firmware_tools.firmware_rules import parse_ip_port
from firmware_tools.node_http import NodeAddress, NodeClient, NodeHttpError
from firmware_tools.node_secrets import PskStore, SecretError
from firmware_tools.ota_push import ImageError, push

log = logging.getLogger(__name__)

ROLLOUT_KEY = "rollout"
RESCAN = 600.0           # seconds between checks of every node's installed version


class _Rebooted:
    """A FrameWatch fed by the bridge's own node_rebooted events."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def resumed(self) -> bool:
        return self.event.is_set()


class OtaExtension(Extension[OtaConfig]):
    name = "ota"
    Config = OtaConfig

    def start(self, ctx: ExtensionContext[OtaConfig]) -> None:
        self.ctx, self.cfg = ctx, ctx.config
        self.psks = PskStore(ctx.state_dir)
        self.folders = [releases.releases_folder(ctx.state_dir)] + (
            [Path(self.cfg.releases_dir).expanduser()] if self.cfg.releases_dir else [])
        self.releases = releases.scan(self.folders)
        self.installed: dict[str, str] = {}          # node name -> version its /ota/status reports
        self.open_nodes: set[str] = set()            # nodes that take an update without any PSK
        self.progress: dict[str, dict[str, Any]] = {}
        self.downloads: dict[str, int] = {}          # version -> downloads
        self.watches: dict[str, _Rebooted] = {}
        self.jobs: queue.Queue[Callable[[], None]] = queue.Queue()
        self.dt = DiscoveryTopics(self.cfg.discovery_prefix)
        self._announced: dict[int, str] = {}          # node id -> the name its entities were announced with
        for verb, handler in (("node/ota", self._ota), ("node/ota_status", self._status),
                              ("node/recalibrate", self._recalibrate), ("node/set-target", self._set_target),
                              ("firmware/pull", self._pull)):
            ctx.register_request(verb, handler)
        ctx.mqtt.subscribe(f"{ctx.topics.base}/node/+/ota/set", self._on_command, accept_retained=False)
        ctx.nodes.watch(self._on_node, states=False)
        ctx.nodes.watch_events(self._on_node_event)
        ctx.add_health("ota", self._health)
        ctx.spawn("worker", self._work)
        saved = ctx.store.get(ROLLOUT_KEY)
        if isinstance(saved, dict) and saved.get("state") == "running":
            log.info("ota: resuming rollout %s to %s (%d nodes)", saved.get("id"), saved.get("version"),
                     len(saved.get("nodes", [])))
            self._begin(saved)
        self.jobs.put(self._scan_nodes)
        ctx.call_later(RESCAN, self._rescan)

    # ------------------------------------------------------------ on the inbox

    def _health(self) -> dict[str, Any]:
        saved = self.ctx.store.get(ROLLOUT_KEY) or {}
        return {"releases": sorted(self.releases), "downloads": dict(self.downloads),
                "open_nodes": sorted(self.open_nodes),
                "rollout": {k: saved.get(k) for k in ("id", "version", "state")} if saved else None}

    def _rescan(self) -> None:
        self.jobs.put(self._scan_nodes)
        self.ctx.call_later(RESCAN, self._rescan)

    def _on_node(self, change: NodeChange) -> None:
        node = change.node
        announced = self._announced.get(node.node_id)
        if change.removed or (announced is not None and announced != node.name):
            # removed or renamed: its entities go (a renamed node is announced again under its new name)
            old = announced or node.name
            for topic in discovery.configs(self.dt, self.ctx.topics, node, None):
                self.ctx.mqtt.publish(topic, b"", qos=1, retain=True)
            self.ctx.mqtt.publish(discovery.ota_topic(self.ctx.topics, old), b"", qos=1, retain=True)
            self._announced.pop(node.node_id, None)
            if change.removed:
                return
        if node.node_id in self._announced or not node.online:
            return
        self._announced[node.node_id] = node.name
        self.jobs.put(lambda: self._scan_nodes([node.name]))     # its installed version, and whether it is open
        if not self.cfg.discovery_prefix:
            return
        for topic, body in discovery.configs(self.dt, self.ctx.topics, node, self.cfg.release_notes_url).items():
            self.ctx.mqtt.publish(topic, dumps(body), qos=1, retain=True)
        self._publish(node.name)

    def _on_node_event(self, raised: NodeEvent) -> None:
        if raised.event.get("event_type") == "node_rebooted":
            watch = self.watches.get(raised.node.name)
            if watch is not None:
                watch.event.set()

    def _publish(self, name: str) -> None:
        latest = self._release_for(name)
        body = discovery.state(self.installed.get(name), latest.version if latest else None, self.progress.get(name),
                               (name in self.open_nodes) if name in self.installed else None)
        self.ctx.mqtt.publish(discovery.ota_topic(self.ctx.topics, name), dumps(body), qos=1, retain=True)

    def _release_for(self, name: str) -> releases.Release | None:
        info = self.ctx.nodes.by_name(name)
        return releases.for_node(self.releases, self.cfg.pins, name, info.room if info else None)

    def _node(self, ref: Any) -> NodeInfo:
        info = self.ctx.nodes.by_name(ref) if isinstance(ref, str) else None
        if info is None and isinstance(ref, int) and not isinstance(ref, bool):
            info = self.ctx.nodes.get(ref)
        if info is None:
            known = ", ".join(n.name for n in self.ctx.nodes.all()) or "none yet"
            raise ApiError(f"unknown node {str(ref)[:64]!r} (known: {known})")
        return info

    def _on_command(self, message: Message) -> None:
        name = message.topic.split("/")[-3]
        command = message.payload.decode("utf-8", "replace").strip().lower()
        try:
            if command == "install":
                self._ota({"nodes": [name]})
            elif command == "recalibrate":
                self._recalibrate({"node": name})
            else:
                log.warning("ota: %s: unknown command %r (install, recalibrate)", message.topic, command[:40])
        except ApiError as exc:
            log.warning("ota: %s %s refused: %s", name, command, exc)

    def _later(self, work: Callable[[], dict[str, Any]]) -> Future[Any]:
        """Run `work` on the worker; its answer (or ApiError) answers the request."""
        answer: Future[Any] = Future()

        def run() -> None:
            try:
                answer.set_result(work())
            except Exception as exc:
                answer.set_exception(exc)
        self.jobs.put(run)
        return answer

    def _recalibrate(self, body: dict[str, Any]) -> Future[Any]:
        info = self._node(body.get("node"))
        return self._later(lambda: self._node_call(info, "POST", "/ota/recalibrate", b"", "recalibrate"))

    def _set_target(self, body: dict[str, Any]) -> Future[Any]:
        info = self._node(body.get("node"))
        target = body.get("target")
        if not isinstance(target, str) or parse_ip_port(target) is None:
            raise ApiError("target must be 'IPv4:PORT' (four numbers 0..255 and a port 1..65535), "
                           "as the node checks it")
        return self._later(lambda: self._node_call(info, "POST", "/ota/set-target", target.encode(), "set-target"))

    def _pull(self, body: dict[str, Any]) -> dict[str, Any]:
        """For the HTTP API: which release the node at `node`/`room` gets; a download is counted."""
        name, room = body.get("node"), body.get("room")
        release = releases.for_node(self.releases, self.cfg.pins, name if isinstance(name, str) else None,
                                    room if isinstance(room, str) else None)
        if release is None:
            return {"available": False}
        if body.get("download"):
            self.downloads[release.version] = self.downloads.get(release.version, 0) + 1
            log.info("ota: firmware %s downloaded by %s (%s), %d so far", release.version, name or "an unknown node",
                     body.get("client"), self.downloads[release.version])
        return {"available": True, "version": release.version, "sha256": release.sha256, "size": release.size,
                "path": str(release.path)}

    def _status(self, _body: dict[str, Any]) -> dict[str, Any]:
        return {"rollout": self.ctx.store.get(ROLLOUT_KEY), "installed": dict(self.installed),
                "releases": sorted(self.releases)}

    def _ota(self, body: dict[str, Any]) -> dict[str, Any]:
        current = self.ctx.store.get(ROLLOUT_KEY)
        if isinstance(current, dict) and current.get("state") == "running":
            raise ApiError(f"rollout {current.get('id')} to {current.get('version')} is still running")
        self.releases = releases.scan(self.folders)
        wanted = body.get("nodes", "all")
        infos = self.ctx.nodes.all() if wanted == "all" else [self._node(n) for n in (wanted or [])]
        if not infos:
            raise ApiError("no nodes to update")
        version = body.get("version")
        release = self.releases.get(version) if isinstance(version, str) else None
        if version is not None and release is None:
            raise ApiError(f"no release {str(version)[:40]!r} (have: {', '.join(sorted(self.releases)) or 'none'}; "
                           "ruview-node release add IMAGE)")
        if release is None:
            release = releases.newest(self.releases)
        if release is None:
            raise ApiError("no firmware release to install: ruview-node release add IMAGE")
        held = {} if version is not None else {
            n.name: pinned.version for n in infos
            if (pinned := releases.for_node(self.releases, self.cfg.pins, n.name, n.room)) is not None
            and pinned.version != release.version}
        infos = [n for n in infos if n.name not in held]
        if not infos:
            raise ApiError(f"every node asked for is held at another version by ota.pins: {held}")
        names = [n.name for n in infos]
        missing = [n.name for n in infos if self._psk(n) is None]
        if missing:
            raise ApiError(f"no OTA PSK for {', '.join(missing)}: ruview-node provision --ota-psk")
        rollout = {"id": secrets.token_hex(4), "version": release.version, "nodes": names,
                   "batch": int(body.get("batch_size") or self.cfg.batch_size), "state": "running",
                   "per_node": {n: {"state": "queued", "percent": 0} for n in names}}
        self._save(rollout)
        self._begin(rollout)
        return {"id": rollout["id"], "version": release.version, "nodes": names, "held": held}

    def _save(self, rollout: dict[str, Any]) -> None:
        try:
            self.ctx.store.put(ROLLOUT_KEY, rollout)
        except StoreError as exc:
            raise ApiError(f"not started: {exc}") from None

    def _begin(self, rollout: dict[str, Any]) -> None:
        for name, entry in rollout["per_node"].items():
            self.progress[name] = {**entry, "version": rollout["version"]}
            self._publish(name)
        self.jobs.put(lambda: self._run(dict(rollout)))

    def _node_progress(self, rollout_id: str, name: str, entry: dict[str, Any], final: bool) -> None:
        """On the inbox: one node's progress, kept (when final) and published."""
        saved = self.ctx.store.get(ROLLOUT_KEY)
        self.progress[name] = entry
        if final and isinstance(saved, dict) and saved.get("id") == rollout_id:
            saved["per_node"][name] = {k: v for k, v in entry.items() if k != "version"}
            try:
                self.ctx.store.put(ROLLOUT_KEY, saved)
            except StoreError as exc:
                log.error("ota: rollout progress not kept: %s", exc)
        if "installed" in entry:
            self.installed[name] = entry["installed"]
        self._publish(name)

    def _rollout_done(self, rollout_id: str, state: str, why: str) -> None:
        saved = self.ctx.store.get(ROLLOUT_KEY)
        if isinstance(saved, dict) and saved.get("id") == rollout_id:
            saved["state"], saved["why"] = state, why
            try:
                self.ctx.store.put(ROLLOUT_KEY, saved)
            except StoreError as exc:
                log.error("ota: rollout end not kept: %s", exc)
        (log.info if state == "done" else log.error)("ota: rollout %s %s: %s", rollout_id, state, why)
        self.ctx.mqtt.publish(f"{self.ctx.topics.base}/bridge/ota", dumps(saved), qos=1, retain=True)

    def _psk(self, info: NodeInfo) -> str | None:
        try:
            return self.psks.get(info.node_id)
        except SecretError as exc:
            log.error("ota: %s", exc)
            return None

    def _on_inbox(self, fn: Callable[..., None], *args: Any) -> None:
        self.ctx.inbox.put(fn, *args)

    # ------------------------------------------------------------ on the worker thread

    def _work(self) -> None:
        while not self.ctx.stopping.is_set():
            try:
                job = self.jobs.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                job()
            except Exception:
                log.exception("ota: a job failed")     # the next job (another node, a rollout) still runs

    def _addresses(self) -> dict[str, str]:
        answer = self.ctx.request("info", {})
        nodes = (answer.get("data") or {}).get("nodes") or []
        return {str(n.get("name")): str(n["address"]).rsplit(":", 1)[0]
                for n in nodes if isinstance(n, dict) and n.get("address")}

    def _client(self, info: NodeInfo, addresses: dict[str, str] | None = None) -> NodeClient:
        host = (addresses or self._addresses()).get(info.name)
        if host is None:
            raise ApiError(f"{info.name}: the bridge has not heard from it, so its address is unknown")
        return NodeClient(NodeAddress(host, self.cfg.node_port), self._psk(info), timeout=10.0)

    def _node_call(self, info: NodeInfo, method: str, path: str, body: bytes, what: str) -> dict[str, Any]:
        client = self._client(info)
        if client._psk is None:
            raise ApiError(f"{info.name}: no OTA PSK (ruview-node provision --ota-psk)")
        try:
            data = client.checked(client.call(method, path, body), what)
        except NodeHttpError as exc:
            raise ApiError(f"{info.name}: {exc}") from None
        return {"node": info.name, **data}

    def _scan_nodes(self, only: list[str] | None = None) -> None:
        addresses = self._addresses()
        for info in self.ctx.nodes.all():
            if info.name not in addresses or (only is not None and info.name not in only):
                continue
            client = NodeClient(NodeAddress(addresses[info.name], self.cfg.node_port), None, timeout=3.0)
            try:
                version = str(client.status().get("version"))
                open_node = client.psk_accepted()
            except NodeHttpError:
                continue
            self._on_inbox(self._scanned, info.name, version, open_node)

    def _scanned(self, name: str, version: str, open_node: bool) -> None:
        self.installed[name] = version
        if open_node and name not in self.open_nodes:
            log.warning("ota: node %s takes a firmware update without any PSK: anyone on the network can "
                        "replace its firmware; ruview-node provision --ota-psk", name)
            self.open_nodes.add(name)
        elif not open_node:
            self.open_nodes.discard(name)
        self._publish(name)

    def _run(self, rollout: dict[str, Any]) -> None:
        rid, version = rollout["id"], rollout["version"]
        release = self.releases.get(version)
        if release is None:
            self._on_inbox(self._rollout_done, rid, "halted", f"release {version} is gone")
            return
        image = release.path.read_bytes()
        todo = [n for n in rollout["nodes"]
                if rollout["per_node"].get(n, {}).get("state") not in ("verified", "unchanged")]
        stages = [todo[:1]] + [todo[i:i + rollout["batch"]] for i in range(1, len(todo), rollout["batch"])]
        for stage in filter(None, stages):
            with ThreadPoolExecutor(max_workers=len(stage), thread_name_prefix="ota-push") as pool:
                results = list(pool.map(lambda n: self._push_one(rid, version, n, image), stage))
            failed = [line for ok, line in results if not ok]
            if failed:
                self._on_inbox(self._rollout_done, rid, "halted", failed[0])
                return
        self._on_inbox(self._rollout_done, rid, "done", f"{len(todo)} node(s) on {version}")

    def _known(self, name: str) -> tuple[NodeInfo | None, dict[str, str]]:
        """The node and the addresses, waiting up to ota.timeout for a node not heard from yet (a
        bridge that resumes a rollout at its start hears its nodes a moment later)."""
        waited = 0.0
        while True:
            info, addresses = self.ctx.nodes.by_name(name), self._addresses()
            if (info is not None and name in addresses) or waited >= self.cfg.timeout \
                    or self.ctx.stopping.wait(0.5):
                return info, addresses
            waited += 0.5

    def _push_one(self, rid: str, version: str, name: str, image: bytes) -> tuple[bool, str]:
        info, addresses = self._known(name)
        last = [-1]

        def report(state: str, final: bool = False, **extra: Any) -> None:
            self._on_inbox(self._node_progress, rid, name, {"state": state, "version": version, **extra}, final)

        def progress(cur: int, total: int) -> None:
            percent = cur * 100 // max(total, 1)
            if percent // 10 != last[0]:
                last[0] = percent // 10
                report("uploading", percent=percent)

        if info is None:
            report("failed", True, error="no longer known")
            return False, f"{name}: no longer known to the bridge"
        watch = _Rebooted()
        self.watches[name] = watch
        try:
            client = self._client(info, addresses)
            outcome = push(client, image, f"{version}.bin", label=name, timeout=self.cfg.timeout,
                           settle=self.cfg.settle, frames=watch, progress=progress,
                           on_phase=lambda phase: report(phase, percent=100 if phase != "uploading" else 0))
        except (ApiError, NodeHttpError, ImageError) as exc:
            report("failed", True, error=str(exc))
            return False, f"{name}: {exc}"
        except Exception as exc:                       # a bug must halt the rollout, not leave it "running"
            log.exception("ota: pushing to %s failed", name)
            report("failed", True, error=f"{type(exc).__name__}: {exc}")
            return False, f"{name}: {type(exc).__name__}: {exc}"
        finally:
            self.watches.pop(name, None)
        if outcome.ok:
            report("verified", True, installed=outcome.new, percent=100)
            return True, outcome.line
        report("rolled_back" if outcome.kind == "rolled_back" else "failed", True, error=outcome.line,
               installed=outcome.old)
        return False, outcome.line
