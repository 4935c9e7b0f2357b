"""Field types for config sections, each with the words its error uses.

Every type is a pydantic `PlainValidator`, so pydantic's own coercion never
runs (YAML `yes` is not a boolean, `true` is not the integer 1) and every
failure is one `expected ...` phrase that `errors.py` turns into a line. A
secret's input is never put into an error.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Any, Callable

from pydantic import PlainSerializer, PlainValidator, SecretStr
from pydantic_core import PydanticCustomError

from bridge import names
from bridge.privacy import CLASS_RULE, PrivacyClass, PrivacyError, parse_class

EXPECTED = "expected"  # error type: "<path>: expected <what>, got <value>"
EXPECTED_SECRET = "expected_secret"  # the same without the value


def expected(what: str, *, secret: bool = False) -> PydanticCustomError:
    return PydanticCustomError(EXPECTED_SECRET if secret else EXPECTED, "expected {what}",
                               {"what": what})


def _typed(py_type: Any, check: Callable[[Any], Any], *, optional: bool = False) -> Any:
    def validate(value: Any) -> Any:
        if value is None and optional:
            return None
        return check(value)

    return Annotated[py_type | None if optional else py_type, PlainValidator(validate)]


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise expected("true or false")
    return v


Bool = _typed(bool, _bool)


def Int(lo: int, hi: int, *, optional: bool = False) -> Any:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise expected(f"a whole number {lo}..{hi}")
        return v

    return _typed(int, check, optional=optional)


def Number(lo: float, hi: float, *, optional: bool = False) -> Any:
    def check(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
            raise expected(f"a number {lo:g}..{hi:g}")
        return float(v)

    return _typed(float, check, optional=optional)


def Text(pattern: str | None = None, what: str = "text", *, optional: bool = False,
         max_len: int = 4096) -> Any:
    rx = re.compile(pattern) if pattern else None

    def check(v: Any) -> str:
        if not isinstance(v, str) or len(v) > max_len or (rx is not None and not rx.fullmatch(v)):
            raise expected(what)
        return v

    return _typed(str, check, optional=optional)


def Choice(*options: str) -> Any:
    def check(v: Any) -> str:
        v = str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
        if v not in options:
            raise expected("one of " + ", ".join(options))
        return v

    return _typed(str, check)


def _ip(v: Any) -> str:
    try:
        return str(ipaddress.ip_address(v))
    except ValueError:
        raise expected("an IP address such as 127.0.0.1") from None


IPAddress = _typed(str, _ip)

Slug = Text(names.SLUG.pattern, "a word of [a-z0-9_-]")
TopicPath = Text(rf"{names.SLUG.pattern}(/{names.SLUG.pattern})*", "a topic of [a-z0-9_-] words without + or #")
OptionalTopicPath = Text(rf"{names.SLUG.pattern}(/{names.SLUG.pattern})*",
                         "a topic of [a-z0-9_-] words without + or #", optional=True)


def _node_name(v: Any) -> str:
    if not names.is_node_name(v):
        raise expected(names.NODE_NAME_RULE)
    return v


NodeName = _typed(str, _node_name, optional=True)


def _privacy(v: Any) -> PrivacyClass:
    try:
        return parse_class(v)
    except PrivacyError:
        raise expected(CLASS_RULE) from None


Privacy = Annotated[PrivacyClass, PlainValidator(_privacy), PlainSerializer(lambda c: c.label)]
OptionalPrivacy = Annotated[PrivacyClass | None, PlainValidator(lambda v: None if v is None else _privacy(v)),
                            PlainSerializer(lambda c: c.label if c is not None else None)]


def _readable_file(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise expected("a file path")
    path = Path(v).expanduser()
    if not path.exists():
        raise expected("a file that exists (no such file)")
    if not path.is_file():
        raise expected("a file (this is a directory or device)")
    if not os.access(path, os.R_OK):
        raise expected("a file this user can read (permission denied)")
    return str(path)


ReadableFile = _typed(str, _readable_file, optional=True)


def _secret(v: Any) -> SecretStr:
    if not isinstance(v, str) or not v or len(v) > 4096:
        raise expected("a non-empty string (the value is not shown: it is a secret)", secret=True)
    return SecretStr(v)


def _mask(s: SecretStr | None) -> str | None:
    return "***" if s is not None else None


Secret = Annotated[SecretStr | None, PlainValidator(lambda v: None if v is None else _secret(v)),
                   PlainSerializer(_mask, when_used="always")]
