"""pydantic's validation errors as the lines a person editing YAML can act on.

One line per problem: `<file>: <key.path>: expected <what>, got <value>`, with
did-you-mean for unknown keys, values shown as YAML writes them (`true`,
`null`), long values cut, credentials in URLs masked, and a secret's value
never shown at all.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Any, Iterable

import orjson
from pydantic import BaseModel, SecretStr, ValidationError

from bridge.config.types import EXPECTED, EXPECTED_SECRET

_URL_CREDENTIALS = re.compile(r"(//[^/:@\s]*:)[^@/\s]*@")


MAX_SHOWN = 100


def describe(value: Any) -> str:
    """A value as YAML would show it, short and without credentials."""
    if value is True or value is False:
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        text = _URL_CREDENTIALS.sub(r"\1***@", value)
        return orjson.dumps(text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN - 3] + "...").decode()
    if isinstance(value, (int, float)):
        return repr(value)
    try:
        text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS, default=str).decode()
    except TypeError:
        text = type(value).__name__
    text = _URL_CREDENTIALS.sub(r"\1***@", text)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN - 3] + "..."


def _unwrap(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = args[0] if len(args) == 1 else annotation
    return annotation


def _model_at(root: type[BaseModel], loc: Iterable[Any]) -> type[BaseModel] | None:
    """The section model that holds the key at the end of loc (for did-you-mean)."""
    current: Any = root
    parts = list(loc)
    i = 0
    while i < len(parts):
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(parts[i]))
            if field is None:
                return None
            current = _unwrap(field.annotation)
            i += 1
        elif typing.get_origin(current) is dict:
            current = _unwrap(typing.get_args(current)[1])
            i += 1  # the user's key
        else:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if p != "[key]") or "top level"


def secret_paths(model: type[BaseModel], path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Where the secrets are, by key path (to mask their raw values in every message)."""
    found = []
    for name, field in model.model_fields.items():
        annotation = _unwrap(field.annotation)
        if annotation is SecretStr:
            found.append((*path, name))
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found += secret_paths(annotation, (*path, name))
    return found


def mask(lines: list[str], secrets: Iterable[str]) -> list[str]:
    """Defence in depth: a secret's text never appears, whichever key it was typed under."""
    secrets = sorted({s for s in secrets if len(s) >= 3}, key=len, reverse=True)
    out = []
    for line in lines:
        for secret in secrets:
            line = line.replace(secret, "***")
        out.append(line)
    return out


def problem_lines(exc: ValidationError, root: type[BaseModel], env_paths: dict[str, str]) -> list[str]:
    """One line per error, without the file name."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        path = _path(loc)
        where = f"{path} (from {env_paths[path]})" if path in env_paths else path
        kind = err["type"]
        ctx = err.get("ctx") or {}
        if kind == "extra_forbidden":
            section = _model_at(root, loc[:-1])
            known = list(section.model_fields) if section else []
            near = difflib.get_close_matches(str(loc[-1]), known, n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else (f" (known keys: {', '.join(known)})"
                                                                 if known else "")
            lines.append(f"{where}: unknown key{hint}")
        elif loc and loc[-1] == "[key]":
            lines.append(f"{where}: key must be {ctx.get('what', 'valid')}, got {describe(err['input'])}")
        elif kind == EXPECTED:
            lines.append(f"{where}: expected {ctx['what']}, got {describe(err['input'])}")
        elif kind == EXPECTED_SECRET:
            lines.append(f"{where}: expected {ctx['what']}")
        elif kind in ("model_type", "model_attributes_type", "dict_type", "mapping_type"):
            lines.append(f"{where}: expected a mapping of keys, got {describe(err['input'])}")
        elif kind == "missing":
            lines.append(f"{where}: required, but missing")
        else:  # a pydantic message we did not word ourselves; still one line, no input echoed
            lines.append(f"{where}: {err['msg']}")
    return lines
