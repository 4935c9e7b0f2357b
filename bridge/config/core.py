"""The bridge's own sections, `mqtt:` and `bridge:`; features bring theirs (catalog.py)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import Field, SecretStr

from bridge import names
from bridge.config.section import Problem, Section
from bridge.config.types import (Bool, Check, Choice, Int, IPAddress, Number, ReadableFile, Secret, Text,
                                 TopicPath, expected)


def _broker_url(v: Any) -> str:
    if v == "auto":
        return v
    if isinstance(v, str) and re.match(r"mqtts?://[^/]*@", v):
        raise expected("a URL without credentials (put them in mqtt.username and mqtt.password "
                       "or RUVIEW_MQTT_PASSWORD)")
    if not isinstance(v, str) or not re.fullmatch(r"mqtts?://[^/@\s:]+(:\d{1,5})?/?", v):
        raise expected("auto, mqtt://host[:port] or mqtts://host[:port]")
    return v.rstrip("/")


BrokerUrl: TypeAlias = Annotated[str, Check(_broker_url)]
MqttProtocol: TypeAlias = Literal["auto", "3.1.1", "5"]
LogLevel: TypeAlias = Literal["debug", "info", "warning", "error"]


def _instance(v: Any) -> str:
    if not names.is_slug(v) or v in names.RESERVED_INSTANCES or len(v) > 64:
        raise expected("a word of [a-z0-9_-] (at most 64; not state, info, health, event, "
                       "request or response)")
    return v


class TlsConfig(Section):
    ca: ReadableFile = None
    cert: ReadableFile = None
    key: ReadableFile = None
    verify: Bool = True

    def check(self, root: Any) -> list[Problem]:
        if bool(self.cert) != bool(self.key):
            return [("cert", "expected mqtt.tls.cert and mqtt.tls.key together")]
        return []


class ReconnectConfig(Section):
    min_delay: Annotated[float, Number(0.05, 60)] = 0.5
    max_delay: Annotated[float, Number(0.1, 3600)] = 30.0

    def check(self, root: Any) -> list[Problem]:
        if self.min_delay > self.max_delay:
            return [("min_delay", "expected at most mqtt.reconnect.max_delay")]
        return []


class EmbeddedConfig(Section):
    bind: IPAddress = "127.0.0.1"
    port: Annotated[int, Int(1, 65535)] = 1883


class MqttConfig(Section):
    url: BrokerUrl = "auto"
    username: Annotated[str | None, Text(what="a user name", optional=True, max_len=256)] = Field(
        None, json_schema_extra={"env": "RUVIEW_MQTT_USERNAME"})
    password: Secret = Field(None, json_schema_extra={"env": "RUVIEW_MQTT_PASSWORD"})
    password_file: ReadableFile = None
    base_topic: TopicPath = "ruview"
    client_id: Annotated[str | None, Text(r"[A-Za-z0-9_.:-]{1,64}", "1..64 of [A-Za-z0-9_.:-]",
                                          optional=True)] = None
    protocol: Annotated[MqttProtocol, Choice(MqttProtocol)] = "auto"
    keepalive: Annotated[int, Int(5, 3600)] = 60
    tls: TlsConfig = TlsConfig()
    reconnect: ReconnectConfig = ReconnectConfig()
    outbox_size: Annotated[int, Int(10, 10_000_000)] = 10000
    max_payload: Annotated[int, Int(1024, 256 * 1024 * 1024)] = 256 * 1024
    embedded: EmbeddedConfig = EmbeddedConfig()

    def check(self, root: Any) -> list[Problem]:
        problems = []
        if self.password_file and self.password is None:
            try:
                text = Path(self.password_file).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(("password_file", f"cannot read {self.password_file}: "
                                 f"{getattr(exc, 'strerror', None) or 'not UTF-8 text'}"))
            else:
                if text:
                    self.password = SecretStr(text)
                else:
                    problems.append(("password_file", f"{self.password_file} is empty"))
        if self.url == "auto" and not ipaddress.ip_address(self.embedded.bind).is_loopback \
                and not (self.username and self.password):
            problems.append(("embedded.bind", f"listening on {self.embedded.bind} (beyond this host) "
                             "requires mqtt.username and mqtt.password"))
        return problems

    def password_value(self) -> str | None:
        return self.password.get_secret_value() if self.password is not None else None


class BridgeConfig(Section):
    health_interval: Annotated[float, Number(1, 86400)] = 30.0
    shutdown_timeout: Annotated[float, Number(0.1, 120)] = 5.0
    log_level: Annotated[LogLevel, Choice(LogLevel)] = "info"
    instance: Annotated[str | None, Check(_instance, optional=True)] = None  # null: this host's name
    share_group: Annotated[str | None, Text(names.SLUG.pattern, "a word of [a-z0-9_-]", optional=True,
                                            max_len=64)] = None
    # what the bridge keeps (HomeKit pairings)
    state_dir: Annotated[str, Text(what="a directory")] = "~/.local/state/ruview-bridge"

    @property
    def instance_name(self) -> str:
        return self.instance or names.default_instance()
