"""Field types for config sections, each with the words its error uses.

A field is `Annotated[<its Python type>, <a validator here>]`: `port: Annotated[int, Int(1, 65535)] = 1883`,
`room: Annotated[str | None, Text(optional=True)] = None`; fixed ones are aliases: `verify: Bool = True`.

Every validator is a pydantic `PlainValidator`, so pydantic's own coercion never
runs (YAML `yes` is not a boolean, `true` is not the integer 1) and every
failure is one `expected ...` phrase that `errors.py` turns into a line. A
secret's input is never put into an error.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, TypeAlias, get_args, get_origin

from pydantic import PlainSerializer, PlainValidator, SecretStr
from pydantic_core import PydanticCustomError

from bridge import names
from bridge.privacy import CLASS_RULE, PrivacyClass, PrivacyError, parse_class

EXPECTED = "expected"  # error type: "<path>: expected <what>, got <value>"
EXPECTED_SECRET = "expected_secret"  # the same without the value


def expected(what: str, *, secret: bool = False) -> PydanticCustomError:
    return PydanticCustomError(EXPECTED_SECRET if secret else EXPECTED, "expected {what}",
                               {"what": what})


def Check(check: Callable[[Any], Any], *, optional: bool = False) -> PlainValidator:
    """The validator for a field checked by `check` (optional: `null` is also taken, as None)."""
    def validate(value: Any) -> Any:
        if value is None and optional:
            return None
        return check(value)

    return PlainValidator(validate)


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise expected("true or false")
    return v


Bool: TypeAlias = Annotated[bool, Check(_bool)]


def Int(lo: int, hi: int, *, optional: bool = False) -> PlainValidator:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise expected(f"a whole number {lo}..{hi}")
        return v

    return Check(check, optional=optional)


def Number(lo: float, hi: float, *, optional: bool = False) -> PlainValidator:
    def check(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
            raise expected(f"a number {lo:g}..{hi:g}")
        return float(v)

    return Check(check, optional=optional)


def Text(pattern: str | None = None, what: str = "text", *, optional: bool = False,
         max_len: int = 4096) -> PlainValidator:
    rx = re.compile(pattern) if pattern else None

    def check(v: Any) -> str:
        if not isinstance(v, str) or len(v) > max_len or (rx is not None and not rx.fullmatch(v)):
            raise expected(what)
        return v

    return Check(check, optional=optional)


def Choice(*choices: Any) -> PlainValidator:
    """One of the given strings: `Choice("a", "b")`, or `Choice(Ab)` where `Ab = Literal["a", "b"]`."""
    options = tuple(o for c in choices for o in (get_args(c) if get_origin(c) is Literal else (c,)))

    def check(v: Any) -> str:
        v = str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
        if v not in options:
            raise expected("one of " + ", ".join(options))
        return v

    return Check(check)


def _ip(v: Any) -> str:
    try:
        return str(ipaddress.ip_address(v))
    except ValueError:
        raise expected("an IP address such as 127.0.0.1") from None


IPAddress: TypeAlias = Annotated[str, Check(_ip)]

Slug: TypeAlias = Annotated[str, Text(names.SLUG.pattern, "a word of [a-z0-9_-]")]
TopicPath: TypeAlias = Annotated[str, Text(rf"{names.SLUG.pattern}(/{names.SLUG.pattern})*",
                                           "a topic of [a-z0-9_-] words without + or #")]
OptionalTopicPath: TypeAlias = Annotated[str | None, Text(rf"{names.SLUG.pattern}(/{names.SLUG.pattern})*",
                                                          "a topic of [a-z0-9_-] words without + or #",
                                                          optional=True)]


def _node_name(v: Any) -> str:
    if not names.is_node_name(v):
        raise expected(names.NODE_NAME_RULE)
    return v


NodeName: TypeAlias = Annotated[str | None, Check(_node_name, optional=True)]


def _room(v: Any) -> str:
    try:
        return names.check_room(v)
    except names.InvalidName:
        raise expected(f"a room name: {names.ROOM_RULE}") from None


Room: TypeAlias = Annotated[str | None, Check(_room, optional=True)]  # the same rule as node/set's


def _privacy(v: Any) -> PrivacyClass:
    try:
        return parse_class(v)
    except PrivacyError:
        raise expected(CLASS_RULE) from None


Privacy: TypeAlias = Annotated[PrivacyClass, PlainValidator(_privacy), PlainSerializer(lambda c: c.label)]
OptionalPrivacy: TypeAlias = Annotated[PrivacyClass | None,
                                       PlainValidator(lambda v: None if v is None else _privacy(v)),
                                       PlainSerializer(lambda c: c.label if c is not None else None)]


def _readable_file(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise expected("a file path")
    path = Path(v).expanduser()
    try:
        if not path.exists():
            raise expected("a file that exists (no such file)")
        if not path.is_file():
            raise expected("a file (this is a directory or device)")
    except OSError as exc:  # a name too long for the filesystem, a loop of links ...
        raise expected(f"a file path this system can open ({exc.strerror or exc})") from None
    if not os.access(path, os.R_OK):
        raise expected("a file this user can read (permission denied)")
    return str(path)


ReadableFile: TypeAlias = Annotated[str | None, Check(_readable_file, optional=True)]


def _secret(v: Any) -> SecretStr:
    if not isinstance(v, str) or not v or len(v) > 4096:
        raise expected("a non-empty string (the value is not shown: it is a secret)", secret=True)
    return SecretStr(v)


def _mask(s: SecretStr | None) -> str | None:
    return "***" if s is not None else None


Secret: TypeAlias = Annotated[SecretStr | None, PlainValidator(lambda v: None if v is None else _secret(v)),
                              PlainSerializer(_mask, when_used="always")]
