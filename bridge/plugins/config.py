"""The `plugins:` section: where plugins are, whom to trust, how hard to restart them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypeAlias

from bridge.config import ExtensionSection, Problem
from bridge.config.types import Bool, Check, Int, Number, Text, expected
from bridge.plugins.trust import parse_public_key


def _dirs(v: Any) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(d, str) and d for d in v):
        raise expected("a list of directories")
    return v


def _keys(v: Any) -> list[str]:
    if not isinstance(v, list):
        raise expected("a list of ed25519:<base64> publisher keys")
    for key in v:
        try:
            parse_public_key(key)
        except ValueError:
            raise expected("a list of ed25519:<base64> publisher keys (from `ruview-bridge plugin keygen`)") from None
    return v


def _entries(v: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(d, dict) for k, d in v.items()):
        raise expected("a mapping of plugin domain -> its config entry data (a mapping)")
    return v


Dirs: TypeAlias = Annotated[list[str], Check(_dirs)]
Keys: TypeAlias = Annotated[list[str], Check(_keys)]
Entries: TypeAlias = Annotated[dict[str, dict[str, Any]], Check(_entries)]


class PluginsConfig(ExtensionSection):
    enabled: Bool = False
    dirs: Dirs = ["plugins"]  # each: a plugin directory, or a directory of plugin directories
    trusted_keys: Keys = []
    allow_unsigned: Bool = False  # development only: runs unsigned or untrusted plugins, said loudly
    allow_hash_only_signatures: Bool = False  # the seed's signature over the module hash alone
    entries: Entries = {}  # plugin domain -> the data of its config entry (setup_entry)
    registry: Annotated[str, Text(what="an https:// URL or a path of a registry index")] = ""  # plugin install
    registry_ca: Annotated[str, Text(what="a CA certificate file")] = ""  # for a registry with a private CA
    cache_dir: Annotated[str, Text(what="a directory")] = "~/.cache/ruview-bridge/plugins"
    audit_log: Annotated[str, Text(what="a file")] = "~/.local/state/ruview-bridge/plugins-audit.jsonl"
    watch: Bool = True  # load, reload and unload when plugin files change
    watch_interval: Annotated[float, Number(0.2, 3600)] = 2.0
    max_crashes: Annotated[int, Int(1, 1000)] = 5  # within crash_window seconds, then the plugin is disabled
    crash_window: Annotated[float, Number(1, 86400)] = 300.0
    restart_backoff: Annotated[float, Number(0.01, 600)] = 1.0  # seconds before the first restart, doubling to 60

    def check(self, root: Any) -> list[Problem]:
        problems = []
        for directory in self.dirs if self.enabled else []:
            path = Path(directory).expanduser()
            if path.exists() and not path.is_dir():
                problems.append(("dirs", f"{directory} is not a directory"))
        return problems
