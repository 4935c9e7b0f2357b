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
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from bridge.app import connection_settings
from bridge.catalog import load_config
from bridge.config import ConfigError
from bridge.mqtt.settings import ConnectionSettings
from bridge.mqtt.oneshot import OneShotError, ask
from bridge.topics import Topics


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


def bridge_connection(config_path: Path, url: str | None = None,
                      base_topic: str | None = None) -> tuple[ConnectionSettings, Topics]:
    """How to reach the bridge that reads `config_path`: its broker (or `url`), with its TLS settings,
    username and password, and its base topic (or `base_topic`), as the bridge itself connects."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise RegisterError(f"cannot read the bridge's config {config_path}: {exc}") from None
    if url is not None and not url.startswith(("mqtt://", "mqtts://")):
        raise RegisterError(f"--bridge-mqtt {url!r}: expected mqtt://host[:port] or mqtts://host[:port]")
    url = url or config.mqtt.url
    if url == "auto":
        url = f"mqtt://127.0.0.1:{config.mqtt.embedded.port}"
    return connection_settings(config, url), Topics(base_topic or config.mqtt.base_topic)


def register_with_bridge(settings: ConnectionSettings, topics: Topics, reg: Registration,
                         timeout: float = 5.0) -> dict:
    """Send `node/register` to a running bridge and return its answer's data."""
    transaction = secrets.token_hex(6)
    body = {"node_id": reg.node_id, **reg.fields(), "transaction": transaction}
    try:
        answer = ask(settings, topic=topics.bridge_request("node/register"), body=body,
                     answer_topic=topics.bridge_response("node/register"),
                     is_answer=lambda a: a.get("transaction") == transaction, timeout=timeout,
                     client_id=f"ruview-node-{transaction}",
                     no_answer=f"base topic {topics.base!r}; is ruview-bridge running there?")
    except OneShotError as exc:
        if exc.reached:
            raise RegisterError(f"no answer from a bridge on {settings.url}: {exc}") from None
        raise RegisterError(str(exc)) from None
    if answer.get("status") != "ok":
        raise RegisterError(f"the bridge refused the registration: {answer.get('error', answer)}")
    return answer.get("data", {})
