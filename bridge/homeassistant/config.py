"""The `homeassistant:` section: discovery out, discovery in, and HA's birth topic."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeAlias

from bridge.config import ExtensionSection, Problem
from bridge.config.types import Bool, Choice, Number, OptionalTopicPath, Slug, TopicPath

DiscoveryMode: TypeAlias = Literal["component", "device"]


class HomeAssistantConfig(ExtensionSection):
    discovery_prefix: Slug = "homeassistant"
    mode: Annotated[DiscoveryMode, Choice(DiscoveryMode)] = "component"
    status_topic: TopicPath = "homeassistant/status"
    discover_devices: Bool = True
    statestream_topic: OptionalTopicPath = None
    collect_seconds: Annotated[float, Number(0, 60)] = 3.0
    birth_delay: Annotated[float, Number(0, 120)] = 5.0
    rename_pause: Annotated[float, Number(0, 60)] = 2.0

    def check(self, root: Any) -> list[Problem]:
        if self.discovery_prefix == root.mqtt.base_topic.split("/")[0]:
            return [("discovery_prefix", f"{self.discovery_prefix!r} is also the start of mqtt.base_topic; "
                     "give them different names")]
        return []
