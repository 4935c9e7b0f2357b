"""`ruview-node ota | recalibrate | set-target | module ...`: the node's HTTP API from the command line.

A node is named either directly (`--host HOST[:PORT] --psk-file FILE`) or as the bridge knows
it (`--node NAME`, `--room ROOM`): its address from the running bridge's `info` (the address
its frames come from), its PSK from the file provisioning left in the bridge's state
directory. Each failure is one line naming the node and what to do; the exit status is 1.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from firmware_tools.node_http import NODE_PORT, NodeAddress, NodeClient, NodeHttpError, parse_address

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _fail(text: str, code: int = EXIT_FAILED) -> int:
    _say(f"ruview-node: {text}")
    return code


class TargetError(Exception):
    pass


@dataclass(frozen=True)
class Target:
    label: str
    address: NodeAddress
    psk: str | None
    name: str | None = None      # the bridge's name for the node (frames are watched by it)
    node_id: int | None = None


def _bridge(args):
    from firmware_tools.register import RegisterError, bridge_connection

    try:
        return bridge_connection(args.config, args.bridge_mqtt, args.base_topic)
    except RegisterError as exc:
        raise TargetError(str(exc)) from None


def bridge_nodes(args) -> list[dict[str, Any]]:
    """The running bridge's nodes (`info`): node_id, name, room, online, address."""
    from bridge.mqtt.oneshot import OneShotError, ask

    settings, topics = _bridge(args)
    tx = secrets.token_hex(6)
    try:
        answer = ask(settings, topic=topics.bridge_request("info"), body={"transaction": tx},
                     answer_topic=topics.bridge_response("info"), timeout=args.bridge_timeout,
                     is_answer=lambda a: a.get("transaction") == tx, client_id=f"ruview-node-{tx}",
                     no_answer=f"base topic {topics.base!r}; is ruview-bridge running there?")
    except OneShotError as exc:
        raise TargetError(f"cannot ask the bridge for its nodes: {exc}") from None
    data = answer.get("data", answer)
    nodes = data.get("nodes") if isinstance(data, dict) else None
    if not isinstance(nodes, list):
        raise TargetError("the bridge's info has no node list (is the nodes feature enabled?)")
    return [n for n in nodes if isinstance(n, dict)]


def targets(args) -> list[Target]:
    """The nodes the command is for, with their PSKs."""
    from firmware_tools.node_secrets import PskStore, SecretError, bridge_state_dir, read_psk_file

    try:
        psk = read_psk_file(args.psk_file) if args.psk_file else None
        if args.host and not (args.node or args.room):
            return [Target(str(parse_address(args.host)), parse_address(args.host), psk)]
        if not (args.node or args.room):
            raise TargetError("say which node: --host HOST[:PORT] --psk-file FILE, or --node NAME / --room ROOM "
                              "(a node the running bridge knows)")
        store = PskStore(bridge_state_dir(args.config, args.state_dir))
        known = bridge_nodes(args)
        if args.node:
            chosen = [n for n in known if n.get("name") == args.node or str(n.get("node_id")) == args.node]
            if not chosen:
                names = ", ".join(sorted(str(n.get("name")) for n in known)) or "none"
                raise TargetError(f"the bridge knows no node {args.node!r} (it knows: {names})")
        else:
            chosen = [n for n in known if n.get("room") == args.room]
            if not chosen:
                raise TargetError(f"the bridge has no node in room {args.room!r}")
        out = []
        for node in chosen:
            name, node_id = str(node.get("name")), node.get("node_id")
            if args.host and args.node:
                address = parse_address(args.host)
            elif node.get("address"):
                address = NodeAddress(str(node["address"]).rsplit(":", 1)[0], args.node_port)
            else:
                raise TargetError(f"node {name}: the bridge has not heard from it since it started, so its "
                                  "address is unknown; pass --host")
            node_psk = psk
            if node_psk is None and isinstance(node_id, int):
                node_psk = store.get(node_id)
            if node_psk is None:
                raise TargetError(f"node {name}: no PSK in {store.path(node_id if isinstance(node_id, int) else 0)}"
                                  "; provision one (ruview-node provision --ota-psk) or pass --psk-file")
            out.append(Target(f"{name} ({address})", address, node_psk, name,
                              node_id if isinstance(node_id, int) else None))
        return out
    except (SecretError, ValueError) as exc:
        raise TargetError(str(exc)) from None


def _client(target: Target, args) -> NodeClient:
    return NodeClient(target.address, target.psk, timeout=args.http_timeout)


# ------------------------------------------------------------------ ota

def cmd_ota(args) -> int:
    from firmware_tools.ota_push import ImageError, check_image, push

    try:
        image = args.image.read_bytes()
    except OSError as exc:
        return _fail(f"{args.image}: {exc.strerror or exc}", EXIT_USAGE)
    try:
        version = check_image(image, str(args.image))
        chosen = targets(args)
    except ImageError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except TargetError as exc:
        return _fail(str(exc), EXIT_USAGE)
    _say(f"image: {args.image.name}, version {version}, {len(image):,} bytes, ESP32-C6")
    from firmware_tools.cli import _Bar

    failed = 0
    for target in chosen:
        watch = None
        if target.name is not None and not args.no_frames:
            from firmware_tools.ota_frames import BridgeFrameWatch

            settings, topics = _bridge(args)
            try:
                watch = BridgeFrameWatch(settings, topics, target.name)
            except OSError as exc:
                return _fail(f"node {target.label}: {exc}")
        elif not args.no_frames:
            _say(f"node {target.label}: frames are not checked (name the node with --node NAME to have "
                 "the bridge confirm them)")
        bar = _Bar()
        try:
            outcome = push(_client(target, args), image, str(args.image), label=target.label,
                           timeout=args.timeout, settle=args.settle, frames=watch,
                           progress=lambda cur, total: bar("upload", cur, total), say=_say,
                           on_phase=lambda phase: _say(f"node {target.label}: {phase}"))
        except (NodeHttpError, ImageError) as exc:
            _say(f"ruview-node: node {target.label}: {exc}")
            failed += 1
            break
        finally:
            if watch is not None:
                watch.close()
        if outcome.ok:
            print(outcome.line, flush=True)
        else:
            _say(f"ruview-node: {outcome.line}")
            failed += 1
            break                          # a room halts at the first failure
    return EXIT_FAILED if failed else EXIT_OK


# ------------------------------------------------------------------ recalibrate, set-target

def _each(args, action: Callable[[NodeClient, Target], str]) -> int:
    try:
        chosen = targets(args)
    except TargetError as exc:
        return _fail(str(exc), EXIT_USAGE)
    for target in chosen:
        try:
            print(action(_client(target, args), target), flush=True)
        except NodeHttpError as exc:
            return _fail(f"node {target.label}: {exc}")
    return EXIT_OK


def cmd_recalibrate(args) -> int:
    def run(client: NodeClient, target: Target) -> str:
        client.checked(client.call("POST", "/ota/recalibrate"), "recalibrate")
        return (f"node {target.label}: gain-lock cache cleared; it reboots and recalibrates "
                "(300 packets, keep the room still)")
    return _each(args, run)


def check_target(text: str) -> str:
    """IPv4:PORT as the firmware's parse_ip_port takes it."""
    from firmware_tools.firmware_rules import parse_ip_port

    if parse_ip_port(text) is None:
        raise argparse.ArgumentTypeError(f"{text!r}: expected IPv4:PORT, four numbers 0..255 and a port "
                                         "1..65535 (e.g. 192.168.1.20:5005), as the node checks it")
    return text.strip()


def cmd_set_target(args) -> int:
    def run(client: NodeClient, target: Target) -> str:
        data = client.checked(client.call("POST", "/ota/set-target", args.target.encode()), "set-target")
        return (f"node {target.label}: now sends to {data.get('target_ip')}:{data.get('target_port')}; "
                "it reboots")
    return _each(args, run)


# ------------------------------------------------------------------ modules

def _manifest(args):
    from firmware_tools import rvf

    return rvf.Manifest(args.name or args.module.stem[:31], rvf.parse_caps(args.caps), args.budget_us,
                        args.max_events, args.memory_kb, 1, 0, 0, args.author or "")


def _container(args) -> bytes:
    from firmware_tools import rvf

    data = args.module.read_bytes()
    if data[:4] == rvf.MAGIC.to_bytes(4, "little"):
        parsed = rvf.parse(data)
        if args.key is not None and not rvf.verify_ed25519(parsed, bytes(rvf.read_signing_key(args.key).verify_key)):
            raise rvf.RvfError(f"{args.module}: its signature does not verify with {args.key}: it was changed "
                               "after signing, or signed with another key")
        return data
    if args.key is None:
        raise rvf.RvfError("--key KEYFILE: the publisher key that signs the module "
                           "(`ruview-bridge plugin keygen` writes one)")
    return rvf.pack(data, _manifest(args), rvf.read_signing_key(args.key))


def cmd_module_pack(args) -> int:
    from firmware_tools import rvf

    try:
        container = _container(args)
    except (rvf.RvfError, OSError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    out = args.output or args.module.with_suffix(".rvf")
    out.write_bytes(container)
    parsed = rvf.parse(container)
    print(f"{out}: {parsed.manifest.name}, {len(parsed.wasm):,} bytes of WASM, caps "
          f"0x{parsed.manifest.capabilities:02x}, {'signed (Ed25519)' if parsed.signature else 'unsigned'}")
    return EXIT_OK


def explain_refusal(client: NodeClient, answer_body: str, public_key: bytes | None) -> str:
    """Why the node refused a signed module, probing for the keyed-SHA-256 variant when it may be that."""
    from firmware_tools import rvf

    body = answer_body.strip()
    if "no pubkey" in body:
        return ("the node has no publisher key (csi_cfg/wasm_pubkey): ruview-node provision --wasm-pubkey "
                "KEYFILE writes it")
    if "Raw WASM" in body or "no signature" in body:
        return "the node takes only signed RVF containers: pass --key KEYFILE"
    if "Signature verification failed" in body and public_key is not None:
        try:
            probe = client.call("POST", "/wasm/upload", rvf.keyed_sha256_probe(public_key),
                                content_type="application/octet-stream")
        except NodeHttpError:
            probe = None
        if probe is not None and probe.status == 500 and "load failed" in probe.body.lower():
            return ("the node's firmware checks RVF signatures with keyed SHA-256 (the HMAC variant of "
                    "rvf_parser.c), not Ed25519; this tool signs only Ed25519 (the other can be forged by "
                    "anyone who knows the public key): build the firmware with Ed25519 verification")
        return ("bad signature: the node's csi_cfg/wasm_pubkey is not the public half of this key "
                "(ruview-node provision --wasm-pubkey KEYFILE)")
    if "Signature verification failed" in body:
        return ("bad signature: the container was changed after it was signed, or signed with a key other "
                "than the node's csi_cfg/wasm_pubkey (pass --key KEYFILE to tell which)")
    return body[:200]


def cmd_module_deploy(args) -> int:
    from firmware_tools import rvf

    try:
        container = _container(args)
        chosen = targets(args)
    except (rvf.RvfError, OSError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    except TargetError as exc:
        return _fail(str(exc), EXIT_USAGE)
    name = rvf.parse(container).manifest.name
    public = bytes(rvf.read_signing_key(args.key).verify_key) if args.key else None
    for target in chosen:
        client = _client(target, args)
        try:
            answer = client.call("POST", "/wasm/upload", container, content_type="application/octet-stream")
            if answer.status == 403:
                return _fail(f"node {target.label} refused module {name}: "
                             f"{explain_refusal(client, answer.body, public)}")
            data = client.checked(answer, f"module {name}")
        except NodeHttpError as exc:
            return _fail(f"node {target.label}: {exc}")
        print(f"node {target.label}: module {data.get('name')} in slot {data.get('module_id')}, "
              f"{'running' if data.get('started') else 'loaded, not started'}", flush=True)
    return EXIT_OK


def cmd_module_list(args) -> int:
    def run(client: NodeClient, target: Target) -> str:
        data = client.checked(client.call("GET", "/wasm/list"), "module list")
        lines = [f"node {target.label}: {data.get('loaded', 0)} of {data.get('max', '?')} slots used"]
        for m in data.get("modules", []):
            if isinstance(m, dict) and m.get("state") != "empty":
                lines.append(f"  {m.get('id')}  {m.get('name') or '(raw)':<24} {m.get('state'):<8} "
                             f"{m.get('binary_size', 0):>7,} B  caps {m.get('caps')}  frames {m.get('frame_count')}"
                             f"  errors {m.get('error_count')}  budget faults {m.get('budget_faults')}")
        return "\n".join(lines)
    return _each(args, run)


def _module_action(method: str, path: str, what: str):
    def command(args) -> int:
        def run(client: NodeClient, target: Target) -> str:
            answer = client.call(method, path.format(id=args.id))
            if answer.status == 404:
                raise NodeHttpError(f"{target.address}: {what} answered 404: this firmware registers the "
                                    "route as a wildcard but matches URIs exactly, so it cannot be reached; "
                                    "a newer firmware fixes it (retrying will not help)", 404)
            data = client.checked(answer, what)
            return f"node {target.label}: module {args.id} {data.get('action', 'done')}"
        return _each(args, run)
    return command


# ------------------------------------------------------------------ fleet rollout (run by the bridge)

def _ask(args, verb: str, body: dict[str, Any]) -> dict[str, Any]:
    from bridge.mqtt.oneshot import OneShotError, ask

    settings, topics = _bridge(args)
    tx = secrets.token_hex(6)
    try:
        return ask(settings, topic=topics.bridge_request(verb), body={**body, "transaction": tx},
                   answer_topic=topics.bridge_response(verb), timeout=args.bridge_timeout,
                   is_answer=lambda a: a.get("transaction") == tx, client_id=f"ruview-node-{tx}",
                   no_answer=f"base topic {topics.base!r}; is ruview-bridge running there, with ota.enabled?")
    except OneShotError as exc:
        raise TargetError(str(exc)) from None


def cmd_rollout(args) -> int:
    """node/ota on the running bridge, then its progress until it is done or halted."""
    import time

    body: dict[str, Any] = {"nodes": "all" if args.all else [n for n in (args.nodes or "").split(",") if n]}
    if args.version:
        body["version"] = args.version
    if args.batch_size:
        body["batch_size"] = args.batch_size
    try:
        if not args.all and not body["nodes"]:
            return _fail("say which nodes: --nodes a,b or --all", EXIT_USAGE)
        answer = _ask(args, "node/ota", body)
        if answer.get("status") != "ok":
            return _fail(f"the bridge refused the rollout: {answer.get('error')}")
        data = answer.get("data", {})
        _say(f"rollout {data.get('id')}: {', '.join(data.get('nodes', []))} to {data.get('version')} "
             "(one canary, then batches; it halts at the first failure)")
        if args.no_wait:
            return EXIT_OK
        shown: dict[str, str] = {}
        while True:
            rollout = (_ask(args, "node/ota_status", {}).get("data") or {}).get("rollout") or {}
            for name, entry in (rollout.get("per_node") or {}).items():
                if shown.get(name) != entry.get("state"):
                    shown[name] = entry.get("state")
                    _say(f"  {name}: {entry.get('state')}" + (f" ({entry['error']})" if entry.get("error") else ""))
            if rollout.get("state") != "running":
                line = f"rollout {rollout.get('id')} {rollout.get('state')}: {rollout.get('why')}"
                if rollout.get("state") == "done":
                    print(line, flush=True)
                    return EXIT_OK
                return _fail(line)
            time.sleep(1.0)
    except TargetError as exc:
        return _fail(str(exc))


# ------------------------------------------------------------------ releases (what the bridge offers nodes)

def cmd_release(args) -> int:
    from bridge.ota import releases
    from firmware_tools.node_secrets import bridge_state_dir
    from firmware_tools.ota_push import ImageError

    state = bridge_state_dir(args.config, args.state_dir)
    if args.action == "add":
        if args.image is None:
            return _fail("release add IMAGE: which app image to offer", EXIT_USAGE)
        try:
            release = releases.add(state, args.image)
        except (ImageError, OSError) as exc:
            return _fail(str(exc), EXIT_USAGE)
        print(f"release {release.version}: {release.path} ({release.size:,} bytes, sha256 {release.sha256})")
        _say("the bridge offers it from its next rollout or pull check (ruview-bridge request node/ota, "
             "or nodes polling /api/v1/firmware/latest)")
        return EXIT_OK
    found = releases.scan([releases.releases_folder(state)])
    for version in sorted(found):
        r = found[version]
        print(f"{version:<16} {r.size:>9,} B  sha256 {r.sha256}  {r.path}")
    return EXIT_OK


# ------------------------------------------------------------------ parsers

def _target_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("which node")
    g.add_argument("--host", help=f"the node's address, HOST[:PORT] (port {NODE_PORT} unless given)")
    g.add_argument("--psk-file", type=Path, help="file holding the node's OTA PSK (a trailing newline is fine)")
    g.add_argument("--node", help="a node the running bridge knows, by name or id: its address and PSK "
                                  "come from the bridge")
    g.add_argument("--room", help="every node the bridge has in this room (one after the other)")
    g.add_argument("--config", type=Path, default=Path("config.yaml"),
                   help="the bridge's config (broker, base topic, state directory; default ./config.yaml)")
    g.add_argument("--bridge-mqtt", metavar="URL", help="the running bridge's broker (default: from --config)")
    g.add_argument("--base-topic", help="the bridge's base topic (default: from --config)")
    g.add_argument("--state-dir", type=Path, help="the bridge's state directory (default: from --config)")
    g.add_argument("--node-port", type=int, default=NODE_PORT, help=argparse.SUPPRESS)
    g.add_argument("--bridge-timeout", type=float, default=5.0, help=argparse.SUPPRESS)
    g.add_argument("--http-timeout", type=float, default=10.0, help="seconds for each HTTP call (default 10)")


def _module_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("module", type=Path, help="the module: a .wasm (packed and signed now) or a packed .rvf")
    p.add_argument("--key", type=Path, help="publisher key file (`ruview-bridge plugin keygen`; 0600)")
    p.add_argument("--name", help="module name, up to 31 ASCII characters (default: the file's name)")
    p.add_argument("--caps", default="all", help="capabilities: all, a number, or names: read_phase, "
                                                 "read_amplitude, read_variance, read_vitals, read_history, "
                                                 "emit_events, log (comma-separated)")
    p.add_argument("--budget-us", type=int, default=0, help="microseconds per frame (0: the node's default)")
    p.add_argument("--max-events", type=int, default=0, help="events per second (0: unlimited)")
    p.add_argument("--memory-kb", type=int, default=0, help="heap in KiB (0: the node's default)")
    p.add_argument("--author", help="up to 10 ASCII characters")


def add_parsers(sub) -> None:
    ota = sub.add_parser("ota", help="update a node's firmware over Wi-Fi",
                         description="Push an app image (esp32-csi-node.bin) to a node's HTTP API. The image "
                                     "and the PSK are checked first; success is the node back, still running "
                                     "the new version after --settle seconds and (with --node) sending frames. "
                                     "A roll-back, a node not back within --timeout and a refused PSK each "
                                     "exit 1 with one line.")
    ota.add_argument("image", type=Path, help="the app image (not a merged or bootloader image)")
    _target_options(ota)
    ota.add_argument("--timeout", type=float, default=90.0, help="seconds for the node to come back (default 90)")
    ota.add_argument("--settle", type=float, default=10.0,
                     help="seconds the new version must keep running to count as confirmed (default 10)")
    ota.add_argument("--no-frames", action="store_true", help="do not wait for the node's frames")
    ota.set_defaults(func=cmd_ota)

    recal = sub.add_parser("recalibrate", help="clear a node's gain lock; it reboots and recalibrates",
                           description="POST /ota/recalibrate: the node forgets its gain-lock cache and runs "
                                       "a full 300-packet calibration after its reboot.")
    _target_options(recal)
    recal.set_defaults(func=cmd_recalibrate)

    st = sub.add_parser("set-target", help="point a node at another bridge without USB",
                        description="POST /ota/set-target: the node stores the new IPv4:PORT and reboots.")
    st.add_argument("target", type=check_target, help="IPv4:PORT of the bridge's UDP port, e.g. 192.168.1.20:5005")
    _target_options(st)
    st.set_defaults(func=cmd_set_target)

    roll = sub.add_parser("rollout", help="update many nodes through the running bridge (node/ota)",
                          description="Ask the running bridge (ota.enabled) to update nodes: one canary, then "
                                      "batches, halting at the first failure; its progress is kept, so a "
                                      "restarted bridge carries on. Follows it until done or halted.")
    which = roll.add_mutually_exclusive_group(required=True)
    which.add_argument("--nodes", help="node names, comma-separated")
    which.add_argument("--all", action="store_true", help="every node the bridge knows")
    roll.add_argument("--version", help="a release's version (default: each node's newest or pinned)")
    roll.add_argument("--batch-size", type=int, help="nodes at once after the canary (default: ota.batch_size)")
    roll.add_argument("--no-wait", action="store_true", help="start it and return")
    roll.add_argument("--config", type=Path, default=Path("config.yaml"), help="the bridge's config")
    roll.add_argument("--bridge-mqtt", metavar="URL", help="the running bridge's broker (default: from --config)")
    roll.add_argument("--base-topic", help="the bridge's base topic (default: from --config)")
    roll.add_argument("--bridge-timeout", type=float, default=10.0, help=argparse.SUPPRESS)
    roll.set_defaults(func=cmd_rollout)

    rel = sub.add_parser("release", help="firmware images the bridge offers its nodes",
                         description="`add IMAGE` checks an app image (C6, version) and copies it into the "
                                     "bridge's state directory (ota/releases/<version>.bin); `list` shows them.")
    rel.add_argument("action", choices=["add", "list"])
    rel.add_argument("image", type=Path, nargs="?", help="the app image (esp32-csi-node.bin)")
    rel.add_argument("--config", type=Path, default=Path("config.yaml"), help="the bridge's config")
    rel.add_argument("--state-dir", type=Path, help="the bridge's state directory (default: from --config)")
    rel.set_defaults(func=cmd_release)

    module = sub.add_parser("module", help="on-node WASM modules: pack, deploy, list, start, stop, remove",
                            description="Modules that run on the node itself, in the firmware's signed RVF "
                                        "container (Ed25519, the publisher key of the bridge's plugins).")
    msub = module.add_subparsers(dest="module_command", metavar="ACTION", required=True)
    pack = msub.add_parser("pack", help="build the signed RVF container")
    _module_options(pack)
    pack.add_argument("--output", "-o", type=Path, help="where to write it (default: MODULE.rvf)")
    pack.set_defaults(func=cmd_module_pack)
    deploy = msub.add_parser("deploy", help="upload a module to a node (or a room); it starts at once")
    _module_options(deploy)
    _target_options(deploy)
    deploy.set_defaults(func=cmd_module_deploy)
    lst = msub.add_parser("list", help="the node's module slots")
    _target_options(lst)
    lst.set_defaults(func=cmd_module_list)
    for action, method, path, what in (("start", "POST", "/wasm/start/{id}", "start"),
                                       ("stop", "POST", "/wasm/stop/{id}", "stop"),
                                       ("remove", "DELETE", "/wasm/{id}", "remove")):
        p = msub.add_parser(action, help=f"{action} the module in a slot")
        p.add_argument("id", type=int, help="slot number (module list shows them)")
        _target_options(p)
        p.set_defaults(func=_module_action(method, path, what))
