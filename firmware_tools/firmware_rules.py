"""Two of the firmware's own rules, for every tool and the bridge to apply alike.

`parse_ip_port` is ota_update.c's check of a `/ota/set-target` body; `version_compare` is
ota_pull.c's compare of its version with the server's. A value either side accepts, the other
accepts too.
"""

from __future__ import annotations

import re


def parse_ip_port(body: str) -> tuple[str, int] | None:
    """The firmware's parse_ip_port: four decimal octets 0..255, ':', a port 1..65535 of at most
    five digits; trailing spaces, tabs, CR and LF are tolerated."""
    text = body.rstrip(" \t\r\n")
    ip, colon, port = text.partition(":")
    if not colon or not ip or len(ip) >= 16:
        return None
    octets = ip.split(".")
    if len(octets) != 4 or not all(o.isdigit() and o.isascii() and int(o) <= 255 for o in octets):
        return None
    if not 1 <= len(port) <= 5 or not (port.isdigit() and port.isascii()) or not 1 <= int(port) <= 65535:
        return None
    return ip, int(port)


def version_compare(local: str, remote: str) -> int:
    """ota_pull.c's compare: >0 when remote is newer; X.Y.Z numerically, else strcmp."""
    def three(v: str) -> tuple[int, int, int] | None:
        m = re.match(r"\s*([+-]?\d+)\.([+-]?\d+)\.([+-]?\d+)", v)
        return (int(m[1]), int(m[2]), int(m[3])) if m else None
    lv, rv = three(local), three(remote)
    if lv is None or rv is None:
        return (remote > local) - (remote < local)
    for a, b in zip(rv, lv):
        if a != b:
            return a - b
    return 0
