"""The ota: section: where releases are, which nodes are held at a version, how rollouts go."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from bridge.config import ExtensionSection
from bridge.config.types import Bool, Int, Number, Slug, Text


class OtaConfig(ExtensionSection):
    enabled: Bool = False
    # more release images (*.bin) besides <state dir>/ota/releases (ruview-node release add)
    releases_dir: Annotated[str | None, Text(what="a directory", optional=True)] = None
    # held versions: a node's name, a room or "all" -> the version it gets (most specific wins)
    pins: dict[str, str] = Field(default_factory=dict)
    node_port: Annotated[int, Int(1, 65535)] = 8032      # the node's HTTP API
    batch_size: Annotated[int, Int(1, 100)] = 3           # nodes updated at once after the canary
    timeout: Annotated[float, Number(5, 3600)] = 120.0    # seconds for a node to come back
    settle: Annotated[float, Number(0, 600)] = 10.0       # seconds a new version must keep running
    discovery_prefix: Slug = "homeassistant"              # HA update and button entities
    # shown by HA's update entity as the release notes (e.g. the RuView releases page)
    release_notes_url: Annotated[str | None, Text(r"https?://\S+", "an http(s) URL", optional=True)] = None
