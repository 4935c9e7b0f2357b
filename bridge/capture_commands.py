"""`ruview-bridge capture | replay | import-recording`: datagrams to files and back.

A capture is what arrived on the nodes' UDP port; replay sends it to a
running bridge's UDP port, so it goes through exactly the same pipeline as
live nodes.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from bridge.nodes.capture import CaptureError, read_capture, record_udp, send_datagrams, write_capture
from bridge.nodes.recording import RecordingError, recording_datagrams


def cmd_capture(args: argparse.Namespace, config) -> int:
    udp = config.nodes.udp
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"capturing UDP {udp.bind}:{udp.port} to {args.file} (Ctrl-C to stop)", file=sys.stderr)
    try:
        count = record_udp(args.file, udp.bind, udp.port, stop, args.duration)
    except OSError as exc:
        print(f"ruview-bridge: cannot capture on UDP {udp.bind}:{udp.port}: {exc.strerror} "
              "(is the bridge running? stop it, or capture on another nodes.udp.port)", file=sys.stderr)
        return 1
    print(f"{count} datagrams written to {args.file}", file=sys.stderr)
    return 0


def cmd_replay(args: argparse.Namespace, config) -> int:
    host, _, port = (args.to or f"127.0.0.1:{config.nodes.udp.port}").rpartition(":")
    try:
        stream = ((d.t, d.data) for d in read_capture(args.file))
        sent = send_datagrams(stream, host or "127.0.0.1", int(port), args.speed)
    except CaptureError as exc:
        print(f"ruview-bridge: {exc}", file=sys.stderr)
        return 2
    print(f"replayed {sent} datagrams to {host}:{port}", file=sys.stderr)
    return 0


def cmd_import(args: argparse.Namespace, config) -> int:
    try:
        count = write_capture(args.output, recording_datagrams(args.recording),
                              source=f"import of {args.recording}")
    except RecordingError as exc:
        print(f"ruview-bridge: {exc}", file=sys.stderr)
        return 2
    print(f"{count} datagrams written to {args.output}", file=sys.stderr)
    return 0


def add_parsers(sub) -> None:
    cap = sub.add_parser("capture", help="record datagrams arriving on the nodes' UDP port")
    cap.add_argument("file")
    cap.add_argument("-c", "--config", help="configuration file (YAML) for nodes.udp")
    cap.add_argument("--duration", type=float, help="stop after this many seconds")
    cap.set_defaults(func=cmd_capture, needs_config=True)
    rep = sub.add_parser("replay", help="send a capture to a running bridge's UDP port")
    rep.add_argument("file")
    rep.add_argument("-c", "--config", help="configuration file (YAML) for nodes.udp.port")
    rep.add_argument("--speed", type=float, default=1.0, help="time scale (0 = as fast as possible)")
    rep.add_argument("--to", help="HOST:PORT (default 127.0.0.1:<nodes.udp.port>)")
    rep.set_defaults(func=cmd_replay, needs_config=True)
    imp = sub.add_parser("import-recording", help="turn an upstream .csi.jsonl recording into a capture")
    imp.add_argument("recording")
    imp.add_argument("output")
    imp.set_defaults(func=cmd_import, needs_config=True)
