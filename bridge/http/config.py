"""The `http:` section: the sensing HTTP API (rvagent's), the event stream and the status page."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr

from bridge.config import ExtensionSection, Problem
from bridge.config.types import Bool, Int, IPAddress, Number, ReadableFile, Secret, Text
from bridge.http.session import valid_hash


DEFAULT_PORT = 3000  # where @ruvnet/rvagent looks by default
DEFAULT_PORT_ENV = "RUVIEW_HTTP_DEFAULT_PORT"  # the port when config.yaml gives none (packagers, and tests: no fixed port)


def default_port() -> int:
    text = os.environ.get(DEFAULT_PORT_ENV, "")
    return int(text) if text.isdigit() and 0 < int(text) < 65536 else DEFAULT_PORT


class HttpConfig(ExtensionSection):
    enabled: Bool = True  # on by default, on loopback: the frontend (a port taken then is a warning, not a stop)
    bind: IPAddress = "127.0.0.1"
    port: Annotated[int, Int(1, 65535)] = Field(default_factory=lambda: default_port())
    default_node: Annotated[str | None, Text(what="a node's name or id", optional=True, max_len=64)] = None
    token: Secret = Field(None, json_schema_extra={"env": "RUVIEW_API_TOKEN", "env_only": True})
    token_file: ReadableFile = None
    # the frontend's login beside the token: a scrypt hash from `python -m bridge.http.password` (never the password)
    password_hash: Annotated[str | None, Text(r"scrypt\$[0-9]+\$[0-9]+\$[0-9]+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+",
                                              "a hash made by `python -m bridge.http.password`", optional=True,
                                              max_len=512)] = None
    session_hours: Annotated[float, Number(0.1, 24 * 30)] = 12.0  # a frontend login lasts this long
    max_body: Annotated[int, Int(1024, 16 * 1024 * 1024)] = 64 * 1024  # bytes a request body may have
    rate_limit: Annotated[int, Int(1, 100_000)] = 200  # requests per second per client address (burst: twice that)
    access_log: Bool = False
    # the edge against clients that hold connections: what no answer may wait for, and how many at once
    header_timeout: Annotated[float, Number(0.5, 600)] = 10.0  # seconds from a request's first byte to its last header
    body_timeout: Annotated[float, Number(0.5, 3600)] = 30.0  # seconds for a request's body, once its headers are in
    keepalive_timeout: Annotated[float, Number(1, 3600)] = 30.0  # seconds an idle connection waits for another request
    max_connections: Annotated[int, Int(1, 100_000)] = 256  # open connections in all; more are refused with 503
    max_connections_per_client: Annotated[int, Int(1, 100_000)] = 32  # open connections from one client address
    max_stream_clients: Annotated[int, Int(1, 100_000)] = 32  # event-stream clients at once; more get 503
    log_interval: Annotated[float, Number(1, 86_400)] = 60.0  # seconds: a log line per kind of client trouble, counted

    def check(self, root: Any) -> list[Problem]:
        problems = []
        if self.token_file and self.token is None:
            text = Path(self.token_file).read_text(encoding="utf-8", errors="replace").strip()
            if text:
                self.token = SecretStr(text)
            else:
                problems.append(("token_file", f"{self.token_file} is empty"))
        if self.enabled and not ipaddress.ip_address(self.bind).is_loopback and self.token is None:
            problems.append(("bind", f"listening on {self.bind} (beyond this host) requires a token: set "
                             "RUVIEW_API_TOKEN or http.token_file (agents send it as a bearer token)"))
        if self.password_hash is not None and not valid_hash(self.password_hash):
            problems.append(("password_hash", "is not a hash `python -m bridge.http.password` made"))
        return problems

    def asked_for(self) -> bool:
        """Whether the file (or environment) turned this on, rather than the default."""
        return "enabled" in self.model_fields_set

    def login_required(self) -> bool:
        """The frontend asks for a login beyond loopback, and wherever a token or password is set."""
        return (not ipaddress.ip_address(self.bind).is_loopback or self.token is not None
                or self.password_hash is not None)

    def token_value(self) -> str | None:
        return self.token.get_secret_value() if self.token is not None else None
