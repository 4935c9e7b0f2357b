"""Pair setup's SRP with every value at the fixed length HomeKit controllers hash.

HAP-python's SRP server (pyhap.hsrp, 5.2) turns its big numbers into bytes without their
leading zero bytes, where aiohomekit (the controller Home Assistant pairs with) keeps B and
the premaster secret S at the group's 384 bytes and the session key K at SHA-512's 64. When
one of those happens to start with a zero byte the two sides hash different bytes and
pairing fails as if the setup code were wrong: 3 chances in 256. This server draws B again
until it is full length (so what M2 sends is what both sides hash), and derives K, the
proofs and the session key from S and K at their fixed lengths."""

from __future__ import annotations

import hashlib
import os
from typing import Any

from pyhap.accessory_driver import AccessoryDriver
from pyhap.hsrp import Server
from pyhap.params import get_srp_context

CONTEXT = get_srp_context(3072, hashlib.sha512, 16)  # what HAP-python's driver uses
KEY_BYTES = hashlib.sha512().digest_size


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


class Driver(AccessoryDriver):
    """HAP-python's accessory driver, pairing with FixedLengthSrpServer."""

    def setup_srp_verifier(self) -> None:
        self._srp_verifier = FixedLengthSrpServer(CONTEXT, b"Pair-Setup", self.state.pincode)
