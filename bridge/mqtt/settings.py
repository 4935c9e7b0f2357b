"""What the bridge connects to, and what the broker says it can do.

`ConnectionSettings` are built from the `mqtt:` section (app.connection_settings) and used by the
bridge's client and the one-shot CLI client alike; `BrokerTraits` are read from an MQTT 5 CONNACK.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
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
