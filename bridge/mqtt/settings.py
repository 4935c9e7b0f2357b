"""What the bridge connects to, and what the broker says it can do.

`ConnectionSettings` are built from the `mqtt:` section (app.connection_settings) and used by the
bridge's client and the one-shot CLI client alike; `BrokerTraits` are read from an MQTT 5 CONNACK.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit


@dataclass(frozen=True)
class BrokerTraits:
    """What the broker said it can do (MQTT 5 CONNACK properties; None: not said, as on 3.1.1)."""

    max_packet: int | None = None
    shared_subscriptions: bool | None = None
    retain: bool | None = None
    wildcards: bool | None = None
    max_qos: int | None = None

    @classmethod
    def from_connack(cls, properties: Any) -> "BrokerTraits":
        def said(name: str) -> Any:
            return getattr(properties, name, None) if properties is not None else None

        def flag(name: str) -> bool | None:
            value = said(name)
            return None if value is None else bool(value)

        return cls(said("MaximumPacketSize"), flag("SharedSubscriptionAvailable"), flag("RetainAvailable"),
                   flag("WildcardSubscriptionAvailable"), said("MaximumQoS"))


@dataclass(frozen=True)
class ConnectionSettings:
    host: str
    port: int
    tls: bool = False
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    verify: bool = True
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_id: str = ""
    protocol: str = "auto"  # auto | 3.1.1 | 5
    keepalive: int = 60
    min_delay: float = 0.5
    max_delay: float = 30.0
    outbox_size: int = 10000
    max_payload: int = 256 * 1024
    fallbacks: tuple[tuple[str, int], ...] = ()  # more brokers of the same cluster, tried in turn
    share_group: str | None = None  # bridge.share_group: the broker must deliver $share/<group>/...
    session_expiry: int = 0  # mqtt.session_expiry: seconds the broker keeps our session (0: a clean one)

    @property
    def url(self) -> str:
        return broker_url(self.tls, self.host, self.port)

    def brokers(self) -> list[tuple[str, int]]:
        return [(self.host, self.port), *self.fallbacks]


def broker_url(tls: bool, host: str, port: int) -> str:
    return f"{'mqtts' if tls else 'mqtt'}://{host}:{port}"


def parse_broker_url(url: str) -> tuple[str, int, bool]:
    parts = urlsplit(url)
    tls = parts.scheme == "mqtts"
    return parts.hostname or "127.0.0.1", parts.port or (8883 if tls else 1883), tls


class _Scope(Protocol):
    def get(self, key: str, default: Any = None) -> Any: ...
    def put(self, key: str, value: Any) -> None: ...


def stable_client_id(scope: _Scope, instance: str) -> str:
    """This bridge's client id, the same at every start: `ruview-<instance>-<8 hex>`, kept in the state
    store. A persistent session (`mqtt.session_expiry`) is found again only under the same id, and a
    restarted bridge takes its own half-open session over instead of waiting for the broker to drop it.
    The random part keeps two homes' bridges on one broker apart. A store that cannot keep it gives an
    id for this run only (said by the store itself)."""
    kept = scope.get("client_id")
    if isinstance(kept, str) and re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", kept):
        return kept
    word = re.sub(r"[^A-Za-z0-9_-]", "-", instance)[:40] or "bridge"
    made = f"ruview-{word}-{os.urandom(4).hex()}"
    try:
        scope.put("client_id", made)
    except RuntimeError:  # StoreError: this run's id is not kept; the next start picks another
        pass
    return made
