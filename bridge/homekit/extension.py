"""HomeKit as an extension: a HAP-python accessory server, one bridge accessory "RuView Sensing"
with a child per room, fed from the node directory (the same gated state MQTT publishes).

The HAP server runs on an asyncio loop of our own, on a thread of its own. Two owners, nothing
shared (docs/architecture.md, "The inbox rule"): this extension's inbox owns `nodes`, the
accessory ids (`pairing.AccessoryIds`, and the file they are kept in) and which room has which
id; the HAP loop owns `rooms`, the accessories. The inbox hands the loop an immutable plan (a
tuple of `RoomPlan`) at most every COALESCE seconds, so HomeKit never holds up MQTT or the
pipeline. A room that appears, goes, is renamed or gains a Restricted node changes the accessory
database: the config number goes up and controllers re-read it; pairings survive.

The loop is ours, not HAP-python's: a driver built without a loop makes its own and, when it
stops, stops that loop from inside the stop itself, so the thread waiting for the stop to finish
never heard back and waited out its whole timeout (10 s at every stop and every MQTT `restart`).
With our loop the stop finishes and returns, then the loop is stopped and joined.

Pairing state (HAP-python's, with the long-term keys and paired controllers), the setup code and
the accessory ids live in `bridge.state_dir`, 0600. Pair setup runs srp.py's SRP server, not
HAP-python's own, which fails 3 pairings in 256.
"""

from __future__ import annotations

import asyncio
import errno
import re
import sys
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

from pyhap.accessory import Bridge

from bridge import __version__
from bridge.core.api import ApiError
from bridge.core.directory import NodeChange, NodeEvent, NodeInfo
from bridge.core.inbox import Timer
from bridge.core.loop_thread import LoopThread
from bridge.extension import Extension, ExtensionContext
from bridge.homekit import pairing
from bridge.homekit.accessories import (MAX_ACCESSORIES, MAX_ROOMS, Exposure, RoomAccessory, RoomKey, RoomPlan,
                                        configured, group_rooms, homekit_name, make_loader, room_key)
from bridge.homekit.config import HomeKitConfig
from bridge.homekit.srp import Driver

PRESSES = ("fall_detected", "unrecognized_activity_pattern")  # node events a room's switches press on
COALESCE = 0.1  # seconds: node state changes with every frame; HomeKit hears each room at most this often
RETRY = 5.0  # seconds between attempts to save the accessory ids after a failed write
STOP_TIMEOUT = 2.0  # seconds the HAP server has to stop (it takes well under one)
GOODBYE = 0.6  # seconds mDNS gets to say goodbye at a stop (zeroconf sends it three times, 125 ms apart)


def firmware_revision(version: str) -> str:
    """The bridge's version as HomeKit's FirmwareRevision wants it: up to three numbers ("0.1.0")."""
    match = re.match(r"\d+(?:\.\d+){0,2}", version)
    return match.group(0) if match else "0"


FIRMWARE = firmware_revision(__version__)


class SensingBridge(Bridge):
    """The bridge accessory; says how to pair in our words (HAP-python would print its own)."""

    def __init__(self, driver, name: str, on_unpaired) -> None:
        super().__init__(driver, name)
        self._on_unpaired = on_unpaired

    def setup_message(self) -> None:
        self._on_unpaired()


class HomeKitExtension(Extension[HomeKitConfig]):
    name = "homekit"
    Config = HomeKitConfig

    def start(self, ctx: ExtensionContext[HomeKitConfig]) -> None:
        self.ctx = ctx
        self.cfg: HomeKitConfig = ctx.config
        self._serving = False
        self.files = pairing.PairingFiles(ctx.state_dir)
        setup = self.files.setup()
        self.ids = pairing.AccessoryIds(ctx.state_dir)  # an unreadable file stops the start, saying what to do
        expose = self.cfg.expose
        self.exposure = Exposure.of(expose.include_rooms, expose.include_nodes, expose.exclude_rooms,
                                    expose.exclude_nodes)
        address = self.cfg.address or None
        loop = asyncio.new_event_loop()
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="homekit-io")
        loop.set_default_executor(self._executor)  # HAP-python writes its state file there
        try:
            self.driver = Driver(port=self.cfg.port, address=address, persist_file=str(self.files.state),
                                 pincode=setup.pincode.encode(), loader=make_loader(), loop=loop,
                                 interface_choice=self.cfg.interfaces, advertise=self.cfg.advertise)
        except OSError as exc:
            self._close_loop(loop)
            if address is not None:
                raise
            # HAP-python finds "this host's address" by routing toward 8.8.8.8: no default route
            # (an offline host, a container without one) is ENETUNREACH here
            raise RuntimeError(f"cannot find this host's address to announce to HomeKit controllers "
                               f"({exc.strerror or exc}: no default route?); set homekit.address") from None
        self.driver.state.setup_id = setup.setup_id
        self.bridge = SensingBridge(self.driver, homekit_name(self.cfg.name, "RuView Sensing"), self._say_how_to_pair)
        self.bridge.set_info_service(firmware_revision=FIRMWARE, manufacturer="RuView", model="ruview-bridge",
                                     serial_number="ruview-bridge")
        # the HAP loop's: the accessories by aid; `shown` is what they show, for info (any thread)
        self.rooms: dict[int, RoomAccessory] = {}
        self.shown: tuple[dict[str, Any], ...] = ()
        # the inbox's: the nodes, which room has which aid, and what could not be shown
        self.nodes: dict[int, NodeInfo] = {n.node_id: n for n in ctx.nodes.all()}
        self._pending = False
        self._aids: dict[RoomKey, int] = {}
        self._retry: Timer | None = None
        self._said: set[int] = set()  # node ids whose absence from HomeKit was logged
        self.left_out: tuple[str, ...] = ()  # rooms over HomeKit's limit (any thread reads)
        self.not_shown = 0  # nodes homekit.expose keeps out (any thread reads)
        self.ids_error: str | None = None  # the accessory ids could not be saved (any thread reads)
        self._check_expose(ctx.nodes.all())
        self._apply(self._plan(), initial=True)  # before the loop runs: nothing else touches `rooms` yet
        self.driver.add_accessory(self.bridge)  # loads the pairing state, if there is one
        self._serve()
        ctx.nodes.watch(self._on_node)
        ctx.nodes.watch_events(self._on_event)
        ctx.add_info("homekit", self.info)
        ctx.add_health("homekit", self.health)
        ctx.register_request("homekit/unpair", self._req_unpair)
        ctx.log.info("HomeKit bridge %r on port %d, %s; %d room(s)", self.cfg.name, self.cfg.port,
                     f"paired with {len(self.driver.state.paired_clients)} controller(s)"
                     if self.driver.state.paired else "not paired yet (ruview-bridge homekit pair-info)",
                     len(self.shown))

    def _serve(self) -> None:
        async def start() -> None:
            self.driver.tid = threading.current_thread()  # HAP-python sends events directly from its loop's thread
            await self.driver.async_start()

        self._loop = LoopThread("homekit", self.driver.loop)
        try:
            self._loop.start(start, timeout=15)
        except Exception as exc:
            self._close_loop(self.driver.loop)
            if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
                reason = "address in use"
            else:
                reason = getattr(exc, "strerror", None) or str(exc)
            raise RuntimeError(f"cannot listen for HomeKit controllers on port {self.cfg.port}: {reason}; "
                               "set homekit.port") from None
        self._serving = True

    def _close_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        try:  # LoopThread.start stopped the loop; a loop that did not stop in time is a daemon thread
            loop.close()
        except RuntimeError:
            pass
        self._executor.shutdown(wait=False)

    def _req_unpair(self, request: dict[str, Any]) -> "Future[dict[str, Any]]":
        """Remove one paired controller (its open sessions close), saved before the answer."""
        raw = request.get("controller", request.get("value"))
        try:
            client = uuid.UUID(str(raw))
        except ValueError:
            raise ApiError('give a paired controller\'s id: {"controller": "<id>"} (the HomeKit page and '
                           '`ruview-bridge homekit pair-info` list them)') from None
        answer: Future[dict[str, Any]] = Future()

        def on_hap_loop() -> None:  # the driver's state is the HAP loop's
            driver = self.driver
            if client not in driver.state.paired_clients:
                answer.set_exception(ApiError(f"no paired controller {client} (paired: "
                                              f"{', '.join(str(c) for c in driver.state.paired_clients) or 'none'})"))
                return
            driver.unpair(client)
            try:
                driver.persist()
            except OSError as exc:
                answer.set_exception(ApiError(
                    f"removed for now, but {self.files.state} could not be saved ({exc.strerror or exc}): the "
                    "controller comes back at the next restart; free space or make the directory writable, "
                    "then remove it again"))
                return
            answer.set_result({"controller": str(client), "paired_clients": len(driver.state.paired_clients)})

        self.driver.loop.call_soon_threadsafe(on_hap_loop)
        return answer

    def stop(self) -> None:
        """Stop the HAP server (controllers see their connections close) within a second; called
        after a failed start too, with whatever start got to."""
        if not getattr(self, "_serving", False):  # never served: nothing runs on the loop
            driver = getattr(self, "driver", None)
            if driver is not None and not driver.loop.is_closed():  # start failed after making it
                self._close_loop(driver.loop)
            return
        self._serving = False
        if not self._loop.stop(self._teardown, timeout=STOP_TIMEOUT):
            self.ctx.log.warning("homekit: the HAP server did not stop within %.0f s; stopped its loop anyway",
                                 STOP_TIMEOUT)
        self._executor.shutdown(wait=True)  # a pairing being written is written
        if not self.driver.loop.is_running():
            self.driver.loop.close()

    async def _teardown(self) -> None:
        """On the HAP loop: HAP-python's stop (connections closed, mDNS withdrawn), then what it leaves
        running — zeroconf's goodbye announcements — gets GOODBYE seconds to finish and is cancelled
        after that, so the loop closes with nothing pending (and controllers hear the goodbye)."""
        await self.driver.async_stop()
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if pending:
            _done, late = await asyncio.wait(pending, timeout=GOODBYE)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    # ------------------------------------------------------------ what HomeKit shows (any thread reads)

    def info(self) -> dict[str, Any]:
        state = self.driver.state
        return {"name": self.cfg.name, "port": self.cfg.port, "paired": state.paired,
                "paired_clients": len(state.paired_clients), "config_number": state.config_version,
                "rooms": list(self.shown), "left_out": list(self.left_out),
                "accessory_ids": self.ids_error or f"saved in {self.ids.path}"}

    def health(self) -> dict[str, Any]:
        return {"paired_clients": len(self.driver.state.paired_clients), "rooms": len(self.shown),
                "at_capacity": bool(self.left_out), "rooms_left_out": len(self.left_out),
                "nodes_not_shown": self.not_shown, "accessory_ids_unsaved": self.ids_error is not None,
                "pair_setups_refused_busy": self.driver.pair_setup.refused,
                "sessions_closed_on_unpair": self.driver.sessions_closed,
                "state_unsaved": self.driver.persist_error}

    def _say_how_to_pair(self) -> None:
        """The setup code on the terminal, never into a log: under systemd stderr is the journal."""
        if not sys.stderr.isatty():
            self.ctx.log.warning("HomeKit bridge %r is not paired yet: `ruview-bridge homekit pair-info` shows "
                                 "the setup code", self.cfg.name)
            return
        setup = self.files.setup()
        print(pairing.instructions(self.cfg.name, setup.pincode, pairing.setup_uri(setup)), file=sys.stderr, flush=True)

    def _check_expose(self, nodes: list[NodeInfo]) -> None:
        """A room or node id in homekit.expose that no node has is most likely a typo: say so."""
        expose = self.cfg.expose
        rooms = {(n.room or "").strip().casefold() for n in nodes}
        ids = {n.node_id for n in nodes}
        for key, listed in (("include_rooms", expose.include_rooms), ("exclude_rooms", expose.exclude_rooms)):
            for room in listed:
                if room.strip().casefold() not in rooms:
                    self.ctx.log.warning("homekit.expose.%s: no node is in a room %r (rooms: %s)", key, room,
                                         ", ".join(sorted({n.room for n in nodes if n.room})) or "none")
        for key, listed_ids in (("include_nodes", expose.include_nodes), ("exclude_nodes", expose.exclude_nodes)):
            for node_id in listed_ids:
                if node_id not in ids:
                    self.ctx.log.info("homekit.expose.%s: node %d is not known yet; it applies once it is heard",
                                      key, node_id)

    # ------------------------------------------------------------ the HAP loop's side

    def _apply(self, plan: tuple[RoomPlan, ...], initial: bool = False) -> None:
        """On the HAP loop (or at start, before it runs): the accessories the plan says, their values,
        and the accessory database if it changed. A room whose id could not be saved is not added or
        rebuilt; if it already has its accessory, that one goes on showing its values."""
        wanted = {room.aid: room for room in plan}
        changed = False
        for aid in [a for a in self.rooms if a not in wanted]:
            self.bridge.accessories.pop(aid, None)
            del self.rooms[aid]
            changed = True
        for room in plan:
            accessory = self.rooms.get(room.aid)
            if room.saved:
                if accessory is not None and accessory.layout != room.layout:
                    self.bridge.accessories.pop(room.aid, None)  # name or services change: made again, same aid
                    accessory = None
                if accessory is None:
                    accessory = self.rooms[room.aid] = RoomAccessory(self.driver, room, FIRMWARE)
                    self.bridge.add_accessory(accessory)
                    changed = True
            if accessory is not None:
                accessory.show(room)
        self.shown = tuple(sorted((dict(a.plan.info(), name=a.display_name) for a in self.rooms.values()),
                                  key=lambda r: str(r["name"])))
        if changed and not initial:  # at start HAP-python compares the database with the one it saved
            self.driver.config_changed()

    def _press(self, aid: int, event_type: str) -> None:
        accessory = self.rooms.get(aid)
        if accessory is not None:
            accessory.press(event_type)

    def _on_loop(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            self.driver.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass  # the loop is closed: the extension is stopping

    # ------------------------------------------------------------ the inbox's side

    def _plan(self) -> tuple[RoomPlan, ...]:
        """The rooms as the exposed nodes make them now, each with its saved accessory id."""
        nodes = list(self.nodes.values())
        groups = group_rooms(nodes, self.exposure)
        assignment = self.ids.assign({k: (g.node_ids, g.label) for k, g in groups.items()}, MAX_ROOMS)
        self._report_ids(assignment.error)
        saved = {self.ids.key_of(e): e["aid"] for e in self.ids.entries}
        self._aids = dict(assignment.aids)
        hidden = [n for n in nodes if not self.exposure.exposes(n)]
        self.not_shown = len(hidden)
        self._say_unconfigured([n for n in hidden if not configured(n) and n.node_id not in self._said])
        self._report_capacity(tuple(groups[k].label for k in assignment.left_out))
        plans = []
        for key, aid in assignment.aids.items():
            group = groups[key]
            fallback = f"Room {group.node_ids[0]}" if key[0] == "room" else f"Node {key[1]}"  # a name of emoji only
            plans.append(RoomPlan(aid, homekit_name(group.label, fallback), group, saved.get(key) == aid))
        return tuple(sorted(plans, key=lambda p: p.aid))

    def _say_unconfigured(self, nodes: list[NodeInfo]) -> None:
        """Once per node id: why a node the bridge hears is not in HomeKit (ids are 1..255, so this is
        bounded even when any host on the network makes them up)."""
        if nodes:
            self._said.update(n.node_id for n in nodes)
            self.ctx.log.info("homekit: not shown, as nobody configured them: %s. To show one, give it a room "
                              "(nodes.devices.<id>.room) or list its id in homekit.expose.include_nodes",
                              ", ".join(n.name for n in sorted(nodes, key=lambda n: n.node_id)))

    def _report_ids(self, error: str | None) -> None:
        if error is not None:
            if error != self.ids_error:
                self.ctx.log.error("homekit: %s; trying again every %.0f s", error, RETRY)
            self.ids_error = error
            if self._retry is None:
                self._retry = self.ctx.call_later(RETRY, self._retry_save)
        elif self.ids_error is not None:
            self.ctx.log.warning("homekit: accessory ids saved to %s again; HomeKit shows every room", self.ids.path)
            self.ids_error = None

    def _retry_save(self) -> None:
        self._retry = None
        if self.ids_error is not None:
            self._hand_over()

    def _report_capacity(self, left_out: tuple[str, ...]) -> None:
        if left_out and left_out != self.left_out:
            shown = ", ".join(left_out[:10]) + (f" and {len(left_out) - 10} more" if len(left_out) > 10 else "")
            self.ctx.log.warning("homekit: HomeKit takes at most %d accessories per bridge (the bridge and %d rooms); "
                                 "%d room(s) left out: %s. Choose what HomeKit shows with homekit.expose "
                                 "(docs/homekit.md)", MAX_ACCESSORIES, MAX_ROOMS, len(left_out), shown)
        elif self.left_out and not left_out:
            self.ctx.log.info("homekit: every room fits in HomeKit again")
        self.left_out = left_out

    def _on_node(self, change: NodeChange) -> None:
        if change.removed:
            self.nodes.pop(change.node.node_id, None)
        else:
            self.nodes[change.node.node_id] = change.node
        if not self._pending:  # a burst of changes is one refresh
            self._pending = True
            self.ctx.call_later(COALESCE, self._hand_over)

    def _hand_over(self) -> None:
        """On this inbox: the rooms as the nodes make them now, to the HAP loop."""
        self._pending = False
        self._on_loop(self._apply, self._plan())

    def _on_event(self, event: NodeEvent) -> None:
        kind = event.event.get("event_type")
        if kind not in PRESSES or not self.exposure.exposes(event.node):
            return
        aid = self._aids.get(room_key(event.node))
        if aid is not None:
            self._on_loop(self._press, aid, kind)
