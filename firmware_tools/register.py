"""`--register`: tell the bridge about a node — in its config.yaml, and live when it is running.

config.yaml is edited with ruamel.yaml's round-trip mode, so the user's comments and
layout survive; PyYAML would rewrite the file without them. A running bridge gets the
`node/register` request, which applies at once (until its next restart, when the
file takes over).
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from bridge.catalog import load_config
from bridge.config import ConfigError
from bridge.mqtt.client import parse_broker_url


class RegisterError(RuntimeError):
    pass


@dataclass(frozen=True)
class Registration:
    node_id: int
    name: str | None
    room: str | None
    privacy_class: str | None

    def fields(self) -> dict:
        return {k: v for k, v in (("name", self.name), ("room", self.room),
                                  ("privacy_class", self.privacy_class)) if v is not None}


def register_in_config(path: Path, reg: Registration) -> str:
    """Add or update `nodes.devices.<id>`; the result is checked by the bridge's own validator."""
    yaml = YAML()
    yaml.preserve_quotes = True
    original = path.read_text() if path.exists() else ""
    doc = yaml.load(original) if original.strip() else None
    if doc is None:
        doc = CommentedMap()
    if not isinstance(doc, dict):
        raise RegisterError(f"{path}: the top level is not a mapping; fix the file or pass another --config")
    nodes = doc.setdefault("nodes", CommentedMap())
    devices = nodes.get("devices")
    if not isinstance(devices, dict):
        devices = nodes["devices"] = CommentedMap()
    entry = devices.setdefault(reg.node_id, CommentedMap())
    before = dict(entry)
    entry.update(reg.fields())
    if dict(entry) == before:
        return f"{path}: node {reg.node_id} already registered"
    staged = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    # the staged file is born with the original's mode (a config holding the MQTT password is
    # often 0600; it must never be readable by others, not even for a moment) and owner
    info = path.stat() if path.exists() else None
    mode = stat.S_IMODE(info.st_mode) if info else 0o600
    with os.fdopen(os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "w") as out:
        os.fchmod(out.fileno(), mode)  # the umask must not loosen it either
        if info is not None and (info.st_uid, info.st_gid) != (os.getuid(), os.getgid()):
            try:
                os.fchown(out.fileno(), info.st_uid, info.st_gid)
            except PermissionError:
                pass  # not root: the file stays ours, with the original's mode
        yaml.dump(doc, out)
    try:
        load_config(str(staged), env={})
    except ConfigError as exc:
        staged.unlink()
        raise RegisterError(f"{path}: registering node {reg.node_id} would make the config invalid: "
                            f"{'; '.join(exc.problems)}") from None
    staged.replace(path)
    return f"{path}: node {reg.node_id} registered as {json.dumps(reg.fields())}"


def register_with_bridge(url: str, base_topic: str, reg: Registration, timeout: float = 5.0,
                         username: str | None = None, password: str | None = None) -> dict:
    """Send `node/register` to a running bridge and return its answer's data."""
    import paho.mqtt.client as mqtt

    if not url.startswith(("mqtt://", "mqtts://")):
        raise RegisterError(f"--bridge-mqtt {url!r}: expected mqtt://host[:port] or mqtts://host[:port]")
    host, port, tls = parse_broker_url(url)
    transaction = secrets.token_hex(6)
    answer: dict = {}
    done = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"ruview-node-{transaction}")
    if username:
        client.username_pw_set(username, password)
    if tls:
        client.tls_set()
    response_topic = f"{base_topic}/bridge/response/node/register"

    def on_connect(c, userdata, flags, reason, props):
        c.subscribe(response_topic, qos=1)

    def on_subscribe(c, userdata, mid, reasons, props):
        body = {"node_id": reg.node_id, **reg.fields(), "transaction": transaction}
        c.publish(f"{base_topic}/bridge/request/node/register", json.dumps(body), qos=1)

    def on_message(c, userdata, msg):
        try:
            data = json.loads(msg.payload)
        except ValueError:
            return
        if data.get("transaction") == transaction:
            answer.update(data)
            done.set()

    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    try:
        client.connect(host, port, 30)
    except OSError as exc:
        raise RegisterError(f"cannot reach the broker at {url}: {exc}") from None
    client.loop_start()
    try:
        if not done.wait(timeout):
            raise RegisterError(f"no answer from a bridge on {url} (base topic {base_topic!r}) within "
                                f"{timeout:g} s; is ruview-bridge running there?")
    finally:
        client.loop_stop()
        client.disconnect()
    if answer.get("status") != "ok":
        raise RegisterError(f"the bridge refused the registration: {answer.get('error', answer)}")
    return answer.get("data", {})
