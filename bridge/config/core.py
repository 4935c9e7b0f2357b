"""The bridge's own sections, `mqtt:` and `bridge:`; features bring theirs (catalog.py)."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import Field, SecretStr, model_validator

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


def _feature_names(v: Any) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(n, str) and names.is_slug(n) for n in v):
        raise expected("a list of feature names, such as [http, homekit]")
    return v


FeatureNames: TypeAlias = Annotated[list[str], Check(_feature_names)]


def _log_file(v: Any) -> str:
    if not isinstance(v, str) or not v or "\0" in v:
        raise expected("a file path")
    path = Path(v).expanduser()
    if path.is_dir():
        raise expected("a file path (this is a directory)")
    folder = path.parent
    if not folder.is_dir():
        raise expected(f"a file in a directory that exists ({folder} does not)")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise expected("a file this user can write (permission denied)")
    return str(path)


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
    url: BrokerUrl = "auto"  # or a list: the brokers of one cluster, the first preferred
    fallback_urls: list[BrokerUrl] = []  # the rest of a list given as `url`
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
    session_expiry: Annotated[int, Int(0, 4294967295)] = 0  # s the broker keeps our session and queues for it
    max_payload: Annotated[int, Int(1024, 256 * 1024 * 1024)] = 256 * 1024
    embedded: EmbeddedConfig = EmbeddedConfig()

    @model_validator(mode="before")
    @classmethod
    def _url_list(cls, data: Any) -> Any:
        """`url: [mqtt://a, mqtt://b]`: the first is `url`, the others are tried in turn on failover."""
        if isinstance(data, dict) and isinstance(data.get("url"), list) and data["url"]:
            data = {**data, "url": data["url"][0], "fallback_urls": list(data["url"][1:])}
        return data

    def check(self, root: Any) -> list[Problem]:
        problems = []
        if self.fallback_urls and (self.url == "auto" or any(
                u.split(":", 1)[0] != self.url.split(":", 1)[0] for u in self.fallback_urls)):
            problems.append(("url", "a list of brokers must all be mqtt:// or all mqtts:// (no auto)"))
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


DEFAULT_STATE_DIR = "~/.local/state/ruview-bridge"


class BridgeConfig(Section):
    health_interval: Annotated[float, Number(1, 86400)] = 30.0
    shutdown_timeout: Annotated[float, Number(0.1, 120)] = 5.0
    log_level: Annotated[LogLevel, Choice(LogLevel)] = "info"
    instance: Annotated[str | None, Check(_instance, optional=True)] = None  # null: this host's name
    share_group: Annotated[str | None, Text(names.SLUG.pattern, "a word of [a-z0-9_-]", optional=True,
                                            max_len=64)] = None
    # what the bridge keeps: the state store (state.db), HomeKit pairings (docs/state.md)
    state_dir: Annotated[str, Text(what="a directory")] = DEFAULT_STATE_DIR
    # features that may fail to start (a port taken, no network) while the bridge runs on;
    # any other enabled feature that cannot start stops `ruview-bridge run` (exit 2)
    keep_running_without: FeatureNames = Field(default_factory=list)
    # a rotating log file (0600) besides the console; null: none
    log_file: Annotated[str | None, Check(_log_file, optional=True)] = None
    log_file_max_bytes: Annotated[int, Int(4096, 1 << 40)] = 10 * 1024 * 1024
    log_file_backups: Annotated[int, Int(0, 100)] = 3

    def check(self, root: Any) -> list[Problem]:
        features = sorted(name for name in type(root).model_fields if name not in ("mqtt", "bridge"))
        return [("keep_running_without", f"{name!r} is not a feature (one of {', '.join(features)})")
                for name in self.keep_running_without if name not in features]

    @property
    def instance_name(self) -> str:
        return self.instance or names.default_instance()

    @property
    def state_path(self) -> Path:
        """The state directory; the default follows $XDG_STATE_HOME when it is set."""
        xdg = os.environ.get("XDG_STATE_HOME")
        if self.state_dir == DEFAULT_STATE_DIR and xdg:
            return Path(xdg) / "ruview-bridge"
        return Path(self.state_dir).expanduser()
