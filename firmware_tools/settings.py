"""What a node can be told, validated before any port is opened.

The rules are the node's own (serial_onboarding and nvs_config in the firmware), so a
value the node would reject is refused here with a message naming the flag.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from bridge import names

NAMESPACE = "csi_cfg"

# csi_cfg keys the tool writes: flag name -> (NVS key, NVS type)
NVS_KEYS: dict[str, tuple[str, str]] = {
    "ssid": ("ssid", "string"),
    "password": ("password", "string"),
    "target_ip": ("target_ip", "string"),
    "target_port": ("target_port", "u16"),
    "node_id": ("node_id", "u8"),
    "zone": ("zone_name", "string"),
    "tdm_slot": ("tdm_slot", "u8"),
    "tdm_total": ("tdm_nodes", "u8"),
    "edge_tier": ("edge_tier", "u8"),
    "pres_thresh": ("pres_thresh", "u16"),
    "fall_thresh": ("fall_thresh", "u16"),
    "channel": ("csi_channel", "u8"),
}
SERIAL_FIELDS = {"ssid", "password", "target_ip", "target_port", "node_id"}
"""What RUVIEW_CONFIG_V1 carries; anything else needs the NVS path."""

_PRIVATE_NETS = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]


class SettingsError(ValueError):
    """A value the node would refuse; the message names the flag and the rule."""


@dataclass(frozen=True)
class NodeSettings:
    """Settings to write. None means "leave as the node has it"."""

    node_id: int | None = None
    target_ip: str | None = None
    target_port: int | None = None
    ssid: str | None = None
    password: str | None = field(default=None, repr=False)
    zone: str | None = None
    tdm_slot: int | None = None
    tdm_total: int | None = None
    edge_tier: int | None = None
    pres_thresh: float | None = None
    fall_thresh: float | None = None
    channel: int | None = None

    def given(self) -> set[str]:
        return {name for name in NVS_KEYS if getattr(self, name) is not None}

    def needs_nvs(self) -> set[str]:
        return self.given() - SERIAL_FIELDS

    def nvs_updates(self) -> dict[str, tuple[str, int | str]]:
        """NVS key -> (type, value) for every given setting; thresholds in milli-units."""
        updates = {}
        for name in sorted(self.given()):
            key, kind = NVS_KEYS[name]
            value = getattr(self, name)
            if name in ("pres_thresh", "fall_thresh"):
                value = round(value * 1000)
            updates[key] = (kind, value)
        return updates

    def shown(self) -> dict[str, object]:
        """The settings for printing: the password only as set/unset."""
        out: dict[str, object] = {name: getattr(self, name) for name in sorted(self.given())}
        if "password" in out:
            out["password"] = "(set)"
        return out


def validate(settings: NodeSettings) -> NodeSettings:
    """Raise SettingsError for the first value the node would refuse."""
    s = settings
    if s.node_id is not None and not names.is_node_id(s.node_id):
        raise SettingsError(f"--node-id {s.node_id}: must be {names.NODE_ID_RULE}")
    if s.target_ip is not None:
        try:
            address = ipaddress.IPv4Address(s.target_ip)
        except ValueError:
            raise SettingsError(f"--target-ip {s.target_ip!r}: not an IPv4 address "
                                "(the node sends to an address, not a host name)") from None
        if not any(address in net for net in _PRIVATE_NETS):
            raise SettingsError(f"--target-ip {s.target_ip}: must be a private LAN address "
                                "(10.x, 172.16-31.x or 192.168.x); the node never sends sensing "
                                "data off the local network")
    if s.target_port is not None and not 1 <= s.target_port <= 65535:
        raise SettingsError(f"--target-port {s.target_port}: must be 1..65535")
    if s.ssid is not None:
        size = len(s.ssid.encode("utf-8"))
        if not 1 <= size <= 32:
            raise SettingsError(f"--ssid: {size} bytes; a Wi-Fi SSID is 1..32 bytes")
        if s.password is None:
            raise SettingsError("--ssid needs a password: type it at the prompt, or set "
                                "RUVIEW_WIFI_PASSWORD, or pass --password-file")
    if s.password is not None:
        if s.ssid is None:
            raise SettingsError("a Wi-Fi password was given without --ssid; pass both or neither")
        if not 8 <= len(s.password) <= 63 or not all(0x20 <= ord(c) < 0x7F for c in s.password):
            raise SettingsError("the Wi-Fi password must be 8..63 printable ASCII characters "
                                f"(WPA2 passphrase rules); this one has {len(s.password)}")
    if s.zone is not None and not 1 <= len(s.zone.encode("utf-8")) <= 15:
        raise SettingsError(f"--zone {s.zone!r}: 1..15 bytes (the node's zone_name buffer)")
    for name, low, high in (("tdm_slot", 0, 254), ("tdm_total", 1, 255), ("edge_tier", 0, 2)):
        value = getattr(s, name)
        if value is not None and not low <= value <= high:
            raise SettingsError(f"--{name.replace('_', '-')} {value}: must be {low}..{high}")
    if s.tdm_slot is not None and s.tdm_total is not None and s.tdm_slot >= s.tdm_total:
        raise SettingsError(f"--tdm-slot {s.tdm_slot} must be below --tdm-total {s.tdm_total}")
    for name in ("pres_thresh", "fall_thresh"):
        value = getattr(s, name)
        if value is not None and not 0 <= value <= 65.535:
            raise SettingsError(f"--{name.replace('_', '-')} {value}: must be 0..65.535 "
                                "(stored in thousandths in a u16; 0 = automatic)")
    if s.channel is not None and not (1 <= s.channel <= 14 or 36 <= s.channel <= 177):
        raise SettingsError(f"--channel {s.channel}: must be a Wi-Fi channel (1..14 or 36..177)")
    return s
