"""A plugin's manifest.json: the seed's manifest (ADR-128 §3, a superset of Home Assistant's),
plus what the bridge needs to run it on MQTT (subscriptions, limits).

Validated as written: unknown keys, wrong types and malformed permission claims are errors that
name the file and the field. The security fields (`SECURITY_FIELDS`) are what a publisher's
signature covers (see trust.py), so they cannot be widened without re-signing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bridge import names
from bridge.plugins.abi import IMPORTS
from bridge.plugins.files import PluginFileError, read_bounded
from bridge.plugins.schema import schema_problems
from bridge.topics import InvalidTopic, check_filter

MANIFEST = "manifest.json"
# a plugin's domain (`ruview/plugin/<domain>/…`): the one rule, for the manifest and `plugin new`
DOMAIN = re.compile(r"[a-z][a-z0-9_]{0,63}")
DOMAIN_RULE = "a lowercase letter, then up to 63 of [a-z0-9_]"
VERSION = re.compile(r"\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?")
HASH = re.compile(r"sha256:[0-9a-f]{64}")
SIG = re.compile(r"ed25519:[A-Za-z0-9+/]{86}==")
KEY = re.compile(r"ed25519:[A-Za-z0-9+/]{43}=")
GLOB = re.compile(r"[a-z0-9_.*?\[\]-]{1,255}")
PERMISSION_KINDS = ("state:read", "state:write", "event:fire", "service:call", "mqtt:publish",
                    "mqtt:subscribe", "entity:register")
# What a signature covers besides the module digest: everything that grants or bounds power (and
# config_schema, when a manifest has one: see Manifest.security_fields).
SECURITY_FIELDS = ("domain", "version", "wasm_module_hash", "homecore_permissions", "host_imports_required",
                   "subscriptions", "subscribed_events", "subscribed_state_entities", "registered_services",
                   "limits", "dependencies")


def is_domain(text: object) -> bool:
    """A plugin domain (DOMAIN_RULE)."""
    return isinstance(text, str) and bool(DOMAIN.fullmatch(text))


class ManifestError(ValueError):
    """A manifest that cannot be used; str() names the file and each field at fault."""


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")
    memory_mb: int = Field(16, ge=1, le=1024)  # the plugin's linear memory, at most
    fuel_per_call: int = Field(50_000_000, ge=10_000, le=10_000_000_000)  # wasm instructions, roughly
    time_per_call_ms: int = Field(100, ge=1, le=60_000)  # the epoch deadline of one call
    queue: int = Field(1000, ge=1, le=100_000)  # events waiting for the plugin, then dropped (counted)
    host_calls_per_s: int = Field(200, ge=1, le=100_000)  # publishes/writes/calls; bursts of twice that
    table_elements: int = Field(10_000, ge=0, le=1_000_000)
    subscriptions: int = Field(32, ge=0, le=1000)  # MQTT filters the plugin may hold (hc_mqtt_subscribe)
    retained_topics: int = Field(64, ge=0, le=10_000)  # distinct topics it may publish retained


# Limits added after plugins were first signed: signed only when set, so that every signature made
# before they existed still verifies (a manifest without them gets the default, as before).
LATER_LIMITS = ("subscriptions", "retained_topics")


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domain: str
    name: str = Field(min_length=1, max_length=200)
    version: str
    documentation: str | None = None
    iot_class: str | None = None
    config_flow: bool = False
    dependencies: list[str] = []
    quality_scale: str | None = None
    codeowners: list[str] = []
    requirements: list[str] = []
    cog_id: str | None = Field(None, max_length=200)
    category: str | None = Field(None, max_length=64)
    wasm_module: str = "plugin.wasm"
    wasm_module_hash: str = ""
    wasm_module_sig: str = ""
    publisher_key: str = ""
    min_homecore_version: str | None = None
    host_imports_required: list[str] = []
    homecore_permissions: list[str] = []
    subscribed_events: list[str] = []
    subscribed_state_entities: list[str] = []
    registered_services: list[str] = []
    subscriptions: list[str] = []
    limits: Limits = Limits()
    config_schema: dict[str, Any] | None = None  # what its entry data must be (schema.py); signed when set

    @field_validator("domain")
    @classmethod
    def _domain(cls, v: str) -> str:
        if not is_domain(v):
            raise ValueError(f"expected a domain: {DOMAIN_RULE}")
        return v

    @field_validator("version", "min_homecore_version")
    @classmethod
    def _version(cls, v: str | None) -> str | None:
        if v is not None and not VERSION.fullmatch(v):
            raise ValueError("expected a version like 1.2.3")
        return v

    @field_validator("wasm_module")
    @classmethod
    def _module(cls, v: str) -> str:
        if "/" in v or "\\" in v or v.startswith(".") or not v.endswith(".wasm"):
            raise ValueError("expected a file name ending in .wasm, beside manifest.json")
        return v

    @field_validator("wasm_module_hash")
    @classmethod
    def _hash(cls, v: str) -> str:
        if v and not HASH.fullmatch(v):
            raise ValueError("expected sha256:<64 lowercase hex digits>")
        return v

    @field_validator("wasm_module_sig")
    @classmethod
    def _sig(cls, v: str) -> str:
        if v and not SIG.fullmatch(v):
            raise ValueError("expected ed25519:<base64 of a 64-byte signature>")
        return v

    @field_validator("publisher_key")
    @classmethod
    def _key(cls, v: str) -> str:
        if v and not KEY.fullmatch(v):
            raise ValueError("expected ed25519:<base64 of a 32-byte public key>")
        return v

    @field_validator("dependencies")
    @classmethod
    def _dependencies(cls, v: list[str]) -> list[str]:
        for dep in v:
            if not is_domain(dep):
                raise ValueError(f"{dep!r} is not a plugin domain ({DOMAIN_RULE})")
        return v

    @field_validator("host_imports_required")
    @classmethod
    def _imports(cls, v: list[str]) -> list[str]:
        for name in v:
            if name not in IMPORTS:
                raise ValueError(f"{name!r} is not a host import (there are: {', '.join(IMPORTS)})")
        return v

    @field_validator("homecore_permissions")
    @classmethod
    def _permissions(cls, v: list[str]) -> list[str]:
        for claim in v:
            problem = permission_problem(claim)
            if problem:
                raise ValueError(problem)
        return v

    @field_validator("subscribed_events")
    @classmethod
    def _events(cls, v: list[str]) -> list[str]:
        for event in v:
            if event != "*" and not names.is_identifier(event):
                raise ValueError(f"{event!r} is not an event type ({names.IDENTIFIER_RULE}) or *")
        return v

    @field_validator("subscribed_state_entities")
    @classmethod
    def _entities(cls, v: list[str]) -> list[str]:
        for glob in v:
            if not GLOB.fullmatch(glob):
                raise ValueError(f"{glob!r} is not an entity id glob like sensor.* or binary_sensor.*_presence")
        return v

    @field_validator("registered_services")
    @classmethod
    def _services(cls, v: list[str]) -> list[str]:
        for service in v:
            domain, _, name = service.partition(".")
            if not (names.is_identifier(domain) and names.is_identifier(name)):
                raise ValueError(f"{service!r} is not domain.service")
        return v

    @field_validator("subscriptions")
    @classmethod
    def _subscriptions(cls, v: list[str]) -> list[str]:
        for topic_filter in v:
            try:
                check_filter(topic_filter)
            except InvalidTopic as exc:
                raise ValueError(str(exc)) from None
        return v

    def security_fields(self) -> dict[str, Any]:
        fields = {field: _plain(getattr(self, field)) for field in SECURITY_FIELDS}
        if self.config_schema is not None:  # signed when set, so every signature made before it existed verifies
            fields["config_schema"] = self.config_schema
        return fields

    def description(self) -> dict[str, Any]:
        """What bridge/info, plugin/list and the HTTP registry say about the plugin."""
        return {"cog_id": self.cog_id or self.domain, "domain": self.domain, "name": self.name,
                "version": self.version, "category": self.category or "plugin"}


def _plain(value: Any) -> Any:
    if isinstance(value, Limits):
        return {k: v for k, v in value.model_dump().items()
                if k not in LATER_LIMITS or k in value.model_fields_set}
    return value.model_dump() if isinstance(value, BaseModel) else value


def permission_problem(claim: object) -> str | None:
    if not isinstance(claim, str):
        return f"{claim!r} is not a permission"
    if claim == "entity:register":
        return None
    parts = claim.split(":", 2)
    kind, pattern = (f"{parts[0]}:{parts[1]}", parts[2]) if len(parts) == 3 else (claim, "")
    if kind not in PERMISSION_KINDS:
        return (f"{claim!r} is not a permission: use one of "
                + ", ".join(f"{k}:<pattern>" if k != "entity:register" else k for k in PERMISSION_KINDS))
    if not pattern:
        return f"{claim!r} needs a pattern after {kind}:"
    if kind.startswith("mqtt:"):
        try:
            check_filter(pattern)
        except InvalidTopic as exc:
            return f"{claim!r}: {exc}"
    elif not GLOB.fullmatch(pattern):
        return f"{claim!r}: the pattern may use [a-z0-9_.-] and the globs * ? [...]"
    return None


def parse_manifest(data: bytes, source: str) -> Manifest:
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ManifestError(f"{source}: not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"{source}: expected a JSON object")
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        lines = []
        errors = exc.errors(include_url=False)
        for err in errors:
            field = ".".join(str(p) for p in err["loc"]) or "(top level)"
            if len(field) > 80:  # a field name is the manifest's words: never echoed at length
                field = field[:77] + "..."
            message = err["msg"].removeprefix("Value error, ")[:200]
            if err["type"] == "extra_forbidden":
                message = "unknown field"
            lines.append(f"{source}: {field}: {message}")
            if len(lines) == 20 and len(errors) > 20:
                lines.append(f"{source}: ... and {len(errors) - 20} more")
                break
        raise ManifestError("\n".join(lines)) from None
    problems = schema_problems(manifest.config_schema) if manifest.config_schema is not None else []
    if problems:  # one line each, as the bridge could not check entry data against it
        raise ManifestError("\n".join(f"{source}: {problem[:200]}" for problem in problems[:20]))
    return manifest


MAX_MANIFEST_BYTES = 64 * 1024


def load_manifest(directory: str | Path) -> Manifest:
    path = Path(directory) / MANIFEST
    try:
        data = read_bounded(path, MAX_MANIFEST_BYTES)
    except PluginFileError as exc:
        raise ManifestError(str(exc)) from None
    return parse_manifest(data, str(path))
