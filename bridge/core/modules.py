"""Edge modules: what this bridge runs at the edge (the WASM plugins), as other features see it.

The plugin host puts each loaded module here (by its manifest's `cog_id`, name, version,
category, state); `bridge/info` and the sensing HTTP API's registry read it. One list, so the
two cannot disagree.
"""

from __future__ import annotations

import threading
from typing import Any, Mapping


class EdgeModules:
    def __init__(self) -> None:
        self._modules: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def put(self, module_id: str, description: Mapping[str, Any]) -> None:
        with self._lock:
            self._modules[module_id] = {"id": module_id, **description}

    def remove(self, module_id: str) -> None:
        with self._lock:
            self._modules.pop(module_id, None)

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(m) for m in sorted(self._modules.values(), key=lambda m: m["id"])]
