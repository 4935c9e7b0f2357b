"""Pair setup's SRP, the accessory side against aiohomekit's controller side, on the values where
a leading zero byte made HAP-python's own server hash other bytes than the controller (pairing
then failed as if the setup code were wrong, about one pairing in 90)."""

from __future__ import annotations

import pytest
from aiohomekit.crypto.srp import SrpClient
from pyhap.hsrp import Server
from pyhap.util import long_to_bytes

from bridge.homekit.srp import CONTEXT, FixedLengthSrpServer

CODE, SALT = "031-45-154", bytes(range(1, 17))
# Found by search for CODE and SALT. The server's secret b that makes B start with a zero byte;
# one that does not; and, with that one, controller secrets a whose premaster secret S and
# session key K = H(S) start with a zero byte.
SHORT_B, FULL_B = 1635, 12345
A_SHORT_S, A_SHORT_K, A_PLAIN = 90, 291, 7


def pair(server_class: type[Server], a: int, b: int, monkeypatch) -> dict[str, bool]:
    """Pair setup M1-M6's SRP: what each side accepts, and whether both derive the same key."""
    monkeypatch.setattr(SrpClient, "generate_private_key", staticmethod(lambda: a))
    controller = SrpClient("Pair-Setup", CODE)
    accessory = server_class(CONTEXT, b"Pair-Setup", CODE.encode(), s=SALT, b=b)
    salt, public = accessory.get_challenge()
    controller.set_salt(bytearray(salt))
    controller.set_server_public_key(bytearray(long_to_bytes(public)))  # M2 carries long_to_bytes(B)
    accessory.set_A(controller.get_public_key_bytes())
    proof = accessory.verify(controller.get_proof_bytes())
    return {"accessory accepts the controller's proof": proof is not None,
            "controller accepts the accessory's proof": proof is not None
            and controller.verify_servers_proof_bytes(proof),
            "same session key": long_to_bytes(accessory.get_session_key())
            == controller.get_session_key_bytes()}


CASES = {"B with a leading zero byte": (A_PLAIN, SHORT_B), "S with a leading zero byte": (A_SHORT_S, FULL_B),
         "K with a leading zero byte": (A_SHORT_K, FULL_B)}


@pytest.mark.parametrize("case", CASES)
def test_pairing_holds_where_a_value_starts_with_a_zero_byte(case, monkeypatch):
    result = pair(FixedLengthSrpServer, *CASES[case], monkeypatch)
    assert all(result.values()), result


@pytest.mark.parametrize("case", CASES)
def test_hap_pythons_own_server_fails_on_the_same_values(case, monkeypatch):
    """The values above do hit the edge: the server this replaces fails on each of them."""
    result = pair(Server, *CASES[case], monkeypatch)
    assert not all(result.values()), result


def test_pairing_holds_for_ordinary_values(monkeypatch):
    assert all(pair(FixedLengthSrpServer, A_PLAIN, FULL_B, monkeypatch).values())
    assert all(pair(Server, A_PLAIN, FULL_B, monkeypatch).values())


def test_a_b_with_a_short_b_is_drawn_again_so_m2_carries_all_384_bytes():
    accessory = FixedLengthSrpServer(CONTEXT, b"Pair-Setup", CODE.encode(), s=SALT, b=SHORT_B)
    assert len(long_to_bytes(Server(CONTEXT, b"Pair-Setup", CODE.encode(), s=SALT, b=SHORT_B).B)) < 384
    assert accessory.b != SHORT_B
    assert len(long_to_bytes(accessory.get_challenge()[1])) == 384
