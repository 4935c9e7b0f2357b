"""Which features exist: the built-in extensions, in start order, and any installed ones.

The CLI and the tests build a bridge from the same list (`app.build_bridge`),
and config validation takes each feature's section model from here, so that
`bridge.config` itself imports no feature. Other packages can add an
extension through the `ruview_bridge.extensions` entry-point group.

Only what is enabled is loaded: validating config reads each built-in feature's section from its
light `config.py`, and a feature's extension module (with aiohttp, HAP-python, wasmtime,
hassil ...) is imported only when its section enables it. With the defaults that keeps a
started bridge near 50 MB instead of 90 (python -m bench.nodes_memory --start).
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

BUILT_IN: tuple[tuple[str, str, str], ...] = (  # (section, its model, the extension), in start order
    ("nodes", "bridge.nodes.config:NodesConfig", "bridge.nodes.extension:NodesExtension"),
    ("homeassistant", "bridge.homeassistant.config:HomeAssistantConfig",
     "bridge.homeassistant.extension:HomeAssistantExtension"),
    ("plugins", "bridge.plugins.config:PluginsConfig", "bridge.plugins.extension:PluginsExtension"),
    ("http", "bridge.http.config:HttpConfig", "bridge.http.extension:HttpExtension"),
    ("homekit", "bridge.homekit.config:HomeKitConfig", "bridge.homekit.extension:HomeKitExtension"),
    ("assist", "bridge.assist.config:AssistConfig", "bridge.assist.extension:AssistExtension"),
    ("ota", "bridge.ota.config:OtaConfig", "bridge.ota.extension:OtaExtension"),
)
ENTRY_POINT_GROUP = "ruview_bridge.extensions"


def _load(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def built_in(name: str) -> type[Extension]:
    """A built-in feature's extension class (imports its module and what that needs)."""
    spec = next(ext for section, _, ext in BUILT_IN if section == name)
    cls: type[Extension] = _load(spec)
    return cls


@lru_cache(maxsize=1)
def installed() -> tuple[type[Extension], ...]:
    """Extensions other packages add (entry points), loaded, after the built-in ones."""
    classes: list[type[Extension]] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
        except Exception as exc:  # a broken add-on must not stop the bridge
            log.error("cannot load extension %s (%s): %s", ep.name, ep.value, exc)
            continue
        if cls.name in {section for section, _, _ in BUILT_IN} or any(c.name == cls.name for c in classes):
            log.error("extension %s (%s) is named like one already loaded; skipped", ep.name, ep.value)
            continue
        classes.append(cls)
    return tuple(classes)


def extension_classes() -> tuple[type[Extension], ...]:
    """Every extension class, built-in and installed (imports every feature: for tools and tests)."""
    return tuple(built_in(section) for section, _, _ in BUILT_IN) + installed()


def sections() -> dict[str, type[ExtensionSection]]:
    """Each feature's config section, by the key it owns in config.yaml (no feature module imported)."""
    found: dict[str, type[ExtensionSection]] = {section: _load(model) for section, model, _ in BUILT_IN}
    found.update({cls.name: cls.Config for cls in installed()})
    return found


def enabled(config: Any) -> list[Extension]:
    """A new instance of every extension whose section says `enabled: true`, in start order;
    only these are imported."""
    return [built_in(section)() for section, _, _ in BUILT_IN if getattr(config, section).enabled] + [
        cls() for cls in installed() if getattr(config, cls.name).enabled]


def load_config(path: Any, env: dict[str, str] | None = None,
                extra: dict[str, type[ExtensionSection]] | None = None) -> Any:
    """config.yaml with every feature's section (the one loader the CLI and tools use);
    `extra` adds the sections of extensions handed to the bridge directly (tests, embedding)."""
    return _config.load_config(path, sections={**sections(), **(extra or {})}, env=env)


def validate_config(raw: Any, source: str = "<config>", env: dict[str, str] | None = None,
                    extra: dict[str, type[ExtensionSection]] | None = None) -> Any:
    return _config.validate_config(raw, source, sections={**sections(), **(extra or {})}, env=env)
