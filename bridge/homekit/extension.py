"""HomeKit as an extension: a HAP-python accessory server, one bridge accessory "RuView Sensing"
with a child per room, fed from the node directory (the same gated state MQTT publishes).

The HAP server runs HAP-python's own asyncio loop on a thread of its own; node changes arrive on
this extension's inbox and are handed to that loop, so HomeKit never holds up MQTT or the
pipeline. A room that appears, goes, or gains a Restricted node changes the accessory database:
the config number goes up and controllers re-read it; pairings survive.

Pairing state (HAP-python's, with the long-term keys and paired controllers) and the setup code
live in `bridge.state_dir`, 0600. Pair setup runs srp.py's SRP server, not HAP-python's own,
which fails 3 pairings in 256.
"""

from __future__ import annotations

import errno
import sys
from typing import Any

from pyhap.accessory import Bridge

from bridge.core.directory import NodeChange, NodeEvent, NodeInfo
from bridge.core.rooms import RoomView, room_of, rooms
from bridge.core.loop_thread import LoopThread
from bridge.extension import Extension, ExtensionContext
from bridge.homekit import pairing
from bridge.homekit.accessories import RoomAccessory, make_loader, stable_aid
from bridge.homekit.config import HomeKitConfig
from bridge.homekit.srp import Driver

ACTIVITY_EVENT = "unrecognized_activity_pattern"
COALESCE = 0.1  # seconds: node state changes with every frame; HomeKit hears each room at most this often


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
        self.files = pairing.PairingFiles(ctx.state_dir)
        setup = self.files.setup()
        address = self.cfg.address or None
        self._serving = False
        try:
            self.driver = Driver(port=self.cfg.port, address=address, persist_file=str(self.files.state),
                                 pincode=setup.pincode.encode(), loader=make_loader(),
                                 interface_choice=self.cfg.interfaces, advertise=self.cfg.advertise)
        except OSError as exc:
            if address is not None:
                raise
            # HAP-python finds "this host's address" by routing toward 8.8.8.8: no default route
            # (an offline host, a container without one) is ENETUNREACH here
            raise RuntimeError(f"cannot find this host's address to announce to HomeKit controllers "
                               f"({exc.strerror or exc}: no default route?); set homekit.address") from None
        self.driver.state.setup_id = setup.setup_id
        self.bridge = SensingBridge(self.driver, self.cfg.name, self._say_how_to_pair)
        self.bridge.set_info_service(manufacturer="RuView", model="ruview-bridge", serial_number="ruview-bridge")
        # Two owners, nothing shared: the inbox owns `nodes` (and `_pending`), the HAP loop owns
        # `rooms`; the inbox hands the loop an immutable snapshot of the rooms (`_hand_over`).
        self.rooms: dict[str, RoomAccessory] = {}
        self.room_names: tuple[str, ...] = ()  # what the loop shows now, for info (any thread)
        self._pending = False
        self.nodes: dict[int, NodeInfo] = {n.node_id: n for n in ctx.nodes.all()}
        for view in rooms(self.nodes.values()).values():
            self._add_room(view)
        self.room_names = tuple(sorted(self.rooms))
        self.driver.add_accessory(self.bridge)  # loads the pairing state, if there is one
        self._serve()
        ctx.nodes.watch(self._on_node)
        ctx.nodes.watch_events(self._on_event)
        ctx.add_info("homekit", self.info)
        ctx.add_health("homekit", lambda: {"paired_clients": len(self.driver.state.paired_clients),
                                           "rooms": len(self.room_names)})
        ctx.log.info("HomeKit bridge %r on port %d, %s", self.cfg.name, self.cfg.port,
                     f"paired with {len(self.driver.state.paired_clients)} controller(s)"
                     if self.driver.state.paired else "not paired yet (ruview-bridge homekit pair-info)")

    def _serve(self) -> None:
        self._loop = LoopThread("homekit", self.driver.loop)
        try:
            self._loop.start(self.driver.async_start, timeout=15)
        except Exception as exc:
            try:  # LoopThread.start stopped the loop; HAP-python's executor and loop go with it
                self.driver.loop.close()
                if self.driver.executor is not None:
                    self.driver.executor.shutdown(wait=False)
            except RuntimeError:
                pass  # the loop did not stop in time: a daemon thread, gone with the process
            if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
                reason = "address in use"
            else:
                reason = getattr(exc, "strerror", None) or str(exc)
            raise RuntimeError(f"cannot listen for HomeKit controllers on port {self.cfg.port}: {reason}; "
                               "set homekit.port") from None
        self._serving = True

    def stop(self) -> None:
        """Stop the HAP server; called after a failed start too, with whatever start got to."""
        if not getattr(self, "_serving", False):  # never served: no loop to stop, maybe no driver
            return
        self._serving = False
        if self.driver.loop.is_closed():
            return
        if not self._loop.stop(self.driver.async_stop, timeout=10):
            self.ctx.log.debug("homekit: stopping the HAP server took too long")

    # ------------------------------------------------------------ what HomeKit shows

    def info(self) -> dict[str, Any]:
        state = self.driver.state
        return {"name": self.cfg.name, "port": self.cfg.port, "paired": state.paired,
                "paired_clients": len(state.paired_clients), "config_number": state.config_version,
                "rooms": list(self.room_names)}

    def _say_how_to_pair(self) -> None:
        """The setup code on the terminal, never into a log: under systemd stderr is the journal."""
        if not sys.stderr.isatty():
            self.ctx.log.warning("HomeKit bridge %r is not paired yet: `ruview-bridge homekit pair-info` shows "
                                 "the setup code", self.cfg.name)
            return
        setup = self.files.setup()
        print(pairing.instructions(self.cfg.name, setup.pincode, pairing.setup_uri(setup)), file=sys.stderr, flush=True)

    def _add_room(self, view) -> RoomAccessory:
        taken = {a.aid for a in self.rooms.values()}
        accessory = RoomAccessory(self.driver, view, stable_aid(view.name, taken))
        self.bridge.add_accessory(accessory)
        self.rooms[view.name] = accessory
        return accessory

    def _remove_room(self, name: str) -> None:
        accessory = self.rooms.pop(name)
        self.bridge.accessories.pop(accessory.aid, None)

    def _refresh(self, views: dict[str, RoomView]) -> None:
        """On the HAP loop: every room's values, and the accessory database if the rooms changed."""
        changed = False
        for name in [n for n in self.rooms if n not in views]:
            self._remove_room(name)
            changed = True
        for name, view in views.items():
            accessory = self.rooms.get(name)
            if accessory is not None and accessory.view.restricted != view.restricted:
                self._remove_room(name)  # its services change: made again, under the same aid
                accessory = None
            if accessory is None:
                self._add_room(view)
                changed = True
            else:
                accessory.show(view)
        self.room_names = tuple(sorted(self.rooms))
        if changed:
            self.driver.config_changed()

    # ------------------------------------------------------------ from the directory (this inbox)

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
        views = rooms(list(self.nodes.values()))
        if not self.driver.loop.is_closed():
            self.driver.loop.call_soon_threadsafe(self._refresh, views)

    def _on_event(self, event: NodeEvent) -> None:
        if event.event.get("event_type") != ACTIVITY_EVENT:
            return
        room = room_of(event.node)

        def press() -> None:
            accessory = self.rooms.get(room)
            if accessory is not None:
                accessory.press()

        self.driver.loop.call_soon_threadsafe(press)

