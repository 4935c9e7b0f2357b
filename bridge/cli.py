"""`ruview-bridge`: run the bridge, check a config, print the version.

Exit codes: 0 clean stop, 1 runtime failure (e.g. broker port taken),
2 bad configuration or usage, or an enabled feature that cannot start (its port
taken, no network for HomeKit) and is not in `bridge.keep_running_without` —
so scripts and systemd can tell them apart.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from pathlib import Path
from typing import Any

from bridge import __version__, capture_commands, catalog, state_commands
from bridge.assist import commands as assist_commands
from bridge.homekit import commands as homekit_commands
from bridge.plugins import commands as plugin_commands
from bridge.app import Bridge, build_bridge
from bridge.config import ConfigError, secret_values
from bridge.console import StatusLine, file_handler, set_level, setup_logging
from bridge.core.rate import RateMeter
from bridge.mqtt.embedded import EmbeddedBroker, broker_answers
from bridge.stop_signals import on_stop_signals

log = logging.getLogger("bridge")

DEFAULT_CONFIG = "config.yaml"


def _config_path(arg: str | None) -> str | None:
    """-c wins; otherwise ./config.yaml if present; otherwise built-in defaults."""
    if arg:
        return arg
    return DEFAULT_CONFIG if Path(DEFAULT_CONFIG).exists() else None


def _load(arg: str | None) -> tuple[Any, str | None]:
    path = _config_path(arg)
    return catalog.load_config(path), path


def _load_or_report(arg: str | None) -> tuple[Any | None, str | None]:
    """Load the config, or print every problem (one line each) for the user and return None."""
    try:
        return _load(arg)
    except ConfigError as exc:
        for line in exc.lines:
            print(f"ruview-bridge: {line}", file=sys.stderr)
        return None, None


def resolve_broker(config: Any) -> tuple[str, EmbeddedBroker | None]:
    """`mqtt.url: auto`: use a broker on the loopback port if one answers, else the embedded one."""
    url = config.mqtt.url
    if url != "auto":
        return url, None
    emb = config.mqtt.embedded
    if broker_answers("127.0.0.1", emb.port):
        log.info("mqtt.url is auto: using the broker already listening on 127.0.0.1:%d", emb.port)
        return f"mqtt://127.0.0.1:{emb.port}", None
    broker = EmbeddedBroker(emb.bind, emb.port, username=config.mqtt.username,
                            password=config.mqtt.password_value())
    broker.start()
    log.info("mqtt.url is auto and no broker answered on port %d: started the embedded broker "
             "(MQTT 3.1.1 and 5) on %s:%d", emb.port, emb.bind, emb.port)
    return f"mqtt://127.0.0.1:{emb.port}", broker


def _summary(bridge: Bridge, path: str | None) -> str:
    m = bridge.config.mqtt
    lines = [
        f"ruview-bridge {__version__}",
        f"  config      {path or '(built-in defaults)'}",
        f"  broker      {bridge.mqtt.broker_url}{' (embedded)' if bridge.embedded_broker else ''}",
        f"  client id   {bridge.mqtt.settings.client_id}{'  user ' + m.username if m.username else ''}",
        f"  base topic  {bridge.topics.base}   (try: mosquitto_sub -v -t '{bridge.topics.base}/#')",
        f"  features    {', '.join(e.name for e in bridge.extensions) or 'none'}",
    ]
    if bridge.topics.share_group:
        lines.append(f"  instance    {bridge.topics.instance} in share group {bridge.topics.share_group}")
    return "\n".join(lines)


def _status_renderer(bridge: Bridge):
    frames = RateMeter(lambda: sum(getattr(e, "frames_received", 0) for e in bridge.extensions))
    rx = RateMeter(lambda: bridge.mqtt.counters.received)
    tx = RateMeter(lambda: bridge.mqtt.counters.published)

    def render() -> str:
        s = bridge.mqtt.stats()
        dot = "\033[32m●\033[0m connected" if s["connected"] else "\033[31m●\033[0m disconnected"
        online = sum(1 for n in bridge.directory.all() if n.online)
        return (f"{dot} {s['broker']} (MQTT {s['protocol']}) | nodes {online}/{len(bridge.directory)} online | "
                f"frames {frames.rate():.1f}/s | MQTT in {rx.rate():.1f}/s out {tx.rate():.1f}/s | "
                f"outbox {s['outbox']}")

    return render


SWITCH_INTERVAL = 0.0005  # seconds a thread may hold the GIL while another waits (Python's default: 5 ms)


def cmd_run(args: argparse.Namespace) -> int:
    config, path = _load_or_report(args.config)
    if config is None:
        return 2
    # The node pipeline is CPU-bound; MQTT, HTTP and the inboxes wake for a moment each. With the
    # default 5 ms a waking thread can wait that long for the GIL (bench/http_latency.py, 1,100
    # frames/s: HTTP p99 6.9 ms at the default, 3.5-4.3 ms at 1 ms, 3.0-3.2 ms at 0.5 ms).
    sys.setswitchinterval(SWITCH_INTERVAL)
    level = args.log_level or config.bridge.log_level
    status = None
    interactive = sys.stderr.isatty() and not args.no_status
    log_file = None
    if config.bridge.log_file:
        b = config.bridge
        try:
            log_file = file_handler(b.log_file, b.log_file_max_bytes, b.log_file_backups, secret_values(config))
        except OSError as exc:
            print(f"ruview-bridge: {path or '(built-in defaults)'}: bridge.log_file: cannot write "
                  f"{b.log_file}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    setup_logging(level, secret_values(config), log_file=log_file)

    stop = threading.Event()
    running: list[Bridge] = []

    def on_signal() -> None:
        stop.set()
        for bridge in running:  # ends the wait below at once: no polling while the bridge runs
            bridge.restart_requested.set()

    on_stop_signals(on_signal)

    try:
        url, embedded = resolve_broker(config)
    except (RuntimeError, ValueError) as exc:
        log.error("%s (is another program using that port? set mqtt.embedded.port or mqtt.url)", exc)
        return 1
    code = 0
    working: Any = None  # the last configuration that started
    try:
        while True:
            bridge = build_bridge(config, broker_url=url, embedded_broker=embedded is not None,
                                  log_level=args.log_level)
            bridge.config_source = lambda: _load(args.config)[0]
            if bridge.log_level != level:  # the log_level request of an earlier run, kept in the state store
                level = bridge.log_level
                set_level(level)
            print(_summary(bridge, path), file=sys.stderr, flush=True)
            if interactive:
                status = StatusLine(sys.stderr, _status_renderer(bridge))
                setup_logging(level, secret_values(config), status, log_file=log_file)
                status.start()
            running[:] = [bridge]
            bridge.start()
            if bridge.unstartable and working is not None and working is not config:
                # a restart into a configuration that cannot start: back to the one that ran
                log.error("the new configuration could not start (%s); going on with the one that ran",
                          "; ".join(bridge.unstartable))
                if status:
                    status.stop()
                bridge.stop()
                config = working
                continue
            if bridge.unstartable:  # each said in one line, with the key to change: a service manager sees exit 2
                stop.set()
                code = 2
            working = config
            if not stop.is_set():
                bridge.restart_requested.wait()
            fatal = getattr(bridge.mqtt, "fatal", None)
            if fatal:  # the broker cannot give what the config needs (said in one line already)
                stop.set()
                code = 2
            log.info("stopping" if stop.is_set() else "restarting on request")
            if status:
                status.stop()
            bridge.stop()
            if stop.is_set():
                break
            if bridge.next_config is not None:  # read and checked when the restart was asked for
                config = bridge.next_config
            else:
                try:
                    config, path = _load(args.config)
                except ConfigError as exc:
                    log.error("restart keeps the running configuration: %s", exc)
            level = args.log_level or config.bridge.log_level
            set_level(level)
    finally:
        if embedded:
            embedded.stop()
    if code and getattr(bridge.mqtt, "fatal", None):
        log.info("stopped: %s", bridge.mqtt.fatal)
    elif code:
        log.info("stopped: %s could not start", ", ".join(line.split(":", 1)[0] for line in bridge.unstartable))
    else:
        log.info("stopped")
    if log_file is not None:
        logging.getLogger().removeHandler(log_file)
        log_file.close()
    return code


def cmd_check_config(args: argparse.Namespace) -> int:
    config, path = _load_or_report(args.config)
    if config is None:
        return 2
    m = config.mqtt
    print(f"{path or '(built-in defaults)'}: OK — broker {m.url}, base topic '{m.base_topic}', "
          f"MQTT {m.protocol}{', TLS' if m.url.startswith('mqtts') else ''}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ruview-bridge",
        description="MQTT bridge for RuView Wi-Fi sensing nodes.")
    parser.add_argument("--version", action="version", version=f"ruview-bridge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="run the bridge (default: ./config.yaml or built-in defaults)")
    run.add_argument("-c", "--config", help="configuration file (YAML)")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    run.add_argument("--no-status", action="store_true", help="no live status line on a terminal")
    run.set_defaults(func=cmd_run)
    check = sub.add_parser("check-config", help="validate a configuration file and exit")
    check.add_argument("-c", "--config", help="configuration file (YAML)")
    check.set_defaults(func=cmd_check_config)
    capture_commands.add_parsers(sub)
    state_commands.add_parsers(sub)
    plugin_commands.add_parsers(sub)
    homekit_commands.add_parsers(sub)
    assist_commands.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if getattr(args, "needs_config", False):
        config, _ = _load_or_report(getattr(args, "config", None))
        return 2 if config is None else args.func(args, config)
    return args.func(args)
