"""A RuView node's network side, for tests and demos without hardware: its HTTP API on port 8032
(here a free loopback port) and its UDP frames to a bridge.

Written from the firmware (ota_update.c, wasm_upload.c, rvf_parser.c, ota_pull.c): the PSK is
compared in constant time; a node without one refuses everything (current firmware) or, with
`open_without_psk`, accepts everything (older firmware); sizes are checked as the firmware does
and a refusal is answered and the connection closed with the image unread (the client sees a
reset); an accepted image answers ok, then the node reboots ~1 s later and is silent for the
reboot gap; after a reboot its frame sequence and boot clock start again at zero. What a new
image does is `on_update`: `confirm` (boots it and keeps it), `rollback` (boots it, reports it
for `pending_for` seconds, then resets back to the old one), `rollback_at_once` (comes back
with the old one) or `never_back`. On-node WASM modules are checked as rvf_parser.c does, with
an Ed25519 or keyed-SHA-256 signature (`signature_scheme`) against `wasm_pubkey`, and loaded
by wasmtime (validation only). `pull_once()` is the pull client's check, naive parsing and all.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bridge.nodes import codec
from firmware_tools import rvf
from firmware_tools.firmware_rules import parse_ip_port, version_compare
from firmware_tools.release import app_info, image_chip_id

OTA_MAX_SIZE = 900 * 1024
PULL_MAX_SIZE = 1500 * 1024
WASM_MAX_MODULES = 4
MAX_UPLOAD = rvf.HEADER_SIZE + rvf.MANIFEST_SIZE + rvf.MAX_WASM + rvf.SIGNATURE_LEN + 4096
AUTH_REQUIRED = "Authentication required. Use: Authorization: Bearer <psk>"
TARGET_RULE = "Body must be 'IPv4:PORT', e.g. '192.168.0.103:5005'"


def _json_string(text: str, key: str) -> str | None:
    """ota_pull.c's json_get_string: the text after `"key":"` up to the next quote."""
    pattern = f'"{key}":"'
    start = text.find(pattern)
    if start < 0:
        return None
    start += len(pattern)
    end = text.find('"', start)
    return text[start:end] if end >= 0 else None


@dataclass
class _Slot:
    state: str = "empty"
    name: str = ""
    size: int = 0
    caps: int = 0
    budget_us: int = 0


@dataclass
class MockOtaNode:
    node_id: int = 1
    version: str = "1.0.0"
    psk: str | None = None
    open_without_psk: bool = False
    udp_target: tuple[str, int] | None = None
    rate: float = 10.0
    reboot_delay: float = 1.0          # ota_update.c: vTaskDelay(1000) before esp_restart
    reboot_gap: float = 1.0            # silent while booting and joining Wi-Fi
    on_update: str = "confirm"         # confirm | rollback | rollback_at_once | never_back
    pending_for: float = 1.0           # how long a rolling-back image runs before its reset
    wasm_pubkey: bytes | None = None
    wasm_verify: bool = True
    signature_scheme: str = "ed25519"  # or keyed-sha256 (rvf_parser.c as built in some versions)
    exact_uri_matching: bool = False   # wildcard routes answer 404 (ESP-IDF's default matcher)
    host: str = "127.0.0.1"
    port: int = 0
    running_partition: str = "ota_0"
    boots: int = 1
    uploads: int = 0
    log: list[str] = field(default_factory=list)
    nvs: dict[str, Any] = field(default_factory=lambda: {"gl_agc": 1, "gl_fft": 1, "gl_ap_mac": b"\1" * 6})

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._up = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._server_thread: threading.Thread | None = None
        self._frames_thread: threading.Thread | None = None
        self._boot_at = time.monotonic()
        self._seq = 0
        self.frames_sent = 0
        self._slots = [_Slot() for _ in range(WASM_MAX_MODULES)]
        self._previous_version = self.version
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    # ------------------------------------------------------------ life cycle

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def up(self) -> bool:
        return self._up.is_set()

    def start(self) -> "MockOtaNode":
        self._sock.bind((self.host, 0))          # frames come from the node's own address
        self._serve()
        self._frames_thread = threading.Thread(target=self._frames, name=f"mock-node-{self.node_id}-udp",
                                               daemon=True)
        self._frames_thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._halt_http()
        if self._frames_thread is not None:
            self._frames_thread.join(5)
        self._sock.close()

    def _serve(self) -> None:
        node = self

        class Handler(_Handler):
            mock = node

        ThreadingHTTPServer.allow_reuse_address = True
        server = ThreadingHTTPServer((self.host, self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._server_thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                               name=f"mock-node-{self.node_id}-http", daemon=True)
        self._server_thread.start()
        self._boot_at, self._seq = time.monotonic(), 0
        self._up.set()

    def _halt_http(self) -> None:
        self._up.clear()
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def _reboot_later(self, then: str | None = None) -> None:
        """esp_restart() after the reply has gone out; `then` is the version the next boot runs."""
        def run() -> None:
            time.sleep(self.reboot_delay)
            self._reboot(then)
        threading.Thread(target=run, name=f"mock-node-{self.node_id}-reboot", daemon=True).start()

    def _reboot(self, next_version: str | None) -> None:
        self._halt_http()
        self.log.append(f"reboot into {next_version or self.version}")
        if self._stop.wait(self.reboot_gap):
            return
        with self._lock:
            self._slots = [_Slot() for _ in range(WASM_MAX_MODULES)]   # modules live in RAM
            if next_version is None:
                pass
            elif self.on_update == "never_back":
                self.log.append("never came back")
                return
            elif self.on_update == "rollback_at_once":
                pass                                   # the bootloader reverted: old image, old partition
            else:
                self._previous_version, self.version = self.version, next_version
                self.running_partition = self._other_partition()
            self.boots += 1
        self._serve()
        if next_version is not None and self.on_update == "rollback":
            # the new image never confirms itself: a reset while pending reverts it
            def revert() -> None:
                if self._stop.wait(self.pending_for):
                    return
                self._halt_http()
                self.log.append(f"rolled back to {self._previous_version}")
                if self._stop.wait(self.reboot_gap):
                    return
                with self._lock:
                    self.version = self._previous_version
                    self.running_partition = self._other_partition()
                    self.boots += 1
                self._serve()
            threading.Thread(target=revert, name=f"mock-node-{self.node_id}-revert", daemon=True).start()

    def _other_partition(self) -> str:
        return "ota_1" if self.running_partition == "ota_0" else "ota_0"

    # ------------------------------------------------------------ frames

    def _frames(self) -> None:
        step = 1.0 / self.rate
        while not self._stop.wait(step):
            if not self._up.is_set() or self.udp_target is None:
                continue
            with self._lock:
                seq, self._seq = self._seq, self._seq + 1
                ts_us = int((time.monotonic() - self._boot_at) * 1e6)
                target = self.udp_target
            state = codec.FeatureState(self.node_id, 0, seq % 65536, ts_us, 0.1, 0.5, 0.0, 0.0,
                                       0.0, 0.0, 0.0, 0.0, 1.0, 0x01, -50)
            try:
                self._sock.sendto(codec.encode_feature_state(state), target)
                self.frames_sent += 1
            except OSError:
                pass

    # ------------------------------------------------------------ what the handlers decide

    def authorized(self, header: str | None) -> bool:
        if not self.psk:
            return self.open_without_psk
        if header is None or not header.startswith("Bearer "):
            return False
        return hmac.compare_digest(header[len("Bearer "):].encode(), self.psk.encode())

    def status(self) -> dict[str, Any]:
        return {"version": self.version, "date": "Dec  8 2026", "time": "01:00:00",
                "running_partition": self.running_partition, "next_partition": self._other_partition(),
                "max_size": OTA_MAX_SIZE}

    def flash(self, image: bytes) -> tuple[int, str]:
        """esp_ota_write + esp_ota_end: the image must be an app for this chip."""
        if image_chip_id(image) != 13:
            return 500, "OTA validation failed"
        info = app_info(image)
        if info is None:
            return 500, "OTA validation failed"
        self.uploads += 1
        self._reboot_later(info.version)
        return 200, '{"status":"ok","message":"OTA update successful. Rebooting..."}'

    def load_module(self, data: bytes) -> tuple[int, str]:
        if data[:4] == rvf.WASM_MAGIC:
            if self.wasm_verify:
                return 403, ("Raw WASM upload rejected (signature verification enabled). "
                             "Use RVF container with signature, or set CONFIG_WASM_SKIP_SIGNATURE for dev.")
            return self._load(data, "raw-module", rvf.CAPS_ALL, 0, raw=True)
        if data[:4] != rvf.MAGIC.to_bytes(4, "little"):
            return 400, "Unrecognized format (expected RVF or raw WASM)"
        try:
            container = rvf.parse(data)
        except rvf.RvfError as exc:
            return 400, f"RVF parse failed: {exc}"[:79]
        if self.wasm_verify:
            if self.wasm_pubkey is None:
                return 403, ("wasm_verify enabled but no pubkey in NVS. "
                             "Provision with: provision.py --wasm-pubkey <hex>")
            if container.signature is None:
                return 403, "RVF has no signature (wasm_verify is enabled)"
            check = rvf.verify_ed25519 if self.signature_scheme == "ed25519" else rvf.verify_keyed_sha256
            if not check(container, self.wasm_pubkey):
                return 403, "Signature verification failed"
        m = container.manifest
        return self._load(container.wasm, m.name, m.capabilities, m.max_frame_us)

    def _load(self, wasm: bytes, name: str, caps: int, budget: int, raw: bool = False) -> tuple[int, str]:
        import wasmtime

        try:
            wasmtime.Module.validate(wasmtime.Engine(), wasm)
        except Exception:
            return 500, "WASM load failed: ESP_FAIL"
        with self._lock:
            free = next((i for i, s in enumerate(self._slots) if s.state == "empty"), None)
            if free is None:
                return 500, "WASM load failed: ESP_ERR_NO_MEM"
            self._slots[free] = _Slot("running", name, len(wasm), caps, budget)
        if raw:
            return 200, json.dumps({"status": "ok", "format": "raw", "module_id": free, "size": len(wasm),
                                    "started": True}, separators=(",", ":"))
        return 200, (f'{{"status":"ok","format":"rvf","module_id":{free},"name":"{name}",'
                     f'"wasm_size":{len(wasm)},"caps":"0x{caps:04x}","budget_us":{budget},"started":true}}')

    def modules(self) -> dict[str, Any]:
        with self._lock:
            slots = list(self._slots)
        return {"modules": [{"id": i, "state": s.state, "name": s.name, "binary_size": s.size,
                             "caps": f"0x{s.caps:04x}", "frame_count": 0, "event_count": 0, "error_count": 0,
                             "mean_us": 0, "max_us": 0, "budget_us": s.budget_us, "budget_faults": 0}
                            for i, s in enumerate(slots)],
                "loaded": sum(s.state != "empty" for s in slots), "max": WASM_MAX_MODULES}

    def module_action(self, action: str, text_id: str) -> tuple[int, str]:
        m = re.match(r"\d+", text_id)                  # atoi
        module_id = int(m[0]) if m else 0
        if not text_id or not 0 <= module_id < WASM_MAX_MODULES:
            return 400, "Invalid module ID"
        with self._lock:
            slot = self._slots[module_id]
            if slot.state == "empty":
                return 400, f"{action.capitalize()} failed: ESP_ERR_INVALID_STATE"
            if action == "unload":
                self._slots[module_id] = _Slot()
                return 200, '{"status":"ok","action":"unloaded"}'
            slot.state = "running" if action == "start" else "stopped"
        return 200, f'{{"status":"ok","action":"{"started" if action == "start" else "stopped"}"}}'

    # ------------------------------------------------------------ the pull client

    def pull_once(self, server: str, min_uptime: float = 0.0) -> str:
        """One ota_pull.c check against `server` (host:port); what happened, in a word or two."""
        if time.monotonic() - self._boot_at < min_uptime:
            return "too early"
        try:
            status, length, body = self._get(server, "/api/v1/firmware/latest", 4096)
        except OSError:
            return "no answer"
        if status != 200 or length <= 0 or length > 4096:       # esp_http_client_fetch_headers
            return "bad length"
        text = body.decode("utf-8", "replace")
        if '"available":true' not in text:
            return "none available"
        remote = _json_string(text, "version") or ""
        sha = _json_string(text, "sha256") or ""
        if len(remote) >= 32 or len(sha) >= 65:
            return "bad answer"
        if not remote:
            return "no version"
        if version_compare(self.version, remote) <= 0:
            return "up to date"
        try:
            status, length, image = self._get(server, "/api/v1/firmware/download", PULL_MAX_SIZE)
        except OSError:
            return "download failed"
        if status != 200 or length <= 0 or length > PULL_MAX_SIZE:
            return "bad size"
        if sha and hashlib.sha256(image).hexdigest() != sha:
            return "sha256 mismatch"
        code, _ = self.flash(image)
        return "updating" if code == 200 else "invalid image"


    def _get(self, server: str, path: str, limit: int) -> tuple[int, int, bytes]:
        """GET from the node's own address; (status, Content-Length or -1 when chunked, body)."""
        host, _, port = server.rpartition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30, source_address=(self.host, 0))
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            length = int(response.headers.get("Content-Length") or -1)
            return response.status, length, response.read(min(max(length, 0), limit))
        finally:
            conn.close()


class _Handler(BaseHTTPRequestHandler):
    mock: MockOtaNode
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:     # noqa: A002 - http.server's name
        self.mock.log.append(format % args)

    def _send(self, code: int, body: str, *, close: bool = False) -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json" if code == 200 else "text/html")
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def _refuse(self, code: int, body: str) -> None:
        """httpd_resp_send_err then ESP_FAIL: answered, body unread, socket closed (a reset)."""
        self._send(code, body, close=True)
        self.wfile.flush()

    def _length(self) -> int:
        try:
            return int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return -1

    def _auth(self) -> bool:
        if self.mock.authorized(self.headers.get("Authorization")):
            return True
        self._refuse(403, AUTH_REQUIRED)
        return False

    def do_GET(self) -> None:
        if self.path == "/ota/status":
            self._send(200, json.dumps(self.mock.status(), separators=(",", ":")))
        elif self.path == "/wasm/list":
            self._send(200, json.dumps(self.mock.modules(), separators=(",", ":")))
        else:
            self._refuse(404, "Nothing matches the given URI")

    def do_POST(self) -> None:
        mock, path, length = self.mock, self.path, self._length()
        if path == "/ota":
            if not self._auth():
                return
            if length <= 0 or length > OTA_MAX_SIZE:
                self._refuse(400, "Invalid firmware size (must be 1B - 900KB)")
                return
            code, body = mock.flash(self.rfile.read(length))
            self._send(code, body)
        elif path == "/ota/recalibrate":
            if not self._auth():
                return
            for key in ("gl_agc", "gl_fft", "gl_ap_mac"):
                mock.nvs.pop(key, None)
            self._send(200, '{"status":"ok","message":"gain-lock NVS cleared; rebooting"}')
            mock._reboot_later()
        elif path == "/ota/set-target":
            if not self._auth():
                return
            body = self.rfile.read(min(max(length, 0), 39)).decode("latin-1")
            parsed = parse_ip_port(body)
            if parsed is None:
                self._refuse(400, TARGET_RULE)
                return
            mock.nvs["target_ip"], mock.nvs["target_port"] = parsed
            self._send(200, f'{{"status":"ok","target_ip":"{parsed[0]}","target_port":{parsed[1]},'
                            '"message":"rebooting"}')
            mock.udp_target = parsed
            mock._reboot_later()
        elif path == "/wasm/upload":
            if length <= 0:
                self._refuse(400, "Empty body")
                return
            if length > MAX_UPLOAD:
                self._refuse(400, f"Upload too large ({length} > {MAX_UPLOAD})")
                return
            code, body = mock.load_module(self.rfile.read(length))
            self._send(code, body) if code == 200 else self._refuse(code, body)
        elif path.startswith(("/wasm/start/", "/wasm/stop/")) and not mock.exact_uri_matching:
            action, text_id = path.split("/")[2], path.split("/", 3)[3]
            code, body = mock.module_action(action, text_id)
            self._send(code, body) if code == 200 else self._refuse(code, body)
        else:
            self._refuse(404, "Nothing matches the given URI")

    def do_DELETE(self) -> None:
        if self.path.startswith("/wasm/") and not self.mock.exact_uri_matching:
            code, body = self.mock.module_action("unload", self.path[len("/wasm/"):])
            self._send(code, body) if code == 200 else self._refuse(code, body)
        else:
            self._refuse(404, "Nothing matches the given URI")
