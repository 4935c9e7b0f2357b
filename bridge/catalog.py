"""Which features exist: the built-in extensions, in start order, and any installed ones.

The CLI and the tests build a bridge from the same list (`app.build_bridge`),
and config validation takes each feature's section model from here, so that
`bridge.config` itself imports no feature. Other packages can add an
extension through the `ruview_bridge.extensions` entry-point group.
"""

from __future__ import annotations

import importlib
import logging
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

from bridge import config as _config
from bridge.config import ExtensionSection
from bridge.extension import Extension

log = logging.getLogger(__name__)

BUILT_IN = (
    "bridge.nodes.extension:NodesExtension",
    "bridge.homeassistant.extension:HomeAssistantExtension",
    "bridge.plugins.extension:PluginsExtension",
    "bridge.http.extension:HttpExtension",
    "bridge.homekit.extension:HomeKitExtension",
    "bridge.assist.extension:AssistExtension",
)
ENTRY_POINT_GROUP = "ruview_bridge.extensions"


def _load(spec: str) -> type[Extension]:
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


@lru_cache(maxsize=1)
def extension_classes() -> tuple[type[Extension], ...]:
    classes = [_load(spec) for spec in BUILT_IN]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
        except Exception as exc:  # a broken add-on must not stop the bridge
            log.error("cannot load extension %s (%s): %s", ep.name, ep.value, exc)
            continue
        if any(c.name == cls.name for c in classes):
            log.error("extension %s (%s) is named like one already loaded; skipped", ep.name, ep.value)
            continue
        classes.append(cls)
    return tuple(classes)


def sections() -> dict[str, type[ExtensionSection]]:
    """Each feature's config section, by the key it owns in config.yaml."""
    return {cls.name: cls.Config for cls in extension_classes()}


def enabled(config: Any) -> list[Extension]:
    """A new instance of every extension whose section says `enabled: true`, in start order."""
    return [cls() for cls in extension_classes() if getattr(config, cls.name).enabled]


def load_config(path: Any, env: dict[str, str] | None = None,
                extra: dict[str, type[ExtensionSection]] | None = None) -> Any:
    """config.yaml with every feature's section (the one loader the CLI and tools use);
    `extra` adds the sections of extensions handed to the bridge directly (tests, embedding)."""
    return _config.load_config(path, sections={**sections(), **(extra or {})}, env=env)


def validate_config(raw: Any, source: str = "<config>", env: dict[str, str] | None = None,
                    extra: dict[str, type[ExtensionSection]] | None = None) -> Any:
    return _config.validate_config(raw, source, sections={**sections(), **(extra or {})}, env=env)
