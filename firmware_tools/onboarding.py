"""The node's serial onboarding protocol (RUVIEW_HELLO_V1 / RUVIEW_CONFIG_V1), host side.

A line protocol on the node's USB console, between its log lines: HELLO claims the
node with a fresh random nonce, CONFIG (same nonce, within 60 s, once) sets node id,
bridge target and optionally Wi-Fi, and the node reboots. Success is only reported
once the node's boot log shows the new node id.
"""

from __future__ import annotations

import base64
import re
import secrets
import time
from dataclasses import dataclass
from typing import Callable

import serial

from firmware_tools.settings import NodeSettings, SettingsError, validate

HELLO_RESEND = 1.0      # the node may still be booting when the port opens
MAX_LINE = 384

REASONS = {
    "nonce": "the node expired the claim (the nonce did not match: another program talked to it "
             "in between, or it rebooted); run the command again",
    "claim_expired": "the node expired the claim (more than 60 s since HELLO); run the command again",
    "format": "the node could not parse the request: its firmware speaks another protocol version; "
              "update the firmware (ruview-node flash) or use --method nvs",
    "node_id": "the node refused the node id (it takes 1..255)",
    "target_ip": "the node refused the target address (it takes private IPv4 addresses only)",
    "target_port": "the node refused the target port (it takes 1..65535)",
    "ssid": "the node refused the SSID (it takes 1..32 bytes)",
    "password": "the node refused the Wi-Fi password (it takes 8..63 printable characters)",
    "nvs_commit": "the node could not save the settings to its flash; power-cycle it and run again; "
                  "if it keeps failing, rewrite its settings partition with --method nvs",
}
_BOOT_NODE_ID = re.compile(r"\bnode_id\s*[=:]\s*(\d+)")


class OnboardingError(RuntimeError):
    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Hello:
    chip: str
    version: str
    node_id: int
    target_ip: str
    target_port: int
    configured: bool
    device_digest: str


@dataclass(frozen=True)
class OnboardingResult:
    hello: Hello
    node_id: int
    target_ip: str
    target_port: int
    wifi_changed: bool
    boot_line: str


def _fields(line: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in line.split()[1:] if "=" in part)


class LineLink:
    """Lines from a serial port: protocol lines returned, everything else passed to `on_log`."""

    def __init__(self, port, on_log: Callable[[str], None]) -> None:
        self.port = port
        self.on_log = on_log
        self._buffer = bytearray()

    def send(self, line: str) -> None:
        self.port.write(line.encode("ascii") + b"\n")
        self.port.flush()

    def next_line(self, deadline: float) -> str | None:
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                raw = bytes(self._buffer[:newline])
                del self._buffer[:newline + 1]
                if len(raw) > MAX_LINE:
                    continue
                text = raw.decode("utf-8", "replace").replace("\r", "")
                return "".join(c for c in text if c >= " " or c == "\t")
            if time.monotonic() >= deadline:
                return None
            chunk = self.port.read(self.port.in_waiting or 1)
            if chunk:
                self._buffer += chunk
                if len(self._buffer) > 4 * MAX_LINE and b"\n" not in self._buffer:
                    del self._buffer[:-MAX_LINE]

    def expect(self, prefixes: tuple[str, ...], deadline: float) -> str | None:
        """The next line holding one of `prefixes` (from that token on), or None at the deadline."""
        while (line := self.next_line(deadline)) is not None:
            starts = [line.find(p) for p in prefixes if p in line]
            if starts:
                return line[min(starts):]
            if line.strip():
                self.on_log(line)
        return None


def hello(link: LineLink, nonce: str, timeout: float) -> Hello:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        link.send(f"RUVIEW_HELLO_V1 {nonce}")
        line = link.expect(("RUVIEW_HELLO_OK_V1",), min(deadline, time.monotonic() + HELLO_RESEND))
        if line is None:
            continue
        fields = _fields(line)
        if fields.get("nonce") != nonce:
            continue                       # an answer to an earlier HELLO
        try:
            return Hello(fields.get("chip", "?"), fields.get("version", "?"), int(fields["node_id"]),
                         fields["target_ip"], int(fields["target_port"]),
                         fields.get("configured") == "1", fields.get("device_digest", ""))
        except (KeyError, ValueError):
            raise OnboardingError(f"the node answered HELLO with a line this tool cannot read: {line!r}",
                                  "format") from None
    raise OnboardingError(
        f"no answer to RUVIEW_HELLO_V1 within {timeout:g} s. Either the firmware predates serial "
        "onboarding (use --method nvs), another program holds the port (close the monitor), or the "
        "node is not running its app (press RESET).")


def wire_text(text: str | None) -> str:
    """SSID and password go base64 on the line; None is KEEP."""
    return "KEEP" if text is None else base64.b64encode(text.encode("utf-8")).decode("ascii")


def config_line(nonce: str, node_id: int, target_ip: str, target_port: int,
                ssid: str | None, password: str | None) -> str:
    return (f"RUVIEW_CONFIG_V1 {nonce} {node_id} {target_ip} {target_port} "
            f"{wire_text(ssid)} {wire_text(password)}")


def configure(link: LineLink, nonce: str, settings: NodeSettings, current: Hello,
              timeout: float) -> tuple[int, str, int]:
    node_id = settings.node_id if settings.node_id is not None else current.node_id
    target_ip = settings.target_ip or current.target_ip
    target_port = settings.target_port or current.target_port
    try:
        validate(NodeSettings(node_id=node_id, target_ip=target_ip, target_port=target_port))
    except SettingsError as exc:
        raise OnboardingError(f"the node has no usable value yet and none was given: {exc}") from None
    link.send(config_line(nonce, node_id, target_ip, target_port, settings.ssid, settings.password))
    line = link.expect(("RUVIEW_CONFIG_OK_V1", "RUVIEW_CONFIG_ERR_V1"), time.monotonic() + timeout)
    if line is None:
        raise OnboardingError(f"the node did not answer RUVIEW_CONFIG_V1 within {timeout:g} s; "
                              "its settings are unchanged unless it rebooted (check with ruview-node monitor)")
    fields = _fields(line)
    if line.startswith("RUVIEW_CONFIG_ERR_V1"):
        reason = fields.get("reason", "unknown")
        detail = REASONS.get(reason, f"the node refused the settings (reason={reason})")
        if "code" in fields:
            detail += f" [node error code {fields['code']}]"
        raise OnboardingError(detail, reason)
    if fields.get("nonce") != nonce:
        raise OnboardingError("the node confirmed a different request (nonce mismatch); run again", "nonce")
    return int(fields.get("node_id", node_id)), target_ip, target_port


def await_boot(link: LineLink, node_id: int, timeout: float, reopen: Callable[[], object] | None) -> str:
    """The boot log line showing `node_id`; survives the port vanishing while the node restarts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = link.next_line(deadline)
        except (serial.SerialException, OSError):
            if reopen is None:
                raise
            link.port = _reopen(reopen, deadline)
            continue
        if line is None:
            break
        link.on_log(line)
        match = _BOOT_NODE_ID.search(line)
        if match:
            if int(match.group(1)) != node_id:
                raise OnboardingError(f"the node rebooted with node id {match.group(1)}, not {node_id}: "
                                      "the settings were not stored; run again or use --method nvs")
            return line
    raise OnboardingError(f"the node accepted the settings but its boot log did not show node id {node_id} "
                          f"within {timeout:g} s; watch it with `ruview-node monitor`")


def _reopen(reopen: Callable[[], object], deadline: float):
    while True:
        try:
            return reopen()
        except (serial.SerialException, OSError):
            if time.monotonic() >= deadline:
                raise OnboardingError("the node's port did not come back after its reboot") from None
            time.sleep(0.2)


def provision(port, settings: NodeSettings, *, on_log: Callable[[str], None], timeout: float = 10.0,
              reboot_timeout: float = 20.0, reopen: Callable[[], object] | None = None) -> OnboardingResult:
    """HELLO, CONFIG, then wait for the boot log. `port` is an open pyserial port."""
    link = LineLink(port, on_log)
    nonce = secrets.token_hex(16)
    current = hello(link, nonce, timeout)
    node_id, target_ip, target_port = configure(link, nonce, settings, current, timeout)
    boot_line = await_boot(link, node_id, reboot_timeout, reopen)
    return OnboardingResult(current, node_id, target_ip, target_port, settings.ssid is not None, boot_line)
