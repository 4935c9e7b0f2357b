"""The `homekit:` section: the HAP bridge Apple Home pairs with."""

from __future__ import annotations

from typing import Annotated, Any, TypeAlias

from bridge.config import ExtensionSection
from bridge.config.types import Bool, Check, Int, Text, _ip, expected


def _interfaces(v: Any) -> list[str] | None:
    if v is None:
        return None
    if not isinstance(v, list) or not all(isinstance(a, str) and a for a in v):
        raise expected("a list of this host's IP addresses to announce on, or null for all")
    return v


Interfaces: TypeAlias = Annotated[list[str] | None, Check(_interfaces, optional=True)]
OptionalAddress: TypeAlias = Annotated[str | None, Check(_ip, optional=True)]


class HomeKitConfig(ExtensionSection):
    enabled: Bool = False
    name: Annotated[str, Text(r"[A-Za-z0-9][A-Za-z0-9 '._-]{0,63}",
                              "a name of letters, digits, spaces and '._-")] = "RuView Sensing"
    port: Annotated[int, Int(1, 65535)] = 51827  # the seed's
    address: OptionalAddress = None  # the address HomeKit controllers reach; null: this host's
    interfaces: Interfaces = None  # where mDNS announces the bridge; null: every interface
    advertise: Bool = True  # mDNS (_hap._tcp); off, controllers must be told the address
