"""config.yaml: schema, validation, defaults and secrets.

The schema is data (below), so validation, the documented defaults and the
redacted copy in `bridge/info` all come from one place. A user's file only
needs the keys that differ from the defaults; every error names the key path
and what was expected, because that is what someone editing YAML can act on.
"""

from __future__ import annotations

import copy
import difflib
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from bridge.nodes.presence import THRESHOLD_RANGES
from bridge.nodes.schedule import expected_hours

REDACTED = "***"


class ConfigError(Exception):
    """A configuration problem a user can fix; str() is one line."""


# ---------------------------------------------------------------- schema kinds


@dataclass(frozen=True)
class Field:
    """One leaf key: its default, how to check it, and whether it is a secret."""

    default: Any
    check: Callable[[Any], Any]  # returns the normalised value or raises ValueError(expected)
    secret: bool = False
    env: str | None = None  # environment variable that overrides the file


@dataclass(frozen=True)
class Section:
    fields: dict[str, "Field | Section | MapOf"]


@dataclass(frozen=True)
class MapOf:
    """A user-keyed mapping (e.g. nodes by id) whose values share one section."""

    key: Callable[[Any], Any]
    value: Section
    default: dict = field(default_factory=dict)


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if value is None:
        return "null"
    return repr(value)


def integer(lo: int, hi: int) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"an integer {lo}..{hi}")
        return v

    return check


def number(lo: float, hi: float) -> Callable[[Any], float]:
    def check(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
            raise ValueError(f"a number {lo:g}..{hi:g}")
        return float(v)

    return check


def optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda v: None if v is None else check(v)


def boolean(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError("true or false")
    return v


def text(pattern: str | None = None, what: str = "a string", optional: bool = False):
    rx = re.compile(pattern) if pattern else None

    def check(v: Any) -> str | None:
        if v is None and optional:
            return None
        if not isinstance(v, str) or (rx is not None and not rx.fullmatch(v)):
            raise ValueError(what)
        return v

    return check


def choice(*options: str) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        v = str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
        if v not in options:
            raise ValueError("one of " + ", ".join(options))
        return v

    return check


def ip_address(v: Any) -> str:
    try:
        return str(ipaddress.ip_address(v))
    except ValueError:
        raise ValueError("an IP address such as 127.0.0.1") from None


def broker_url(v: Any) -> str:
    if v == "auto":
        return v
    if not isinstance(v, str) or not re.fullmatch(r"mqtts?://[^/@\s]+(:\d+)?/?", v):
        if isinstance(v, str) and "@" in v:
            raise ValueError("a URL without credentials (put them in mqtt.username and "
                             "mqtt.password or RUVIEW_MQTT_PASSWORD)")
        raise ValueError("auto, mqtt://host[:port] or mqtts://host[:port]")
    return v.rstrip("/")


SLUG = r"[a-z0-9_][a-z0-9_-]*"

PRIVACY_CLASSES = {"raw": 0, "derived": 1, "anonymous": 2, "restricted": 3}


def privacy_class(v: Any) -> int:
    """0..3 or raw / derived / anonymous / restricted (wire-format.md, BFLD)."""
    if isinstance(v, str) and v.lower() in PRIVACY_CLASSES:
        return PRIVACY_CLASSES[v.lower()]
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 3:
        return v
    raise ValueError("raw, derived, anonymous, restricted or 0..3")


def node_id(v: Any) -> int:
    try:
        n = int(v)
    except (TypeError, ValueError):
        n = -1
    if isinstance(v, bool) or not 1 <= n <= 255:
        raise ValueError("a node id 1..255")
    return n

SCHEMA = Section({
    "mqtt": Section({
        "url": Field("auto", broker_url),
        "username": Field(None, text(optional=True), env="RUVIEW_MQTT_USERNAME"),
        "password": Field(None, text(optional=True), secret=True, env="RUVIEW_MQTT_PASSWORD"),
        "password_file": Field(None, text(optional=True, what="a file path")),
        "base_topic": Field("ruview", text(SLUG + r"(/" + SLUG + r")*",
                                           "a topic of [a-z0-9_-] words without + or #")),
        "client_id": Field(None, text(r"[A-Za-z0-9_.:-]{1,64}", "1..64 of [A-Za-z0-9_.:-]",
                                      optional=True)),
        "protocol": Field("auto", choice("auto", "3.1.1", "5")),
        "keepalive": Field(60, integer(5, 3600)),
        "tls": Section({
            "ca": Field(None, text(optional=True, what="a file path")),
            "cert": Field(None, text(optional=True, what="a file path")),
            "key": Field(None, text(optional=True, what="a file path")),
            "verify": Field(True, boolean),
        }),
        "reconnect": Section({
            "min_delay": Field(0.5, number(0.05, 60)),
            "max_delay": Field(30.0, number(0.1, 3600)),
        }),
        "outbox_size": Field(10000, integer(10, 10_000_000)),
        "max_payload": Field(256 * 1024, integer(1024, 256 * 1024 * 1024)),
        "embedded": Section({
            "bind": Field("127.0.0.1", ip_address),
            "port": Field(1883, integer(1, 65535)),
        }),
    }),
    "nodes": Section({
        "udp": Section({
            "enabled": Field(True, boolean),
            "bind": Field("0.0.0.0", ip_address),
            "port": Field(5005, integer(1, 65535)),
            "queue": Field(20000, integer(100, 10_000_000)),
        }),
        "serial": MapOf(text(SLUG, "a label of [a-z0-9_-]"), Section({
            "url": Field(None, text(what="a device path or pyserial URL")),
            "baudrate": Field(115200, integer(300, 4_000_000)),
            "log": Field(False, boolean),
        })),
        "offline_after": Field(30.0, number(1, 86400)),
        "publish_interval": Field(1.0, number(0.05, 3600)),
        "max_delay": Field(1.0, number(0.1, 3600)),
        "privacy_class": Field(2, privacy_class),
        "presence": Section({
            "enter_ratio": Field(3.0, number(*THRESHOLD_RANGES["enter_ratio"])),
            "exit_ratio": Field(1.8, number(*THRESHOLD_RANGES["exit_ratio"])),
            "hold": Field(5.0, number(*THRESHOLD_RANGES["hold"])),
            "window": Field(2.0, number(0.2, 60)),
            "warmup": Field(10.0, number(1, 3600)),
            "calibration": Field(30.0, number(1, 3600)),
            "drift_tau": Field(600.0, number(10, 864000)),
            "occupancy_window": Field(60.0, number(0, 86400)),
        }),
        "devices": MapOf(node_id, Section({
            "name": Field(None, text(SLUG, "a name of [a-z0-9_-]", optional=True)),
            "room": Field(None, text(optional=True)),
            "privacy_class": Field(None, optional(privacy_class)),
            **{key: Field(None, optional(number(lo, hi))) for key, (lo, hi) in THRESHOLD_RANGES.items()},
            "expected_hours": Field(None, expected_hours),
        })),
    }),
    "homeassistant": Section({
        "enabled": Field(True, boolean),
        "discovery_prefix": Field("homeassistant", text(SLUG, "a topic level of [a-z0-9_-]")),
        "mode": Field("component", choice("component", "device")),
        "status_topic": Field("homeassistant/status", text(SLUG + r"(/" + SLUG + r")*", "a topic")),
        "discover_devices": Field(True, boolean),
        "statestream_topic": Field(None, text(SLUG + r"(/" + SLUG + r")*", "a topic", optional=True)),
        "collect_seconds": Field(3.0, number(0, 60)),
        "birth_delay": Field(5.0, number(0, 120)),
        "rename_pause": Field(2.0, number(0, 60)),
    }),
    "bridge": Section({
        "health_interval": Field(30.0, number(1, 86400)),
        "shutdown_timeout": Field(5.0, number(0.1, 120)),
        "log_level": Field("info", choice("debug", "info", "warning", "error")),
    }),
})


# ---------------------------------------------------------------- loading


def defaults(schema: Section = SCHEMA) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, kind in schema.fields.items():
        if isinstance(kind, Section):
            out[name] = defaults(kind)
        elif isinstance(kind, MapOf):
            out[name] = copy.deepcopy(kind.default)
        else:
            out[name] = copy.deepcopy(kind.default)
    return out


def _validate(raw: Any, schema: Section, path: str, errors: list[str]) -> dict[str, Any]:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        errors.append(f"{path or 'top level'}: expected a mapping of keys, got {_describe(raw)}")
        return defaults(schema)
    out = defaults(schema)
    for key, value in raw.items():
        where = f"{path}.{key}" if path else str(key)
        kind = schema.fields.get(key)
        if kind is None:
            near = difflib.get_close_matches(str(key), schema.fields, n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else \
                f" (known keys: {', '.join(schema.fields)})"
            errors.append(f"{where}: unknown key{hint}")
        elif isinstance(kind, Section):
            out[key] = _validate(value, kind, where, errors)
        elif isinstance(kind, MapOf):
            out[key] = {}
            if value is None:
                continue
            if not isinstance(value, dict):
                errors.append(f"{where}: expected a mapping, got {_describe(value)}")
                continue
            for sub_key, sub_value in value.items():
                try:
                    norm_key = kind.key(sub_key)
                except ValueError as exc:
                    errors.append(f"{where}.{sub_key}: key must be {exc}")
                    continue
                out[key][norm_key] = _validate(sub_value, kind.value, f"{where}.{sub_key}", errors)
        else:
            try:
                out[key] = kind.check(value)
            except ValueError as exc:
                errors.append(f"{where}: expected {exc}, got {_describe(value)}")
    return out


def _apply_env(cfg: dict[str, Any], schema: Section, env: dict[str, str]) -> None:
    for name, kind in schema.fields.items():
        if isinstance(kind, Section):
            _apply_env(cfg[name], kind, env)
        elif isinstance(kind, Field) and kind.env and env.get(kind.env):
            cfg[name] = env[kind.env]


def _cross_checks(cfg: dict[str, Any], source: str) -> list[str]:
    errors = []
    mqtt = cfg["mqtt"]
    if mqtt["password_file"] and not mqtt["password"]:
        try:
            mqtt["password"] = Path(mqtt["password_file"]).read_text().strip()
        except OSError as exc:
            errors.append(f"mqtt.password_file: cannot read {mqtt['password_file']}: {exc.strerror}")
    if mqtt["reconnect"]["min_delay"] > mqtt["reconnect"]["max_delay"]:
        errors.append("mqtt.reconnect.min_delay: expected at most mqtt.reconnect.max_delay")
    tls = mqtt["tls"]
    if bool(tls["cert"]) != bool(tls["key"]):
        errors.append("mqtt.tls.cert: expected mqtt.tls.cert and mqtt.tls.key together")
    nodes = cfg["nodes"]
    if nodes["privacy_class"] < 2:
        errors.append(f"nodes.privacy_class: class {nodes['privacy_class']} may not be exported; "
                      "only anonymous (2) or restricted (3) leave this host (privacy rule 2)")
    for nid, dev in nodes["devices"].items():
        cls = dev["privacy_class"]
        if cls is not None and cls < 2:
            errors.append(f"nodes.devices.{nid}.privacy_class: node {nid}"
                          f"{' (' + dev['name'] + ')' if dev['name'] else ''} is "
                          f"{[k for k, v in PRIVACY_CLASSES.items() if v == cls][0]} ({cls}); only "
                          "anonymous (2) or restricted (3) may leave this host (privacy rule 2)")
    if nodes["presence"]["exit_ratio"] > nodes["presence"]["enter_ratio"]:
        errors.append("nodes.presence.exit_ratio: expected at most nodes.presence.enter_ratio")
    for label, link in nodes["serial"].items():
        if not link["url"]:
            errors.append(f"nodes.serial.{label}.url: expected a device path or pyserial URL")
    ha = cfg["homeassistant"]
    if ha["discovery_prefix"] == mqtt["base_topic"].split("/")[0]:
        errors.append(f"homeassistant.discovery_prefix: {ha['discovery_prefix']!r} is also the start of "
                      "mqtt.base_topic; give them different names")
    names = [d["name"] for d in nodes["devices"].values() if d["name"]]
    if len(names) != len(set(names)):
        errors.append("nodes.devices: two nodes share a name; names must be unique")
    if mqtt["url"] == "auto" and not ipaddress.ip_address(mqtt["embedded"]["bind"]).is_loopback \
            and not (mqtt["username"] and mqtt["password"]):
        errors.append(f"mqtt.embedded.bind: listening on {mqtt['embedded']['bind']} (beyond this "
                      "host) requires mqtt.username and mqtt.password")
    return errors


def load_config(path: str | os.PathLike | None, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Read, merge over defaults and validate; raise ConfigError naming file and key."""
    env = os.environ if env is None else env
    source = str(path) if path is not None else "<defaults>"
    raw: Any = {}
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{source}: cannot read: not UTF-8 text") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}: " if mark else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"{source}: {where}invalid YAML: {problem}") from None
    return validate_config(raw, source, env)


def validate_config(raw: Any, source: str = "<config>", env: dict[str, str] | None = None) -> dict[str, Any]:
    env = os.environ if env is None else env
    errors: list[str] = []
    cfg = _validate(raw, SCHEMA, "", errors)
    if not errors:
        _apply_env(cfg, SCHEMA, env)
        errors = _cross_checks(cfg, source)
    if errors:
        more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" \
            if len(errors) > 1 else ""
        raise ConfigError(f"{source}: {errors[0]}{more}")
    return cfg


def redacted(cfg: dict[str, Any], schema: Section = SCHEMA) -> dict[str, Any]:
    """A copy safe to log or publish: every secret that is set becomes '***'."""
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        kind = schema.fields.get(key)
        if isinstance(kind, Section):
            out[key] = redacted(value, kind)
        elif isinstance(kind, MapOf):
            out[key] = {k: redacted(v, kind.value) for k, v in value.items()}
        elif isinstance(kind, Field) and kind.secret and value:
            out[key] = REDACTED
        else:
            out[key] = copy.deepcopy(value)
    return out


def secret_values(cfg: dict[str, Any], schema: Section = SCHEMA) -> list[str]:
    """Every secret string set in cfg, for the log filter that masks them."""
    found: list[str] = []
    for key, value in cfg.items():
        kind = schema.fields.get(key)
        if isinstance(kind, Section):
            found += secret_values(value, kind)
        elif isinstance(kind, MapOf):
            for sub in value.values():
                found += secret_values(sub, kind.value)
        elif isinstance(kind, Field) and kind.secret and isinstance(value, str) and value:
            found.append(value)
    return found
