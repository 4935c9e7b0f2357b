"""Firmware releases the bridge offers: app images in a folder, each checked and known by version.

`ruview-node release add` copies an image into `<state dir>/ota/releases/`; `ota.releases_dir`
adds another folder. An image is offered only when it is an ESP32-C6 app image with a version in
its app descriptor (the same checks as `ruview-node ota`). Which version a node gets: its pin (its
name, then its room, then "all" in `ota.pins`), else the newest (the firmware's numeric X.Y.Z
compare).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass
from functools import cmp_to_key
from pathlib import Path
from typing import Mapping

from firmware_tools.firmware_rules import version_compare
from firmware_tools.ota_push import ImageError, check_image

log = logging.getLogger(__name__)

SUBDIR = Path("ota") / "releases"


@dataclass(frozen=True)
class Release:
    version: str
    path: Path
    sha256: str
    size: int

    def latest_json(self) -> bytes:
        """The pull client's answer: compact, "key":"value" with no spaces (it searches strings)."""
        return (f'{{"available":true,"version":"{self.version}","sha256":"{self.sha256}",'
                f'"size":{self.size}}}').encode()


NONE_AVAILABLE = b'{"available":false}'


def releases_folder(state_dir: Path) -> Path:
    return Path(state_dir) / SUBDIR


def scan(folders: list[Path]) -> dict[str, Release]:
    """version -> release for every valid image in the folders (the first of a version wins)."""
    found: dict[str, Release] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.bin")):
            try:
                data = path.read_bytes()
                version = check_image(data, str(path))
            except (OSError, ImageError) as exc:
                log.warning("firmware release %s skipped: %s", path, exc)
                continue
            if '"' in version or len(version) >= 32:
                log.warning("firmware release %s skipped: version %r does not fit the node's pull client",
                            path, version)
                continue
            found.setdefault(version, Release(version, path, hashlib.sha256(data).hexdigest(), len(data)))
    return found


def newest(releases: Mapping[str, Release]) -> Release | None:
    if not releases:
        return None
    def older_first(a: str, b: str) -> int:
        return version_compare(b, a)

    ordered = sorted(releases, key=cmp_to_key(older_first))
    return releases[ordered[-1]]


def for_node(releases: Mapping[str, Release], pins: Mapping[str, str], name: str | None,
             room: str | None) -> Release | None:
    """The release a node should run: its pin (name, room, all), else the newest."""
    for key in (name, room, "all"):
        if key is not None and key in pins:
            return releases.get(pins[key])
    return newest(releases)


def add(state_dir: Path, image: Path) -> Release:
    """Copy a checked image into the bridge's releases folder as <version>.bin."""
    data = image.read_bytes()
    version = check_image(data, str(image))
    folder = releases_folder(state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{version}.bin"
    tmp = target.with_suffix(".tmp")
    shutil.copyfile(image, tmp)
    tmp.replace(target)
    return Release(version, target, hashlib.sha256(data).hexdigest(), len(data))
