"""Each node's OTA pre-shared key, kept by the bridge: made at provisioning, read by `ota`.

The firmware checks `Authorization: Bearer <psk>` against NVS `security/ota_psk` (at most 64
characters). A node without one refuses every update (current firmware) or accepts every
update (older firmware), so provisioning always sets one. The bridge side keeps one file per
node, `<state dir>/node-secrets/node-<id>.psk`, mode 0600 in a 0700 folder, holding the PSK and a
newline: the same file works as `--psk-file`. A PSK is never printed, never on a command line
and never on MQTT.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

PSK_MAX = 64
"""The firmware's buffer holds 64 characters and a NUL."""

FOLDER = "node-secrets"


class SecretError(ValueError):
    """A PSK file that cannot be used; the message names the file and what to do."""


def new_psk() -> str:
    """64 hex characters from 32 random bytes: the largest PSK the firmware keeps."""
    return secrets.token_hex(32)


def check_psk(psk: str, where: str) -> str:
    if not psk:
        raise SecretError(f"{where}: the PSK is empty")
    if len(psk) > PSK_MAX:
        raise SecretError(f"{where}: the PSK has {len(psk)} characters; the node keeps at most {PSK_MAX}")
    if not all(0x21 <= ord(c) < 0x7F for c in psk):
        raise SecretError(f"{where}: the PSK must be printable ASCII without spaces")
    return psk


def read_psk_file(path: Path) -> str:
    """The PSK in `path` (one trailing newline, CR/LF or spaces allowed)."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise SecretError(f"{path}: no such PSK file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretError(f"{path}: cannot read the PSK file ({exc})") from None
    return check_psk(text.strip(), str(path))


@dataclass(frozen=True)
class NodeSecrets:
    """What provisioning writes besides csi_cfg: the OTA PSK and the WASM module key."""

    ota_psk: str | None = field(default=None, repr=False)
    wasm_pubkey: bytes | None = None      # the publisher's 32-byte Ed25519 public key
    wasm_verify: bool | None = None

    def given(self) -> bool:
        return any(v is not None for v in (self.ota_psk, self.wasm_pubkey, self.wasm_verify))

    def nvs_updates(self) -> dict[str, dict[str, tuple[str, int | str | bytes]]]:
        """Namespace -> key -> (type, value), as the firmware reads them."""
        out: dict[str, dict[str, tuple[str, int | str | bytes]]] = {}
        if self.ota_psk is not None:
            out["security"] = {"ota_psk": ("string", self.ota_psk)}
        cfg: dict[str, tuple[str, int | str | bytes]] = {}
        if self.wasm_pubkey is not None:
            cfg["wasm_pubkey"] = ("blob", self.wasm_pubkey)
        if self.wasm_verify is not None:
            cfg["wasm_verify"] = ("u8", int(self.wasm_verify))
        if cfg:
            out["csi_cfg"] = cfg
        return out


class PskStore:
    """The bridge's per-node PSK files under its state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.folder = Path(state_dir) / FOLDER

    def path(self, node_id: int) -> Path:
        return self.folder / f"node-{node_id}.psk"

    def get(self, node_id: int) -> str | None:
        path = self.path(node_id)
        return read_psk_file(path) if path.exists() else None

    def put(self, node_id: int, psk: str) -> Path:
        """Write the PSK (0600, whole or not at all) and return its file."""
        check_psk(psk, f"node {node_id}")
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.folder, 0o700)
        path = self.path(node_id)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(psk + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path

    def get_or_create(self, node_id: int) -> tuple[str, bool]:
        """The node's PSK, made now if the bridge has none (True when new)."""
        existing = self.get(node_id)
        if existing is not None:
            return existing, False
        psk = new_psk()
        self.put(node_id, psk)
        return psk, True


def bridge_state_dir(config_path: Path | None, state_dir: Path | None = None) -> Path:
    """The bridge's state directory: `state_dir`, else `bridge.state_dir` of the config file
    (or its default when the file does not exist)."""
    if state_dir is not None:
        return state_dir
    from bridge.config.core import BridgeConfig

    if config_path is not None and config_path.exists():
        from bridge.catalog import load_config

        return Path(load_config(str(config_path)).bridge.state_path)
    return BridgeConfig().state_path
