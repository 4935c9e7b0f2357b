"""`ruview-node`: from a bare ESP32-C6 to a node streaming to the bridge.

    ruview-node ports                      which boards are plugged in
    ruview-node flash FIRMWARE             write a release (checks chip and images first)
    ruview-node provision --ssid ... --target-ip ... --node-id N [--register]
    ruview-node monitor                    the node's log, frames decoded inline
    ruview-node simulate                   virtual nodes for testing without hardware
    ruview-node mock-board start | stop    a stand-in C6 for flash and provision without hardware
    ruview-node ota IMAGE --node NAME      update a node over Wi-Fi (or --host H --psk-file F)
    ruview-node recalibrate | set-target   the node's gain lock; the bridge it sends to
    ruview-node module pack | deploy | list | start | stop | remove   on-node WASM modules
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from bridge import __version__

EXIT_FAILED, EXIT_USAGE = 1, 2


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _fail(text: str, code: int = EXIT_FAILED) -> int:
    _say(f"ruview-node: {text}")
    return code


def _pick_port(args) -> str:
    from firmware_tools.ports import choose_port, list_serial_ports

    port, note = choose_port(args.port, [] if args.port else list_serial_ports())
    if note:
        _say(note)
    return port


def _connect_options(args, port: str):
    from firmware_tools.esptool_session import ConnectOptions

    return ConnectOptions(port, baud=args.baud, before=args.before, after=args.after,
                          connect_attempts=args.connect_attempts)


class _Bar:
    """One progress line per region on a terminal; a line per finished region otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()

    def __call__(self, prefix: str, cur: int, total: int) -> None:
        done = cur * 30 // max(total, 1)
        if self.tty:
            sys.stderr.write(f"\r  {prefix:<24} [{'#' * done}{'.' * (30 - done)}] {100 * cur // max(total, 1):3d}%")
            if cur >= total:
                sys.stderr.write("\n")
        elif cur >= total:
            sys.stderr.write(f"  {prefix}: done\n")
        sys.stderr.flush()


# ------------------------------------------------------------------ commands

def cmd_ports(args) -> int:
    from firmware_tools.ports import list_serial_ports

    ports = list_serial_ports()
    if args.json:
        print(json.dumps([{**dataclasses.asdict(p), "usb_id": p.usb_id, "kind": p.kind,
                           "chip_guess": p.chip_guess, "espressif": p.is_espressif_board} for p in ports]))
        return 0
    if not ports:
        _say("no serial ports found. Plug the node in with a data USB cable (charge-only cables show nothing).")
        return 1
    print(f"{'PORT':<22} {'USB ID':<10} {'WHAT':<34} CHIP (best guess)")
    for p in ports:
        mark = "*" if p.is_espressif_board else " "
        print(f"{mark}{p.device:<21} {p.usb_id:<10} {p.kind[:34]:<34} {p.chip_guess}")
        if p.by_id:
            print(f"  {p.by_id}")
    boards = [p for p in ports if p.is_espressif_board]
    if len(boards) == 1:
        _say(f"commands will use {boards[0].device} unless given --port")
    return 0


def cmd_flash(args) -> int:
    from firmware_tools.esptool_session import DeviceError
    from firmware_tools.flashing import flash_release
    from firmware_tools.ports import PortError
    from firmware_tools.release import ReleaseError, load_release

    try:
        release = load_release(args.firmware)
    except ReleaseError as exc:
        return _fail(str(exc), EXIT_USAGE)
    app = release.app
    _say(f"release: {app.project} {app.version} (IDF {app.idf_version})" if app else "release: (no app descriptor)")
    for line in release.describe():
        _say(f"  {line}")
    if args.dry_run:
        _say("dry run: nothing written")
        return 0
    try:
        port = _pick_port(args)
        report = flash_release(release, _connect_options(args, port), say=_say, progress=_Bar(),
                               verbose=args.verbose)
    except (PortError, DeviceError) as exc:
        return _fail(str(exc))
    _say(f"flashed and verified {report.written:,} bytes at {report.baud} baud"
         + (" (after falling back from a failed fast write)" if report.fell_back else ""))
    _say("next: ruview-node provision --ssid YOUR_WIFI --target-ip BRIDGE_IP --node-id N")
    return 0


def _settings(args):
    from firmware_tools.settings import NodeSettings

    return NodeSettings(node_id=args.node_id, target_ip=args.target_ip, target_port=args.target_port,
                        ssid=args.ssid, zone=args.zone, tdm_slot=args.tdm_slot, tdm_total=args.tdm_total,
                        edge_tier=args.edge_tier, pres_thresh=args.pres_thresh,
                        fall_thresh=args.fall_thresh, channel=args.channel)


def _node_secrets(args):
    """--ota-psk, --wasm-pubkey, --wasm-verify as NodeSecrets and the bridge's PSK store."""
    from firmware_tools.node_secrets import NodeSecrets, PskStore, bridge_state_dir

    store = None
    if args.ota_psk:
        if args.node_id is None:
            raise ValueError("--ota-psk needs --node-id (the bridge keeps each node's PSK by its id)")
        store = PskStore(bridge_state_dir(args.config, args.state_dir))
    pubkey = None
    if args.wasm_pubkey is not None:
        from firmware_tools.rvf import publisher_public_key

        pubkey = publisher_public_key(args.wasm_pubkey)
    verify = None if args.wasm_verify is None else args.wasm_verify == "on"
    return NodeSecrets(None, pubkey, verify), store


def cmd_provision(args) -> int:
    from firmware_tools import provision, records
    from firmware_tools.esptool_session import DeviceError
    from firmware_tools.onboarding import OnboardingError
    from firmware_tools.ports import PortError
    from firmware_tools.register import (Registration, RegisterError, bridge_connection, register_in_config,
                                         register_with_bridge)
    from firmware_tools.settings import SettingsError, validate
    from firmware_tools.wifi_password import PasswordError, read_password

    if args.password is not None:
        return _fail("--password is not accepted: it would show in `ps` and your shell history. "
                     "Type it at the prompt, or set RUVIEW_WIFI_PASSWORD, or use --password-file FILE.",
                     EXIT_USAGE)
    settings = _settings(args)
    room = args.zone
    try:
        node_secrets, store = _node_secrets(args)
    except ValueError as exc:
        return _fail(str(exc), EXIT_USAGE)
    if args.register and args.node_id is None:
        return _fail("--register needs --node-id (the bridge knows nodes by id)", EXIT_USAGE)
    # With --register, a room the serial protocol cannot store goes to the bridge only.
    if args.register and settings.needs_nvs() == {"zone"} and args.method in ("auto", "serial"):
        settings = dataclasses.replace(settings, zone=None)
        _say(f"room {room!r} is registered with the bridge (the node itself keeps its zone)")
    try:
        if settings.ssid is not None:
            settings = dataclasses.replace(settings, password=read_password(args.password_file))
        validate(settings)
        if not settings.given() and not node_secrets.given() and not args.ota_psk:
            raise SettingsError("nothing to set: pass at least one of --node-id, --target-ip, --target-port, "
                                "--ssid, --zone, a threshold, --ota-psk or --wasm-pubkey")
        request = provision.ProvisionRequest(
            secrets=node_secrets, ota_psk=args.ota_psk, psk_store=store,
            port="", settings=settings, method=args.method, dry_run=args.dry_run,
            nvs_output=args.nvs_output, timeout=args.timeout, reboot_timeout=args.reboot_timeout,
            records_path=None if args.no_record else (args.records or records.default_path()))
        provision.choose_method(request)
    except (PasswordError, SettingsError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    _say("settings: " + ", ".join(f"{k}={v}" for k, v in settings.shown().items()))
    try:
        port = args.port if (args.dry_run and provision.choose_method(request) == "serial") else _pick_port(args)
        request = dataclasses.replace(request, port=port, connect=_connect_options(args, port))
        outcome = provision.run(request, say=_say, on_log=_say if args.verbose else (lambda _: None))
    except (PortError, DeviceError, OnboardingError) as exc:
        return _fail(str(exc))
    if args.register and not args.dry_run:
        reg = Registration(outcome.node_id or args.node_id, args.name, room, args.privacy_class)
        try:
            _say(register_in_config(args.config, reg))
            if args.bridge_mqtt:
                connection, topics = bridge_connection(args.config, args.bridge_mqtt, args.base_topic)
                data = register_with_bridge(connection, topics, reg)
                _say(f"bridge: node {data['node_id']} is {data['name']!r} in {data.get('room')!r}, "
                     f"{data['privacy_class']}")
        except RegisterError as exc:
            return _fail(f"the node is provisioned, but registering it failed: {exc}")
    return 0


def cmd_monitor(args) -> int:
    import serial

    from firmware_tools.monitor import monitor
    from firmware_tools.ports import PortError
    from firmware_tools.provision import open_console

    try:
        port = _pick_port(args)
    except PortError as exc:
        return _fail(str(exc))
    if not args.wait and "://" not in port and not os.path.exists(port):
        return _fail(f"no serial port at {port} (ruview-node ports lists the ones there are; "
                     "add --wait to wait for it to appear)")
    colour = sys.stdout.isatty() and not args.no_color and not args.json

    def open_port() -> serial.Serial:
        handle = open_console(port)
        handle.baudrate = args.baud
        return handle

    if not args.json:
        _say(f"monitoring {port} (Ctrl-C to stop)")
    try:
        monitor(open_port, sys.stdout, colour=colour, as_json=args.json, frames_only=args.frames_only,
                duration=args.duration, say=_say)
    except KeyboardInterrupt:
        return 0
    return 0


def cmd_simulate(args) -> int:
    from firmware_tools.simulate import generate, make_nodes, narrate, send_udp, write_serial

    nodes = make_nodes(args.nodes, args.scenario, args.duration, rate=args.rate,
                       raw_csi=args.raw_csi, first_id=args.first_id, seed=args.seed)
    stream = generate(nodes, args.duration, args.seed)
    if not args.quiet:
        stream = narrate(stream, nodes, args.duration, _say)
    where = args.serial or "%s:%d" % args.target
    _say(f"simulating {args.nodes} node(s), scenario {args.scenario}, {args.duration:g} s "
         f"at {args.rate:g} Hz -> {where}")
    try:
        if args.serial:
            import serial  # any device path or URL (e.g. a pty from socat)

            with serial.serial_for_url(args.serial, baudrate=115200) as port:
                sent = write_serial(stream, port, args.speed)
        else:
            host, udp_port = args.target
            sent = send_udp(stream, host, udp_port, speed=args.speed)
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        return _fail(f"cannot send to {where}: {exc}")
    _say(f"sent {sent} frames")
    return 0


def cmd_mock_board(args) -> int:
    from firmware_tools import mock_node

    state = args.state or mock_node.default_state()
    try:
        if args.action == "start":
            board, started = mock_node.start(state, blank=args.blank)
            print(board.url, flush=True)
            if started:
                flash = "erased flash" if args.blank else "RuView's partition table on its flash, NVS empty"
                _say(f"mock ESP32-C6 at {board.url} (pid {board.pid}; {flash}); use it with "
                     f"--port {board.url} --before no-reset; `ruview-node mock-board stop` ends it")
            else:
                _say(f"a mock board is already running at {board.url} (pid {board.pid})")
        elif args.action == "stop":
            stopped = mock_node.stop(state)
            _say(f"stopped the mock board at {stopped.url}" if stopped else "no mock board is running")
        elif args.action == "status":
            running = mock_node.status(state)
            if running is None:
                _say("no mock board is running")
                return EXIT_FAILED
            print(running.url)
        else:
            mock_node.run_foreground(blank=args.blank, say=_say, show_url=lambda url: print(url, flush=True))
    except mock_node.MockError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 0
    return 0


# ------------------------------------------------------------------ parser

def _target(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host or "127.0.0.1", int(port)


def _port_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", "-p", help="serial device or pyserial URL (default: the only Espressif "
                                        "board plugged in)")


def _esptool_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("connection (esptool)")
    g.add_argument("--baud", "-b", type=int, default=460800,
                   help="baud rate for writing (default 460800; falls back to 115200 on failure)")
    g.add_argument("--before", default="default-reset",
                   choices=["default-reset", "usb-reset", "no-reset", "no-reset-no-sync"],
                   help="how to enter the bootloader; no-reset after holding BOOT and tapping RESET")
    g.add_argument("--after", default="hard-reset", choices=["hard-reset", "soft-reset", "no-reset"],
                   help="what to do when done (default hard-reset: start the new firmware)")
    g.add_argument("--connect-attempts", type=int, default=7, help="sync attempts (default 7)")
    g.add_argument("--verbose", "-v", action="store_true", help="show esptool's own output")


def build_parser() -> argparse.ArgumentParser:
    from firmware_tools.simulate import SCENARIOS

    parser = argparse.ArgumentParser(
        prog="ruview-node",
        description="Find, flash, provision, monitor and simulate RuView ESP32-C6 nodes. "
                    "A new board: `ports`, then `flash`, then `provision`, then watch it on MQTT.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"ruview-node {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    ports = sub.add_parser("ports", help="list serial ports, Espressif boards first",
                           description="List serial ports with their USB ids, Espressif boards first "
                                       "(marked *), with a best guess at the chip.")
    ports.add_argument("--json", action="store_true", help="machine-readable output")
    ports.set_defaults(func=cmd_ports)

    flash = sub.add_parser("flash", help="write a firmware release to a C6",
                           description="Write a RuView firmware release to an ESP32-C6: an ESP-IDF build "
                                       "folder or its zip (bootloader 0x0, partition table 0x8000, ota data "
                                       "0xF000, app 0x20000) or one merged image. The chip and every image "
                                       "are checked before anything is erased; the write is verified.")
    flash.add_argument("firmware", type=Path, help="release folder, .zip, merged image or app .bin")
    _port_option(flash)
    flash.add_argument("--dry-run", action="store_true", help="print what would be written where, and stop")
    _esptool_options(flash)
    flash.set_defaults(func=cmd_flash)

    prov = sub.add_parser(
        "provision", help="set Wi-Fi, bridge address, node id, room and thresholds",
        description="Configure a flashed node. Uses the node's serial onboarding protocol when its firmware "
                    "has it (node id, target, Wi-Fi), and otherwise — or for zone and thresholds — a "
                    "read-modify-write of its NVS partition that keeps every other setting. The Wi-Fi "
                    "password comes from a prompt, RUVIEW_WIFI_PASSWORD or --password-file, never argv.")
    _port_option(prov)
    what = prov.add_argument_group("settings (flag names as in RuView's provision.py)")
    what.add_argument("--ssid", help="Wi-Fi network name (the password is asked for)")
    what.add_argument("--password", help=argparse.SUPPRESS)
    what.add_argument("--password-file", type=Path, help="file holding the Wi-Fi password (mode 600)")
    what.add_argument("--target-ip", help="the bridge's LAN address (private IPv4)")
    what.add_argument("--target-port", type=int, help="the bridge's UDP port (default on the node: 5005)")
    what.add_argument("--node-id", type=int, help="1..255, unique per home")
    what.add_argument("--zone", "--room", dest="zone", help="room/zone name (up to 15 bytes)")
    what.add_argument("--tdm-slot", type=int, help="TDM slot of this node")
    what.add_argument("--tdm-total", type=int, help="number of TDM nodes (set it on every node)")
    what.add_argument("--edge-tier", type=int, help="on-node processing tier 0..2")
    what.add_argument("--pres-thresh", type=float, help="on-node presence threshold (0 = automatic)")
    what.add_argument("--fall-thresh", type=float, help="on-node fall threshold")
    what.add_argument("--channel", type=int, help="Wi-Fi channel for CSI (0/unset = the AP's)")
    sec = prov.add_argument_group("secrets (written through NVS; docs/nodes.md, \"Update nodes over the air\")")
    sec.add_argument("--ota-psk", action="store_true",
                     help="give the node its OTA key (security/ota_psk): the one the bridge keeps for this "
                          "node id, or a new random one kept 0600 in the bridge's state directory; never shown")
    sec.add_argument("--wasm-pubkey", type=Path, metavar="KEYFILE",
                     help="write the public half of this publisher key (`ruview-bridge plugin keygen`) "
                          "as csi_cfg/wasm_pubkey: the node then runs modules signed with it")
    sec.add_argument("--wasm-verify", choices=["on", "off"],
                     help="csi_cfg/wasm_verify: refuse unsigned modules (on, the firmware's default)")
    sec.add_argument("--state-dir", type=Path,
                     help="the bridge's state directory (default: bridge.state_dir of --config)")
    how = prov.add_argument_group("how")
    how.add_argument("--method", choices=["auto", "serial", "nvs"], default="auto",
                     help="auto (default): serial onboarding, NVS for zone/thresholds or old firmware")
    how.add_argument("--dry-run", action="store_true",
                     help="serial: print the request; nvs: read the board and write the new image "
                          "to --nvs-output instead of flashing it")
    how.add_argument("--nvs-output", type=Path, default=Path("ruview-nvs.bin"),
                     help="where --dry-run writes the NVS image (default ruview-nvs.bin)")
    how.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the node's answer")
    how.add_argument("--reboot-timeout", type=float, default=20.0,
                     help="seconds to wait for the boot log after the node accepts")
    how.add_argument("--records", type=Path, help="local record of provisioned boards "
                                                  "(default ~/.local/state/ruview/nodes.json; no passwords)")
    how.add_argument("--no-record", action="store_true", help="keep no local record")
    reg = prov.add_argument_group("register with the bridge")
    reg.add_argument("--register", action="store_true",
                     help="add the node to the bridge's config.yaml (and to a running bridge with --bridge-mqtt)")
    reg.add_argument("--name", help="node name on MQTT ([a-z0-9_-]; default node_<id>)")
    reg.add_argument("--privacy-class", choices=["anonymous", "restricted"], help="privacy class for the bridge")
    reg.add_argument("--config", type=Path, default=Path("config.yaml"), help="bridge config (default ./config.yaml)")
    reg.add_argument("--bridge-mqtt", metavar="URL",
                     help="broker of a running bridge, e.g. mqtt://127.0.0.1:1883; reached with the TLS "
                          "settings, username and password of --config's mqtt section")
    reg.add_argument("--base-topic", help="the bridge's base topic (default: mqtt.base_topic of --config)")
    _esptool_options(prov)
    prov.set_defaults(func=cmd_provision)

    mon = sub.add_parser("monitor", help="the node's console, frames decoded inline",
                         description="Show the node's serial console: ESP-IDF log lines coloured by level, "
                                     "binary RuView frames decoded inline with the bridge's decoder. Waits "
                                     "for the port to come back after a reset or replug.")
    _port_option(mon)
    mon.add_argument("--baud", type=int, default=115200, help="console baud rate (default 115200)")
    mon.add_argument("--frames-only", action="store_true", help="only decoded frames, no log lines")
    mon.add_argument("--json", action="store_true", help="one JSON object per line")
    mon.add_argument("--no-color", action="store_true", help="no colours")
    mon.add_argument("--duration", type=float, help="stop after this many seconds")
    mon.add_argument("--wait", action="store_true", help="wait for a port that is not there yet")
    mon.set_defaults(func=cmd_monitor)

    sim = sub.add_parser("simulate", help="virtual nodes sending realistic frames",
                         description="Virtual RuView nodes: feature state, vitals, mesh health "
                                     "(and raw CSI with --raw-csi) to a bridge's UDP port or a "
                                     "serial port.")
    sim.add_argument("--nodes", type=int, default=1, help="how many nodes (default 1)")
    sim.add_argument("--scenario", choices=sorted(SCENARIOS), default="visit",
                     help="what happens in the room (default visit: enter at 30%%, leave at 70%%)")
    sim.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    sim.add_argument("--rate", type=float, default=5.0, help="feature-state Hz: 1 or 5 (default 5)")
    sim.add_argument("--speed", type=float, default=1.0, help="time scale; 0 = as fast as possible")
    sim.add_argument("--target", type=_target, default=("127.0.0.1", 5005),
                     help="bridge UDP HOST:PORT (default 127.0.0.1:5005)")
    sim.add_argument("--serial", help="write to this serial device or pyserial URL instead")
    sim.add_argument("--raw-csi", action="store_true", help="also send raw CSI frames")
    sim.add_argument("--first-id", type=int, default=1, help="node id of the first node")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--quiet", action="store_true", help="no progress lines")
    sim.set_defaults(func=cmd_simulate)

    mock = sub.add_parser("mock-board", help="a stand-in ESP32-C6 for flash and provision without hardware",
                          description="An emulated ESP32-C6 ROM bootloader on a free loopback port "
                                      "(esp32-mock-bootloader, a test dependency: pip install "
                                      "'esp32-mock-bootloader==0.3.0'). `start` runs it in the background "
                                      "and prints its socket:// URL for --port (with --before no-reset); "
                                      "its flash holds RuView's partition table and an empty NVS partition "
                                      "unless --blank, and lasts until `stop`.")
    mock.add_argument("action", choices=["start", "stop", "status", "run"],
                      help="start in the background, stop it, print its URL, or run in the foreground")
    mock.add_argument("--blank", action="store_true", help="start with erased flash (flash a release first)")
    mock.add_argument("--state", type=Path, help="where the running board is recorded "
                                                 "(default ~/.local/state/ruview/mock-board.json)")
    mock.set_defaults(func=cmd_mock_board)

    from firmware_tools.node_commands import add_parsers

    add_parsers(sub)                       # ota, recalibrate, set-target, module (the node's HTTP API)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    return args.func(args)
