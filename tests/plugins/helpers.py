"""Plugins for the tests: copied out of plugins/ into a temporary directory, signed with a test key."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson

from bridge.plugins import trust
from bridge.plugins.manifest import MANIFEST, load_manifest

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"


class Publisher:
    def __init__(self, tmp: Path) -> None:
        self.key_file = tmp / "publisher.key"
        self.public = trust.generate_key(self.key_file)
        self.key = trust.read_private_key(self.key_file)

    def install(self, name: str, into: Path, **manifest_changes) -> Path:
        """plugins/<name> copied into `into`, with manifest changes, signed."""
        target = into / name.replace("/", "-")
        shutil.copytree(PLUGINS / name, target)
        raw = orjson.loads((target / MANIFEST).read_bytes())
        raw.update(manifest_changes)
        (target / MANIFEST).write_bytes(orjson.dumps(raw))
        self.sign(target)
        return target

    def sign(self, directory: Path) -> None:
        raw = orjson.loads((directory / MANIFEST).read_bytes())
        manifest = load_manifest(directory)
        module = (directory / manifest.wasm_module).read_bytes()
        (directory / MANIFEST).write_bytes(orjson.dumps(trust.sign(raw, manifest, module, self.key)))
