"""`ruview-node` entry point. Subcommands arrive with the node-tools work (issue 5)."""

from __future__ import annotations

import argparse

from bridge import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ruview-node",
        description="Find, flash, provision, monitor and simulate RuView ESP32-C6 nodes.")
    parser.add_argument("--version", action="version", version=f"ruview-node {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    return 0
