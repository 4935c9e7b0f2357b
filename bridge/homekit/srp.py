"""Pair setup and pairings, as HomeKit controllers expect them of HAP-python's server.

SRP at fixed lengths. HAP-python's SRP server (pyhap.hsrp, 5.2) turns its big numbers into bytes
without their leading zero bytes, where aiohomekit (the controller Home Assistant pairs with)
keeps B and the premaster secret S at the group's 384 bytes and the session key K at SHA-512's
64. When one of those happens to start with a zero byte the two sides hash different bytes and
pairing fails as if the setup code were wrong: 3 chances in 256. This server draws B again
until it is full length (so what M2 sends is what both sides hash), and derives K, the proofs
and the session key from S and K at their fixed lengths.

One pair setup at a time. HAP-python keeps one SRP verifier for the whole accessory, so a second
controller's M1 replaced the first one's: the owner's M3 then failed as a wrong setup code and
counted toward the lockout (5 failures lock pair setup for a minute), and anyone on the network
could keep a user from pairing. Here the connection that sent M1 owns pair setup until it
finishes, fails, disconnects, or leaves it alone for PAIR_SETUP_IDLE seconds while someone else
wants it; any other connection is answered kTLVError_Busy (HAP: "the accessory is already
performing pair setup"), which is not counted as a failure.

A removed pairing loses its sessions. HAP-python removes the controller's keys but leaves its
open connections as they were, so a removed controller kept reading and receiving events until
it disconnected by itself; the HAP specification wants them closed. `Driver.unpair` closes every
session of that controller once the removal's answer is sent.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
import uuid
from typing import Any

from pyhap import tlv
from pyhap.accessory_driver import AccessoryDriver
from pyhap.hap_handler import HAP_TLV_ERRORS, HAP_TLV_STATES, HAP_TLV_TAGS, HAPServerHandler
from pyhap.hap_protocol import HAPServerProtocol
from pyhap.hap_server import HAPServer
from pyhap.hsrp import Server
from pyhap.params import get_srp_context

log = logging.getLogger("bridge.homekit")

CONTEXT = get_srp_context(3072, hashlib.sha512, 16)  # what HAP-python's driver uses
KEY_BYTES = hashlib.sha512().digest_size
PAIR_SETUP_IDLE = 60.0  # seconds an unfinished pair setup holds off others (a person types the code after M1)


class SessionKey(int):
    """K as a number that HAP-python's long_to_bytes() turns into all KEY_BYTES bytes.

    HAP-python derives the M5/M6 encryption keys from long_to_bytes(K), which sizes the
    bytes by bit_length(); a key that starts with a zero byte would lose it there.
    """

    def bit_length(self) -> int:
        return KEY_BYTES * 8


class FixedLengthSrpServer(Server):
    # the attributes this class rewrites, declared here: pyhap.hsrp is not type-checked
    Bb: bytes  # B
    Sb: bytes | None  # the premaster secret S; None until set_A

    def __init__(self, ctx: dict[str, Any], username: bytes, password: bytes, **kwargs: Any) -> None:
        super().__init__(ctx, username, password, **kwargs)
        while len(self.Bb) < self.N_len // 8:  # 1 in 256: the controller would hash B padded
            self.b = int.from_bytes(os.urandom(ctx["secret_len"]), "big")
            self.B = self._derive_B()
            self.Bb = self.B.to_bytes(self.N_len // 8, "big")

    def set_A(self, bytes_A: bytes) -> None:
        super().set_A(bytes_A)  # checks A, and derives S
        self.Sb = self._padN(self.Sb)
        self.Kb = self._digest(self.Sb)
        self.K = SessionKey.from_bytes(self.Kb, "big")
        self.M = self._get_M()
        self.HAMK = self._get_HAMK()


class PairSetupClaim:
    """Which connection's pair setup the accessory's one SRP verifier belongs to (HAP loop only)."""

    def __init__(self, driver: "Driver") -> None:
        self.driver = driver
        self.owner: HAPServerHandler | None = None
        self.since = 0.0  # when the owner last took a step
        self.refused = 0  # pair setups answered busy, for health

    def _owner_gone(self, now: float) -> bool:
        owner = self.owner
        if owner is None:
            return True
        protocol = self.driver.http_server.connections.get(owner.client_address)
        return protocol is None or protocol.handler is not owner or now - self.since > PAIR_SETUP_IDLE

    def take(self, handler: HAPServerHandler) -> bool:
        now = time.monotonic()
        if handler is not self.owner and not self._owner_gone(now):
            self.refused += 1
            return False
        self.owner, self.since = handler, now
        return True

    def holds(self, handler: HAPServerHandler) -> bool:
        if handler is self.owner:
            self.since = time.monotonic()
            return True
        return False

    def release(self, handler: HAPServerHandler) -> None:
        if handler is self.owner:
            self.owner = None


class PairingHandler(HAPServerHandler):
    """HAP-python's request handler, with pair setup owned by one connection at a time."""

    def handle_pairing(self) -> None:
        driver: Driver = self.accessory_handler  # type: ignore[assignment]
        if driver.pairing_locked_out or self.state.paired:
            return super().handle_pairing()  # answered busy or unavailable by HAP-python
        try:
            step = tlv.decode(self.request_body or b"")[HAP_TLV_TAGS.SEQUENCE_NUM]
        except Exception:  # a malformed request: HAP-python answers it as it would
            return super().handle_pairing()
        claim = driver.pair_setup
        if step == HAP_TLV_STATES.M1:
            if not claim.take(self):
                log.info("homekit: pair setup from %s refused (busy): another controller is pairing",
                         self.client_address)
                return self._busy(HAP_TLV_STATES.M2)
        elif step in (HAP_TLV_STATES.M3, HAP_TLV_STATES.M5):
            if not claim.holds(self):  # not this connection's pair setup: never checked as a guess
                return self._busy(bytes([step[0] + 1]))
        super().handle_pairing()
        if step == HAP_TLV_STATES.M5 or (step == HAP_TLV_STATES.M3 and self._answered_error()):
            claim.release(self)

    def _answered_error(self) -> bool:
        body = self.response.body if self.response is not None else b""
        try:
            return HAP_TLV_TAGS.ERROR_CODE in tlv.decode(body)
        except Exception:
            return True

    def _busy(self, step: bytes) -> None:
        self._send_tlv_pairing_response(tlv.encode(HAP_TLV_TAGS.SEQUENCE_NUM, step,
                                                   HAP_TLV_TAGS.ERROR_CODE, HAP_TLV_ERRORS.BUSY))


class _Protocol(HAPServerProtocol):
    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.handler = PairingHandler(self.accessory_driver, self.peername)


class _Server(HAPServer):
    """HAP-python's server, with our request handler on every connection."""

    async def async_start(self, loop: Any) -> None:
        self.loop = loop
        self.server = await loop.create_server(
            lambda: _Protocol(loop, self.connections, self.accessory_handler), self._addr_port[0], self._addr_port[1])
        self.async_cleanup_connections()


class Driver(AccessoryDriver):
    """HAP-python's accessory driver: pairing with FixedLengthSrpServer, one pair setup at a time,
    and the sessions of a removed pairing closed."""

    def __init__(self, **kwargs: Any) -> None:
        self._persisting = threading.Lock()  # before HAP-python's __init__, which may save
        super().__init__(**kwargs)
        self.http_server = _Server((self._listen_address, self.state.port), self)
        self.pair_setup = PairSetupClaim(self)
        self.sessions_closed = 0  # sessions of removed pairings closed, for health
        self.persist_error: str | None = None  # the newest background save that failed

    def setup_srp_verifier(self) -> None:
        self._srp_verifier = FixedLengthSrpServer(CONTEXT, b"Pair-Setup", self.state.pincode)

    def unpair(self, client_uuid: Any) -> None:
        """Remove the pairing and save that before the controller is answered; then (once the answer
        is on its way: this runs inside the request) close every session of that controller. A removal
        the state directory cannot keep is undone and raised: the controller is told it failed, rather
        than told "removed" by a bridge that pairs it again at the next start."""
        state = self.state
        before = (dict(state.paired_clients), {k: dict(v) for k, v in state.client_properties.items()},
                  dict(state.uuid_to_bytes), dict(state.accessory_states))
        super().unpair(client_uuid)
        try:
            self.persist()
        except OSError as exc:
            state.paired_clients, state.client_properties, state.uuid_to_bytes, state.accessory_states = before
            log.error("homekit: removing pairing %s refused: it cannot be saved to %s (%s); free space or make "
                      "the directory writable, then remove it again", client_uuid, self.persist_file,
                      exc.strerror or exc)
            raise
        self.loop.call_soon(self.close_sessions, client_uuid)

    # what was paired is on disk before the controller is told so

    def pair(self, client_username_bytes: bytes, client_public: bytes, client_permissions: bytes) -> bool:
        """A pairing is confirmed only once it is saved: one the state directory cannot keep is
        refused (the controller says pairing failed), never acknowledged and lost at the next restart."""
        self.state.add_paired_client(client_username_bytes, client_public, client_permissions)
        try:
            self.persist()
        except OSError as exc:
            self.state.remove_paired_client(uuid.UUID(client_username_bytes.decode()))
            log.error("homekit: pairing refused: it cannot be saved to %s (%s); free space or make the "
                      "directory writable, then pair again", self.persist_file, exc.strerror or exc)
            return False
        self._failed_pairing_attempts = 0
        self._pairing_lockout_until = 0.0
        log.info("homekit: paired with %s", client_username_bytes.decode(errors="replace"))
        return True

    def async_persist(self) -> None:
        """Save in the background (HAP-python's later changes: config numbers, removed pairings),
        a failure said in one line rather than left as an unhandled task exception."""
        future = self.loop.run_in_executor(None, self.persist)
        future.add_done_callback(self._persisted)

    def _persisted(self, future: Any) -> None:
        exc = future.exception()
        self.persist_error = None if exc is None else f"cannot save {self.persist_file}: {exc}"
        if exc is not None:
            log.error("homekit: %s; the change is kept until the bridge stops (free space, or make the "
                      "directory writable)", self.persist_error)

    def persist(self) -> None:
        """Write the accessory state to a fixed temporary file (0600) and move it into place: a
        failed write leaves the saved state as it was and no partial file behind."""
        with self._persisting:  # the loop (a pairing, an unpair request) and the executor both save
            self._persist_now()

    def _persist_now(self) -> None:
        path = self.persist_file
        tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                self.encoder.persist(handle, self.state)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                if os.path.isfile(tmp):
                    os.unlink(tmp)
            raise

    def close_sessions(self, client_uuid: Any) -> int:
        closed = 0
        for protocol in list(self.http_server.connections.values()):
            if protocol.handler is not None and protocol.handler.client_uuid == client_uuid:
                protocol.close()
                closed += 1
        self.sessions_closed += closed
        log.info("homekit: pairing %s removed; %d open session(s) of it closed", client_uuid, closed)
        return closed
