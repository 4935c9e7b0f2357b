"""A plugin's `config_schema`: what its config entry data must look like, checked before `setup_entry`.

A subset of JSON Schema that a form can be drawn from and a user can be told about: `type`
(object, string, number, integer, boolean, array), `properties`, `required`,
`additionalProperties` (false, or a schema every other member must meet), `propertyNames`, `enum`, `minimum`,
`maximum`, `exclusiveMinimum`, `exclusiveMaximum`, `minLength`, `maxLength`, `items`, `minItems`,
`maxItems`, and for the form `title`, `description`, `default`. Two pickers: `"format":
"entity_id"` (an entity id, of `"domain"` — one or a list — if given) and `"format": "room"` (a
room name, as in `nodes.devices.<id>.room`).

The schema is part of the manifest's security fields (trust.py), so it cannot be loosened without
signing again. Entry data is checked against it as a whole: every problem is reported at once,
each with its path (`plugins.entries.threshold_alert.high: expected a number, got "warm"`).
"""

from __future__ import annotations

import math
from typing import Any

from bridge import names

TYPES = ("object", "string", "number", "integer", "boolean", "array")
FORMATS = ("entity_id", "room")
ANNOTATIONS = ("title", "description", "default")
KEYWORDS = ("type", "properties", "required", "additionalProperties", "enum", "minimum", "maximum",
            "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "items", "minItems", "maxItems",
            "propertyNames", "format", "domain", *ANNOTATIONS)
MAX_DEPTH = 8
MAX_PROBLEMS = 20


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def schema_problems(schema: Any, path: str = "config_schema", depth: int = 0) -> list[str]:
    """What is wrong with a schema itself (unknown keywords, wrong types), each with its path."""
    if not isinstance(schema, dict):
        return [f"{path}: expected a schema (a JSON object)"]
    if depth > MAX_DEPTH:
        return [f"{path}: nested deeper than {MAX_DEPTH} levels"]
    problems = [f"{path}.{str(key)[:64]}: not supported (see docs/plugins.md, \"The config schema\")"
                for key in schema if key not in KEYWORDS]
    kind = schema.get("type")
    if kind is not None and kind not in TYPES:
        problems.append(f"{path}.type: expected one of {', '.join(TYPES)}")
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        problems.append(f"{path}.properties: expected an object of schemas")
    else:
        for name, sub in properties.items():
            problems += schema_problems(sub, f"{path}.properties.{name}", depth + 1)
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        problems.append(f"{path}.required: expected a list of property names")
    extra = schema.get("additionalProperties", True)
    if not isinstance(extra, bool):
        problems += schema_problems(extra, f"{path}.additionalProperties", depth + 1)
    for key in ("items", "propertyNames"):
        if key in schema:
            problems += schema_problems(schema[key], f"{path}.{key}", depth + 1)
    if "enum" in schema and (not isinstance(schema["enum"], list) or not schema["enum"]):
        problems.append(f"{path}.enum: expected a non-empty list")
    for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        if key in schema and not _is_number(schema[key]):
            problems.append(f"{path}.{key}: expected a number")
    for key in ("minLength", "maxLength", "minItems", "maxItems"):
        if key in schema and not _is_count(schema[key]):
            problems.append(f"{path}.{key}: expected a whole number >= 0")
    if "format" in schema and schema["format"] not in FORMATS:
        problems.append(f"{path}.format: expected one of {', '.join(FORMATS)}")
    domain = schema.get("domain")
    if domain is not None:
        domains = domain if isinstance(domain, list) else [domain]
        if schema.get("format") != "entity_id" or not domains or \
                not all(isinstance(d, str) and names.is_identifier(d) for d in domains):
            problems.append(f"{path}.domain: an entity domain (or a list of them), with \"format\": \"entity_id\"")
    return problems


def _shown(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else '"' + value + '"'
    return text if len(text) <= 40 else text[:37] + "..."


def _type_problem(kind: str, value: Any) -> str | None:
    ok = {"object": isinstance(value, dict), "array": isinstance(value, list), "string": isinstance(value, str),
          "boolean": isinstance(value, bool), "number": _is_number(value),
          "integer": _is_number(value) and float(value).is_integer()}[kind]
    if ok:
        return None
    article = "an" if kind[0] in "aeiou" else "a"
    return f"expected {article} {kind}, got {_shown(value)}"


def validate(data: Any, schema: dict[str, Any], path: str = "data") -> list[str]:
    """Every way `data` breaks `schema` (a schema without schema_problems), each as "path: why"."""
    problems: list[str] = []
    _check(data, schema, path, problems)
    if len(problems) > MAX_PROBLEMS:
        problems[MAX_PROBLEMS:] = [f"... and {len(problems) - MAX_PROBLEMS} more"]
    return problems


def _check(value: Any, schema: dict[str, Any], path: str, problems: list[str]) -> None:
    kind = schema.get("type")
    if kind is not None:
        problem = _type_problem(kind, value)
        if problem:
            problems.append(f"{path}: {problem}")
            return
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{path}: {_shown(value)} is not one of {', '.join(_shown(v) for v in schema['enum'])}")
    if _is_number(value):
        if "minimum" in schema and value < schema["minimum"]:
            problems.append(f"{path}: {value} is below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            problems.append(f"{path}: {value} is above the maximum {schema['maximum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            problems.append(f"{path}: {value} must be above {schema['exclusiveMinimum']}")
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            problems.append(f"{path}: {value} must be below {schema['exclusiveMaximum']}")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            problems.append(f"{path}: shorter than {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            problems.append(f"{path}: longer than {schema['maxLength']} characters")
        _format(value, schema, path, problems)
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            problems.append(f"{path}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            problems.append(f"{path}: more than {schema['maxItems']} items")
        if isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                _check(item, schema["items"], f"{path}[{i}]", problems)
    if isinstance(value, dict):
        properties: dict[str, Any] = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                problems.append(f"{path}.{name}: required, and missing")
        extra = schema.get("additionalProperties", True)
        for name, member in value.items():
            if isinstance(schema.get("propertyNames"), dict):
                _check(name, schema["propertyNames"], f"{path}.{str(name)[:64]} (the name)", problems)
            if name in properties:
                _check(member, properties[name], f"{path}.{name}", problems)
            elif extra is False:
                known = ", ".join(properties) or "none"
                problems.append(f"{path}.{str(name)[:64]}: not a setting of this plugin (its settings: {known})")
            elif isinstance(extra, dict):
                _check(member, extra, f"{path}.{str(name)[:64]}", problems)


def _format(value: str, schema: dict[str, Any], path: str, problems: list[str]) -> None:
    form = schema.get("format")
    if form == "entity_id":
        domain = schema.get("domain")
        domains = domain if isinstance(domain, list) else [domain] if domain else []
        if not names.valid_entity_id(value):
            like = f"{domains[0]}.hall" if domains else "sensor.hall_temperature"
            problems.append(f"{path}: {_shown(value)} is not an entity id like {like}")
        elif domains and value.partition(".")[0] not in domains:
            problems.append(f"{path}: {_shown(value)} is not a {' or '.join(domains)} entity")
    elif form == "room":
        try:
            names.check_room(value)
        except ValueError:
            problems.append(f"{path}: expected a room name ({names.ROOM_RULE})")


def entry_problem(schema: dict[str, Any] | None, data: Any, domain: str) -> str | None:
    """Why a plugin's entry data may not be handed to setup_entry (all of it at once), or None."""
    if schema is None:
        return None
    problems = validate(data, schema, f"plugins.entries.{domain}")
    if not problems:
        return None
    return "its config entry data breaks the manifest's config_schema: " + "; ".join(problems)


def form(schema: dict[str, Any] | None) -> dict[str, Any]:
    """The schema as a form is drawn from it: each field with its path, widget and constraints."""
    fields: list[dict[str, Any]] = []
    if schema:
        _fields(schema, "", fields, set(schema.get("required", [])), True)
    return {"fields": fields}


def _fields(schema: dict[str, Any], path: str, out: list[dict[str, Any]], required: set[str], top: bool) -> None:
    for name, sub in schema.get("properties", {}).items():
        key = f"{path}.{name}" if path else name
        if sub.get("type") == "object" and "properties" in sub:
            _fields(sub, key, out, set(sub.get("required", [])), False)
            continue
        widget = {"entity_id": "entity", "room": "room"}.get(sub.get("format", ""), None)
        if widget is None:
            widget = "select" if "enum" in sub else {"boolean": "checkbox", "number": "number", "integer": "number",
                                                     "object": "json", "array": "json"}.get(sub.get("type", ""), "text")
        field = {"path": key, "widget": widget, "required": name in required,
                 **{k: sub[k] for k in ("type", "title", "description", "default", "enum", "minimum", "maximum",
                                        "domain") if k in sub}}
        out.append(field)
