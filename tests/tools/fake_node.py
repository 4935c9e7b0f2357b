"""A RuView C6 on a pty pair that speaks the node's side of serial onboarding.

It follows the firmware's rules (serial_onboarding_protocol.c): the nonce is single use,
must be the last HELLO's and expires after `claim_seconds`; every value is checked the
way the node checks it; errors carry the node's reason codes. After CONFIG_OK it
"reboots" and prints the boot log the host waits for.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import threading
import time
import tty

PRIVATE = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]
MAC = bytes.fromhex("240ac40f435c")


class FakeNode:
    def __init__(self, *, silent: bool = False, garbage: bool = False, fail_commit: bool = False,
                 claim_seconds: float = 60.0, wrong_nonce: bool = False, reboot_delay: float = 0.2,
                 boot_node_id: int | None = None, force_reason: str | None = None) -> None:
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.slave = slave
        self.path = os.ttyname(slave)
        self.silent, self.garbage, self.fail_commit = silent, garbage, fail_commit
        self.claim_seconds, self.wrong_nonce, self.reboot_delay = claim_seconds, wrong_nonce, reboot_delay
        self.boot_node_id = boot_node_id
        self.force_reason = force_reason     # answer CONFIG with this reason, as newer firmware might
        self.node_id, self.target_ip, self.target_port = 1, "192.168.1.10", 5005
        self.ssid, self.password = "OldNet", "old-password"
        self.received: list[str] = []
        self.reboots = 0
        self._nonce: str | None = None
        self._claimed_at = 0.0
        self._running = True
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._running = False
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def _write(self, text: str) -> None:
        try:
            os.write(self.master, text.encode())
        except OSError:
            pass

    def _log(self, text: str) -> None:
        if self.garbage:
            self._write("\x00\xff\x1b[0;32m\x7f~garbage RUVIEW_ \r")
        self._write(f"I ({int(time.monotonic() * 1000) % 100000}) {text}\r\n")

    def _serve(self) -> None:
        buffer = b""
        self._log("main: RuView esp32-csi-node 1.4.2 started")
        while self._running:
            try:
                chunk = os.read(self.master, 1024)
            except OSError:
                return
            buffer += chunk
            while b"\n" in buffer:
                raw, buffer = buffer.split(b"\n", 1)
                line = raw.replace(b"\r", b"").decode("ascii", "replace")
                self.received.append(line)
                if not self.silent:
                    self._handle(line)

    def _handle(self, line: str) -> None:
        parts = line.split()
        if not parts:
            return
        if parts[0] == "RUVIEW_HELLO_V1" and len(parts) == 2:
            self._nonce, self._claimed_at = parts[1], time.monotonic()
            digest = hashlib.sha256(b"ruview-device-v1" + MAC).digest()[:8].hex()
            self._log("serial_onboarding: claim opened")
            self._write(f"RUVIEW_HELLO_OK_V1 nonce={parts[1]} chip=esp32c6 version=1.4.2 "
                        f"node_id={self.node_id} target_ip={self.target_ip} target_port={self.target_port} "
                        f"configured=1 device_digest={digest}\n")
        elif parts[0] == "RUVIEW_CONFIG_V1":
            self._configure(parts)
        else:
            self._log(f"console: unknown command '{parts[0][:16]}'")

    def _error(self, reason: str, nonce: str | None = None, code: str | None = None) -> None:
        text = "RUVIEW_CONFIG_ERR_V1"
        if nonce:
            text += f" nonce={nonce}"
        text += f" reason={reason}"
        if code:
            text += f" code={code}"
        self._write(text + "\n")

    def _configure(self, parts: list[str]) -> None:
        if len(parts) != 7:
            return self._error("format")
        _, nonce, node_id, ip, port, ssid_b64, pw_b64 = parts
        if self.force_reason:
            return self._error(self.force_reason, nonce)
        if self.wrong_nonce or nonce != self._nonce:
            return self._error("nonce")
        if time.monotonic() - self._claimed_at > self.claim_seconds:
            self._nonce = None
            return self._error("claim_expired", nonce)
        self._nonce = None                                   # single use
        if not node_id.isdigit() or not 1 <= int(node_id) <= 255:
            return self._error("node_id", nonce)
        try:
            if not any(ipaddress.IPv4Address(ip) in net for net in PRIVATE):
                return self._error("target_ip", nonce)
        except ValueError:
            return self._error("target_ip", nonce)
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            return self._error("target_port", nonce)
        if (ssid_b64 == "KEEP") != (pw_b64 == "KEEP"):
            return self._error("format", nonce)
        if ssid_b64 != "KEEP":
            try:
                ssid = base64.b64decode(ssid_b64, validate=True)
                password = base64.b64decode(pw_b64, validate=True)
            except ValueError:
                return self._error("format", nonce)
            if not 1 <= len(ssid) <= 32:
                return self._error("ssid", nonce)
            if not 8 <= len(password) <= 63 or not all(0x20 <= b < 0x7F for b in password):
                return self._error("password", nonce)
        if self.fail_commit:
            return self._error("nvs_commit", nonce, "4357")
        self.node_id, self.target_ip, self.target_port = int(node_id), ip, int(port)
        if ssid_b64 != "KEEP":
            self.ssid, self.password = ssid.decode(), password.decode()
        self._write(f"RUVIEW_CONFIG_OK_V1 nonce={nonce} node_id={self.node_id} rebooting=1\n")
        threading.Timer(self.reboot_delay, self._reboot).start()

    def _reboot(self) -> None:
        self.reboots += 1
        self._write("ESP-ROM:esp32c6-20220919\r\nBuild:Sep 19 2022\r\nrst:0xc (SW_CPU),boot:0x6c (SPI_FAST_FLASH_BOOT)\r\n")
        self._log("cpu_start: Pro cpu start user code")
        self._log(f"nvs_config: NVS override: target_ip={self.target_ip}")
        self._log(f"nvs_config: NVS override: node_id={self.boot_node_id or self.node_id}")
