"""The `homeassistant:` section: discovery out, discovery in, and HA's birth topic."""

from __future__ import annotations

from typing import Any

from bridge.config import ExtensionSection, Problem
from bridge.config.types import Bool, Choice, Number, OptionalTopicPath, Slug, TopicPath


class HomeAssistantConfig(ExtensionSection):
    discovery_prefix: Slug = "homeassistant"
    mode: Choice("component", "device") = "component"
    status_topic: TopicPath = "homeassistant/status"
    discover_devices: Bool = True
    statestream_topic: OptionalTopicPath = None
    collect_seconds: Number(0, 60) = 3.0
    birth_delay: Number(0, 120) = 5.0
    rename_pause: Number(0, 60) = 2.0

    def check(self, root: Any) -> list[Problem]:
        if self.discovery_prefix == root.mqtt.base_topic.split("/")[0]:
            return [("discovery_prefix", f"{self.discovery_prefix!r} is also the start of mqtt.base_topic; "
                     "give them different names")]
        return []
