"""`ruview-node provision`: choose the path (serial onboarding or NVS), run it, record, register."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import serial

from firmware_tools import records
from firmware_tools.esptool_session import ConnectOptions, DeviceError
from firmware_tools.node_secrets import NodeSecrets, PskStore
from firmware_tools.nvs_provision import provision_nvs
from firmware_tools.onboarding import OnboardingError, provision as provision_serial, wire_text
from firmware_tools.settings import NodeSettings, SettingsError

CONSOLE_BAUD = 115200


@dataclass(frozen=True)
class ProvisionRequest:
    port: str
    settings: NodeSettings
    method: str = "auto"                 # auto | serial | nvs
    dry_run: bool = False
    nvs_output: Path = Path("ruview-nvs.bin")
    timeout: float = 10.0
    reboot_timeout: float = 20.0
    connect: ConnectOptions | None = None
    records_path: Path | None = None
    secrets: NodeSecrets = NodeSecrets()
    ota_psk: bool = False                # make (or keep) the node's PSK and write it
    psk_store: PskStore | None = None    # the bridge's side of the PSK


@dataclass(frozen=True)
class ProvisionOutcome:
    method: str
    node_id: int | None
    board: str | None


def choose_method(request: ProvisionRequest) -> str:
    extra = request.settings.needs_nvs()
    if request.secrets.given() or request.ota_psk:
        extra = extra | {"ota_psk" if request.ota_psk else "wasm_pubkey"}
    if request.method == "serial" and extra:
        flags = ", ".join("--" + name.replace("_", "-") for name in sorted(extra))
        raise SettingsError(f"{flags}: the serial protocol carries only node id, target and Wi-Fi; "
                            "use --method nvs (or auto) to write these")
    if request.method == "auto" and extra:
        return "nvs"
    return "serial" if request.method == "auto" else request.method


def open_console(url: str) -> serial.Serial:
    """Open without touching DTR/RTS: on a C6's USB-Serial-JTAG they would reset the chip."""
    port = serial.serial_for_url(url, CONSOLE_BAUD, timeout=0.05, do_not_open=True)
    port.dtr = False
    port.rts = False
    port.open()
    return port


def run(request: ProvisionRequest, *, say: Callable[[str], None], on_log: Callable[[str], None]) -> ProvisionOutcome:
    method = choose_method(request)
    if method == "nvs" and request.method == "auto":
        say("zone and thresholds live in the node's NVS: using the NVS path")
    if method == "serial":
        if request.dry_run:
            s = request.settings
            wifi = f"{wire_text(s.ssid)} <password, base64>" if s.ssid else "KEEP KEEP"
            say(f"dry run: would send RUVIEW_HELLO_V1 <nonce>, then: RUVIEW_CONFIG_V1 <nonce> "
                f"{s.node_id or '<node id kept>'} {s.target_ip or '<target kept>'} "
                f"{s.target_port or '<port kept>'} {wifi}")
            return ProvisionOutcome("serial", s.node_id, None)
        try:
            with open_console(request.port) as port:
                result = provision_serial(port, request.settings, on_log=on_log, timeout=request.timeout,
                                          reboot_timeout=request.reboot_timeout,
                                          reopen=lambda: open_console(request.port))
        except OnboardingError as exc:
            if request.method == "auto" and exc.reason is None and "no answer to RUVIEW_HELLO_V1" in str(exc):
                say("the node does not answer serial onboarding; falling back to the NVS path")
                return _nvs(request, say)
            raise
        except (serial.SerialException, OSError) as exc:
            raise OnboardingError(f"{request.port}: cannot open the port ({exc}). `ruview-node ports` "
                                  "lists what is there; close any monitor holding it.") from None
        say(f"node {result.node_id} configured (target {result.target_ip}:{result.target_port}"
            f"{', Wi-Fi updated' if result.wifi_changed else ', Wi-Fi kept'}) and rebooted: {result.boot_line.strip()}")
        board = f"digest-{result.hello.device_digest}" if result.hello.device_digest else None
        _record(request, board, "serial", result.node_id)
        return ProvisionOutcome("serial", result.node_id, board)
    return _nvs(request, say)


def _node_id(entries) -> int | None:
    stored = next((e.value for e in entries if e.namespace == "csi_cfg" and e.key == "node_id"), None)
    return stored if isinstance(stored, int) else None  # a u8: any other type is no node id the firmware reads


def _nvs(request: ProvisionRequest, say: Callable[[str], None]) -> ProvisionOutcome:
    options = request.connect or ConnectOptions(request.port)
    secrets, store = request.secrets, request.psk_store
    node_id = request.settings.node_id
    if request.ota_psk and store is not None and node_id is not None:
        # stored on the bridge's side before the node gets it: a node never holds a PSK the bridge lost
        secrets = NodeSecrets(store.get_or_create(node_id)[0], secrets.wasm_pubkey, secrets.wasm_verify)

    plan = provision_nvs(options, request.settings, say=say,
                         dry_run_to=request.nvs_output if request.dry_run else None,
                         extra=secrets.nvs_updates())
    for line in plan.diff():
        say(f"  {line}")
    if plan.kept_namespaces():
        say(f"  kept: {', '.join(plan.kept_namespaces())}")
    node_id = _node_id(plan.after)
    if request.ota_psk and store is not None and node_id is not None and not request.dry_run:
        say(f"OTA PSK of node {node_id}: in the node's NVS (security/ota_psk) and in {store.path(node_id)} "
            "(0600; never shown)")
    if not request.dry_run:
        _record(request, None, "nvs", node_id)
    return ProvisionOutcome("nvs", node_id, None)


def _record(request: ProvisionRequest, board: str | None, method: str, node_id: int | None) -> None:
    if request.records_path is None:
        return
    shown = request.settings.shown()
    shown.pop("password", None)
    records.save(request.records_path, board or f"port-{request.port}",
                 {**shown, "node_id": node_id, "method": method,
                  "wifi_set": request.settings.password is not None})

