"""The node's own HTTP API on port 8032 (OTA, recalibrate, set-target, WASM modules), as a client.

What each call answers, and every failure the firmware can answer, become one sentence a user
can act on (NodeHttpError): a refused PSK, a size the node will not take, a node that resets the
connection while the image is still being sent, a node that is not there. The PSK goes only
into the Authorization header, never into a message.
"""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass
from typing import Any, Callable

NODE_PORT = 8032
CHUNK = 4096


class NodeHttpError(Exception):
    """A call the node refused or did not answer; `status` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status, self.body = status, body


@dataclass(frozen=True)
class NodeAddress:
    host: str
    port: int = NODE_PORT

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_address(text: str) -> NodeAddress:
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and host and not host.endswith(":"):
        if not 1 <= int(port) <= 65535:
            raise ValueError(f"--host {text!r}: port must be 1..65535")
        return NodeAddress(host.strip("[]"), int(port))
    if not text:
        raise ValueError("--host: empty")
    return NodeAddress(text, NODE_PORT)


@dataclass(frozen=True)
class Answer:
    status: int
    body: str

    def json(self) -> dict[str, Any]:
        try:
            value = json.loads(self.body)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}


class NodeClient:
    """One node's HTTP API; every call opens its own connection (the node serves few at once)."""

    def __init__(self, address: NodeAddress, psk: str | None, timeout: float = 10.0) -> None:
        self.address, self._psk, self.timeout = address, psk, timeout

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        if self._psk is not None:
            headers["Authorization"] = f"Bearer {self._psk}"
        return headers

    def call(self, method: str, path: str, body: bytes = b"", *, content_type: str = "text/plain",
             progress: Callable[[int, int], None] | None = None, timeout: float | None = None) -> Answer:
        """Send a request and read the answer; OSError and HTTP trouble become NodeHttpError."""
        where = f"{self.address}{path}"
        conn = http.client.HTTPConnection(self.address.host, self.address.port,
                                          timeout=timeout or self.timeout)
        sent = 0
        try:
            try:
                conn.putrequest(method, path, skip_accept_encoding=True)
                headers = self._headers({"Content-Type": content_type} if method != "GET" else {})
                if method != "GET" or body:
                    headers["Content-Length"] = str(len(body))
                for name, value in headers.items():
                    conn.putheader(name, value)
                conn.endheaders()
                while sent < len(body):
                    piece = body[sent:sent + CHUNK]
                    conn.send(piece)
                    sent += len(piece)
                    if progress is not None:
                        progress(sent, len(body))
            except (ConnectionResetError, BrokenPipeError) as exc:
                # the node answers a refusal and closes while we are still sending: read what it said
                answer = self._read_after_reset(conn)
                if answer is not None:
                    return answer
                raise NodeHttpError(
                    f"{where}: the node closed the connection after {sent:,} of {len(body):,} bytes ({exc}); "
                    "a node that refuses an upload (PSK, size) does this before its answer arrives",
                    None) from None
            try:
                response = conn.getresponse()
                text = response.read().decode("utf-8", "replace")
            except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected) as exc:
                raise NodeHttpError(f"{where}: the node closed the connection without an answer ({exc})") from None
            return Answer(response.status, text)
        except socket.timeout:
            raise NodeHttpError(f"{where}: no answer within {timeout or self.timeout:g} s") from None
        except ConnectionRefusedError:
            raise NodeHttpError(f"{where}: connection refused (is the node up, and is this its address? "
                                f"its HTTP server is on port {NODE_PORT})") from None
        except OSError as exc:
            raise NodeHttpError(f"{where}: {exc.strerror or exc}") from None
        finally:
            conn.close()

    @staticmethod
    def _read_after_reset(conn: http.client.HTTPConnection) -> Answer | None:
        if conn.sock is None:               # reset while connecting: there is no answer to read
            return None
        try:
            response = conn.getresponse()
            return Answer(response.status, response.read().decode("utf-8", "replace"))
        except (OSError, http.client.HTTPException):
            return None

    # ------------------------------------------------------------ the firmware's endpoints

    def status(self) -> dict[str, Any]:
        answer = self.call("GET", "/ota/status")
        data = answer.json()
        if answer.status != 200 or "version" not in data:
            raise NodeHttpError(f"{self.address}/ota/status answered {answer.status} {answer.body[:120]!r}: "
                                "is this a RuView node?", answer.status, answer.body)
        return data

    def psk_accepted(self) -> bool:
        """An empty POST /ota: 400 (size) once the PSK is right, 403 when it is not.

        True also for a node that takes any PSK (no key provisioned on older firmware): the
        caller tells those apart with `accepts_anyone`.
        """
        answer = self.call("POST", "/ota", b"", content_type="application/octet-stream")
        if answer.status == 403:
            return False
        if answer.status == 400:
            return True
        raise NodeHttpError(f"{self.address}/ota: an empty upload answered {answer.status} "
                            f"{answer.body[:120]!r} (expected 400 or 403)", answer.status, answer.body)

    def accepts_anyone(self) -> bool:
        """Whether the node takes an update without any PSK (no `security/ota_psk`, older firmware)."""
        anonymous = NodeClient(self.address, None, self.timeout)
        return anonymous.psk_accepted()

    def checked(self, answer: Answer, what: str) -> dict[str, Any]:
        if answer.status == 403:
            raise NodeHttpError(f"{self.address}: {what} refused (403): the PSK is not this node's "
                                f"({answer.body.strip()[:120]})", 403, answer.body)
        if answer.status == 404:
            raise NodeHttpError(f"{self.address}: {what}: this node's firmware has no such endpoint (404)",
                                404, answer.body)
        if answer.status != 200:
            raise NodeHttpError(f"{self.address}: {what} refused ({answer.status}): {answer.body.strip()[:200]}",
                                answer.status, answer.body)
        return answer.json()
