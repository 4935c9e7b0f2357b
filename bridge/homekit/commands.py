"""`ruview-bridge homekit pair-info | reset`: pairing Apple Home with the bridge."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bridge.homekit import pairing


def _files(config) -> pairing.PairingFiles:
    return pairing.PairingFiles(config.bridge.state_path)


def _config_file(args: argparse.Namespace) -> str | None:
    """The file the configuration came from, as `ruview-bridge` chose it (None: built-in defaults)."""
    from bridge.cli import _config_path   # here, not at import: bridge.cli imports this module

    return _config_path(getattr(args, "config", None))


def cmd_pair_info(args: argparse.Namespace, config) -> int:
    if not config.homekit.enabled:
        path = _config_file(args)
        where = path or "the built-in defaults (no config.yaml here)"
        into = path or "a config file"
        option = f" -c {path or 'FILE'}" if (path or "") != "config.yaml" else ""
        print(f"ruview-bridge: HomeKit is disabled (homekit.enabled: false in {where}), so there is no setup "
              f"code to pair with. To enable it, set `homekit.enabled: true` in {into}; then "
              f"`ruview-bridge homekit pair-info{option}` prints the code, and the bridge it pairs with is "
              f"`ruview-bridge run{option}` (docs/homekit.md).", file=sys.stderr)
        return 2
    files = _files(config)
    setup = files.setup()
    clients = files.paired_clients()
    print(pairing.instructions(config.homekit.name, setup.pincode, pairing.setup_uri(setup)))
    print(f"Paired controllers: {len(clients)}" + (" (pairing again needs `ruview-bridge homekit reset`)"
                                                   if clients else ""))
    return 0


def cmd_reset(args: argparse.Namespace, config) -> int:
    files = _files(config)
    if files.reset():
        print(f"HomeKit pairings and setup code removed from {files.dir}; restart the bridge and pair again "
              "(remove the old bridge from the Home app too)", file=sys.stderr)
    else:
        print(f"nothing to reset in {files.dir}", file=sys.stderr)
    return 0


def add_parsers(sub) -> None:
    homekit = sub.add_parser("homekit", help="pair the HomeKit bridge with Apple Home")
    cmds = homekit.add_subparsers(dest="homekit_command", metavar="ACTION", required=True)
    for name, func, text in (("pair-info", cmd_pair_info, "print the setup code and QR code, and the pairings"),
                             ("reset", cmd_reset, "unpair every controller and make a new setup code")):
        p = cmds.add_parser(name, help=text)
        p.add_argument("-c", "--config", help="configuration file (YAML)")
        p.set_defaults(func=func, needs_config=True)
