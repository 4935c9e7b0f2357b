"""A local record of what each board was given, keyed by the board (not the USB socket),
so the next run can say what changed. It never holds the Wi-Fi password."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


def default_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "ruview" / "nodes.json"


def save(path: Path, board: str, record: dict) -> None:
    """Merge `record` into the board's entry; secrets are refused, not filtered silently."""
    if "password" in record:
        raise ValueError("a provisioning record must not hold the Wi-Fi password")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError):
        records = {}
    entry = records.setdefault(board, {})
    entry.update(record)
    entry["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    staged = path.with_suffix(".tmp")
    staged.write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")
    staged.chmod(0o600)
    staged.replace(path)


def load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
