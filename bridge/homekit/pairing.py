"""What the HomeKit bridge remembers, and how a user pairs: files in `bridge.state_dir` (0600).

`homekit.state` is HAP-python's own (its long-term keys and the paired controllers);
`homekit.setup` holds the setup code and setup id, so `ruview-bridge homekit pair-info` shows the
same code as the running bridge, and a restart keeps it. `reset` removes both: every controller is
unpaired and the next start is a new accessory with a new code.
"""

from __future__ import annotations

import os
import secrets
import string
from dataclasses import dataclass
from pathlib import Path

import orjson
import segno

# codes HomeKit refuses (HAP specification, "Setup Code")
TRIVIAL = {f"{d}{d}{d}-{d}{d}-{d}{d}{d}" for d in "0123456789"} | {"123-45-678", "876-54-321"}


@dataclass(frozen=True)
class Setup:
    pincode: str  # XXX-XX-XXX
    setup_id: str  # 4 characters of [0-9A-Z], in the QR code


def new_setup() -> Setup:
    while True:
        digits = "".join(secrets.choice(string.digits) for _ in range(8))
        code = f"{digits[:3]}-{digits[3:5]}-{digits[5:]}"
        if code not in TRIVIAL:
            break
    return Setup(code, "".join(secrets.choice(string.digits + string.ascii_uppercase) for _ in range(4)))


class PairingFiles:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.state = directory / "homekit.state"
        self.setup_file = directory / "homekit.setup"

    def _ready(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    def setup(self) -> Setup:
        """The setup code and id, made on first use and kept."""
        self._ready()
        try:
            data = orjson.loads(self.setup_file.read_bytes())
            return Setup(data["pincode"], data["setup_id"])
        except (OSError, ValueError, KeyError, TypeError):
            setup = new_setup()
            fd = os.open(self.setup_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(orjson.dumps({"pincode": setup.pincode, "setup_id": setup.setup_id}))
            return setup

    def paired_clients(self) -> list[str]:
        try:
            return sorted(orjson.loads(self.state.read_bytes()).get("paired_clients", {}))
        except (OSError, ValueError):
            return []

    def reset(self) -> bool:
        """Forget every pairing and the setup code; True if there was anything to forget."""
        removed = False
        for path in (self.state, self.setup_file):
            try:
                path.unlink()
                removed = True
            except FileNotFoundError:
                pass
        return removed


def setup_uri(setup: Setup, category: int = 2) -> str:
    """The X-HM:// setup URI that HomeKit's QR code holds (category 2: a bridge)."""
    code = int(setup.pincode.replace("-", ""))
    payload = code | (1 << 28) | (category << 31)  # flag 2: IP transport
    base36 = ""
    alphabet = string.digits + string.ascii_uppercase
    while payload:
        payload, digit = divmod(payload, 36)
        base36 = alphabet[digit] + base36
    return f"X-HM://{base36.rjust(9, '0')}{setup.setup_id}"


def instructions(name: str, pincode: str, uri: str) -> str:
    qr = segno.make(uri, error="m")
    lines = [f"To pair '{name}' with Apple Home: Add Accessory, then scan this code or enter {pincode}", ""]
    for row in qr.matrix_iter(scale=1, border=2):
        lines.append("".join("\u2588\u2588" if bit else "  " for bit in row))
    lines += ["", f"Setup code: {pincode}"]
    return "\n".join(lines)
