"""config.yaml: read, apply environment overrides, validate, report every problem at once.

The whole file is one pydantic model built from the bridge's own sections
(`mqtt`, `bridge`) plus one section per feature, which each feature owns
(catalog.py hands them in), so this module imports no feature. A user's file
only needs the keys that differ from the defaults; the defaults live once, on
the section models.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml
from pydantic import BaseModel, Field, SecretStr, ValidationError, create_model

from bridge.config.core import BridgeConfig, MqttConfig
from bridge.config.errors import mask, problem_lines, secret_paths
from bridge.config.section import Section

CORE_SECTIONS: dict[str, type[Section]] = {"mqtt": MqttConfig, "bridge": BridgeConfig}


class ConfigError(Exception):
    """Configuration problems a user can fix; str() is one line per problem, each naming the file."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(self.lines))

    @property
    def lines(self) -> list[str]:
        return [f"{self.source}: {p}" for p in self.problems]


@lru_cache(maxsize=32)
def _model(sections: tuple[tuple[str, type[Section]], ...]) -> type[Section]:
    fields: dict[str, Any] = {name: (cls, Field(default_factory=cls))
                              for name, cls in (*CORE_SECTIONS.items(), *sections)}
    return create_model("Config", __base__=Section, **fields)


def config_model(sections: Mapping[str, type[Section]] | None = None) -> type[Section]:
    return _model(tuple((sections or {}).items()))


def defaults(sections: Mapping[str, type[Section]] | None = None) -> Section:
    return config_model(sections)()


def _env_fields(model: type[BaseModel], path: tuple[str, ...] = (),
                env_only: bool = False) -> Iterator[tuple[tuple[str, ...], str]]:
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if extra.get("env") and (not env_only or extra.get("env_only")):
            yield (*path, name), str(extra["env"])
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _env_fields(annotation, (*path, name), env_only)


def _apply_env(raw: dict[str, Any], model: type[BaseModel], env: Mapping[str, str]) -> dict[str, str]:
    """Put environment overrides into the raw file content, so they are validated like it."""
    sources: dict[str, str] = {}
    for path, var in _env_fields(model):
        value = env.get(var)
        if not value:
            continue
        node = raw
        for key in path[:-1]:
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
            if not isinstance(node, dict):
                break
        else:
            node[path[-1]] = value
            sources[".".join(path)] = var
    return sources


def _checks(section: BaseModel, root: BaseModel, path: str) -> list[str]:
    problems: list[str] = []
    if isinstance(section, Section):
        for key, message in section.check(root):
            problems.append(f"{path + '.' if path else ''}{key}: {message}")
    for name in type(section).model_fields:
        value = getattr(section, name)
        where = f"{path}.{name}" if path else name
        if isinstance(value, BaseModel):
            problems += _checks(value, root, where)
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, BaseModel):
                    problems += _checks(item, root, f"{where}.{key}")
    return problems


def validate_config(raw: Any, source: str = "<config>", *,
                    sections: Mapping[str, type[Section]] | None = None,
                    env: Mapping[str, str] | None = None) -> Any:
    """The validated config, or ConfigError listing every problem (one line each)."""
    env = os.environ if env is None else env
    model = config_model(sections)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(source, ["top level: expected a mapping of keys such as mqtt: and nodes:"])
    raw = _copy(raw)
    refused = [f"{'.'.join(path)}: not taken from a file; set {var} in the environment instead"
               for path, var in _env_fields(model, env_only=True) if _get(raw, path) is not None]
    if refused:
        raise ConfigError(source, refused)
    env_paths = _apply_env(raw, model, env)
    try:
        config = model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(source, mask(problem_lines(exc, model, env_paths), _raw_secrets(raw, model))) from None
    problems = _checks(config, config, "")
    if problems:
        raise ConfigError(source, mask(problems, secret_values(config)))
    return config


def _raw_secrets(raw: dict[str, Any], model: type[BaseModel]) -> list[str]:
    found = []
    for path in secret_paths(model):
        node: Any = raw
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, str):
            found.append(node)
        elif isinstance(node, (list, dict)):
            found += [v for v in (node if isinstance(node, list) else node.values()) if isinstance(v, str)]
    return found


def _get(raw: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        raw = raw.get(key) if isinstance(raw, dict) else None
    return raw


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


MAX_FILE_BYTES = 1 << 20  # a config.yaml is a few KB; anything near this is a mistake or an attack
MAX_VALUES = 100_000  # values after YAML aliases are expanded (a 657-byte alias bomb makes millions)
MAX_EXPANDED_BYTES = 4 << 20  # text after aliases are expanded (one long string aliased many times)
MAX_DEPTH = 64  # nesting: a config is a few levels deep; thousands would recurse everywhere after this


def _expanded_size(value: Any, budget: int, text_budget: int = MAX_EXPANDED_BYTES) -> int:
    """Values in `value` with every alias expanded, counting down from budget; stops below 0 (also
    when their text passes text_budget bytes). Shared (aliased) nodes are counted each time they are
    used: that is what the bridge would copy, publish and keep."""
    stack = [(value, 0)]
    while stack and budget >= 0 and text_budget >= 0:
        item, depth = stack.pop()
        budget -= 1
        if depth > MAX_DEPTH:
            return -1
        if isinstance(item, dict):
            stack.extend((k, depth + 1) for k in item.keys())
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, (str, bytes)):
            text_budget -= len(item)
    return budget if text_budget >= 0 else -1


def read_yaml(path: str | os.PathLike) -> Any:
    """The file's YAML, refused when it is empty, oversized, or expands (aliases) past MAX_VALUES."""
    source = str(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise ConfigError(source, [f"is over {MAX_FILE_BYTES // 1024} KiB: not a configuration file"])
        raw = yaml.safe_load(data.decode("utf-8"))
    except OSError as exc:
        raise ConfigError(source, [f"cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError(source, ["cannot read: not UTF-8 text"]) from None
    except RecursionError:
        raise ConfigError(source, ["is nested too deeply: not a configuration file"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(source, [f"{where}invalid YAML: {problem}"]) from None
    if raw is None:
        raise ConfigError(source, ["is empty: give at least the broker (mqtt: url: ...), or start without "
                                   "--config for the built-in defaults"])
    if _expanded_size(raw, MAX_VALUES) < 0:
        raise ConfigError(source, [f"expands to over {MAX_VALUES:,} values or {MAX_EXPANDED_BYTES >> 20} MiB of text, "
                                   f"or nests over {MAX_DEPTH} deep (YAML aliases?): not a configuration"])
    return raw


def load_config(path: str | os.PathLike | None, *, sections: Mapping[str, type[Section]] | None = None,
                env: Mapping[str, str] | None = None) -> Any:
    """Read, merge over defaults and validate; raise ConfigError naming file and keys."""
    raw = read_yaml(path) if path is not None else {}
    return validate_config(raw, str(path) if path is not None else "<defaults>", sections=sections, env=env)


def redacted(config: BaseModel) -> dict[str, Any]:
    """A JSON-ready copy safe to log or publish: every secret that is set is '***'."""
    return config.model_dump(mode="json")


def secret_values(config: BaseModel) -> list[str]:
    """Every secret set in config, for the log filter that masks them."""
    found: list[str] = []
    for name in type(config).model_fields:
        value = getattr(config, name)
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            found += secret_values(value)
        elif isinstance(value, dict):
            for item in value.values():
                if isinstance(item, BaseModel):
                    found += secret_values(item)
    return found
