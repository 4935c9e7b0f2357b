"""`ruview-node`: tools for RuView ESP32-C6 nodes.

`simulate` is here now; ports, flash, provision and monitor arrive with the
node-tools work (issue 5).
"""

from __future__ import annotations

import argparse
import sys

from bridge import __version__
from firmware_tools.simulate import SCENARIOS, generate, make_nodes, send_udp, write_serial


def _target(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host or "127.0.0.1", int(port)


def cmd_simulate(args: argparse.Namespace) -> int:
    nodes = make_nodes(args.nodes, args.scenario, args.duration, rate=args.rate,
                       raw_csi=args.raw_csi, first_id=args.first_id, seed=args.seed)
    stream = generate(nodes, args.duration, args.seed)
    where = args.serial or "%s:%d" % args.target
    print(f"simulating {args.nodes} node(s), scenario {args.scenario}, {args.duration:g} s "
          f"at {args.rate:g} Hz -> {where}", file=sys.stderr)
    try:
        if args.serial:
            import serial  # pyserial: any device path or URL (e.g. a pty from socat)

            with serial.serial_for_url(args.serial, baudrate=115200) as port:
                sent = write_serial(stream, port, args.speed)
        else:
            sent = send_udp(stream, *args.target, speed=args.speed)
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        print(f"ruview-node: cannot send to {where}: {exc}", file=sys.stderr)
        return 1
    print(f"sent {sent} frames", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ruview-node",
        description="Find, flash, provision, monitor and simulate RuView ESP32-C6 nodes.")
    parser.add_argument("--version", action="version", version=f"ruview-node {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
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
    sim.set_defaults(func=cmd_simulate)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)
