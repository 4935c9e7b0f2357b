"""The base of every config section: unknown keys refused, `null` meaning "all defaults"."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from bridge.config.types import Bool

Problem = tuple[str, str]  # (key path below the section, message)


class Section(BaseModel):
    """A mapping of keys in config.yaml; every key has a default, so a file lists only changes."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False, arbitrary_types_allowed=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_empty(cls, data: Any) -> Any:
        return {} if data is None else data

    def check(self, root: Any) -> list[Problem]:
        """Rules across keys (or sections), run once every key is valid on its own."""
        return []


class ExtensionSection(Section):
    """A feature's own section: it decides whether the feature runs."""

    enabled: Bool = True
