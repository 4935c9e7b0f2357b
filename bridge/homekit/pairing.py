"""What the HomeKit bridge remembers, and how a user pairs: files in `bridge.state_dir` (0600).

`homekit.state` is HAP-python's own (its long-term keys and the paired controllers);
`homekit.setup` holds the setup code and setup id, so `ruview-bridge homekit pair-info` shows the
same code as the running bridge, and a restart keeps it. `reset` removes both: every controller is
unpaired and the next start is a new accessory with a new code.

`homekit.accessories` holds the accessory id (aid) of every room HomeKit has been shown
(`AccessoryIds`): Apple Home keys scenes and automations on the aid, so a room keeps it through
renames, moves of its nodes and restarts.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import string
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import orjson
import segno

# codes HomeKit refuses (HAP specification, "Setup Code")
TRIVIAL = {f"{d}{d}{d}-{d}{d}-{d}{d}{d}" for d in "0123456789"} | {"123-45-678", "876-54-321"}


@dataclass(frozen=True)
class Setup:
    pincode: str  # XXX-XX-XXX
    setup_id: str  # 4 characters of [0-9A-Z], in the QR code


def new_setup() -> Setup:
    while True:
        digits = "".join(secrets.choice(string.digits) for _ in range(8))
        code = f"{digits[:3]}-{digits[3:5]}-{digits[5:]}"
        if code not in TRIVIAL:
            break
    return Setup(code, "".join(secrets.choice(string.digits + string.ascii_uppercase) for _ in range(4)))


class PairingFiles:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.state = directory / "homekit.state"
        self.setup_file = directory / "homekit.setup"

    def _ready(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    def setup(self) -> Setup:
        """The setup code and id, made on first use and kept."""
        self._ready()
        try:
            data = orjson.loads(self.setup_file.read_bytes())
            return Setup(data["pincode"], data["setup_id"])
        except (OSError, ValueError, KeyError, TypeError):
            setup = new_setup()
            tmp = self.setup_file.with_name(f".{self.setup_file.name}.tmp")
            try:  # whole or not at all: a full disk must not leave an empty code file behind
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(orjson.dumps({"pincode": setup.pincode, "setup_id": setup.setup_id}))
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.setup_file)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise RuntimeError(f"cannot save the HomeKit setup code to {self.setup_file} "
                                   f"({exc.strerror or exc}): free space or make the directory writable") from None
            return setup

    def paired_clients(self) -> list[str]:
        try:
            return sorted(orjson.loads(self.state.read_bytes()).get("paired_clients", {}))
        except (OSError, ValueError):
            return []

    def reset(self) -> bool:
        """Forget every pairing and the setup code; True if there was anything to forget."""
        removed = False
        for path in (self.state, self.setup_file):
            try:
                path.unlink()
                removed = True
            except FileNotFoundError:
                pass
        return removed


def setup_uri(setup: Setup, category: int = 2) -> str:
    """The X-HM:// setup URI that HomeKit's QR code holds (category 2: a bridge)."""
    code = int(setup.pincode.replace("-", ""))
    payload = code | (1 << 28) | (category << 31)  # flag 2: IP transport
    base36 = ""
    alphabet = string.digits + string.ascii_uppercase
    while payload:
        payload, digit = divmod(payload, 36)
        base36 = alphabet[digit] + base36
    return f"X-HM://{base36.rjust(9, '0')}{setup.setup_id}"


def instructions(name: str, pincode: str, uri: str) -> str:
    qr = segno.make(uri, error="m")
    lines = [f"To pair '{name}' with Apple Home: Add Accessory, then scan this code or enter {pincode}", ""]
    for row in qr.matrix_iter(scale=1, border=2):
        lines.append("".join("\u2588\u2588" if bit else "  " for bit in row))
    lines += ["", f"Setup code: {pincode}"]
    return "\n".join(lines)


# ------------------------------------------------------------ accessory ids that outlive renames

LEGACY_AID_SPAN = 2_000_000_000  # before this file existed, a room's aid was 2 + crc32(its name) % this
MAX_REMEMBERED = 1024  # rooms remembered; beyond it, the longest gone are forgotten


class IdentityError(RuntimeError):
    """The accessory ids cannot be kept: the message says which file and what to do."""


@dataclass(frozen=True)
class Assignment:
    aids: dict  # RoomKey -> aid, for the rooms shown (at most `limit`)
    left_out: tuple  # RoomKey, in order: rooms beyond the limit, with no aid
    error: str | None = None  # the ids could not be saved: nothing new was taken on


def legacy_aid(label: str) -> int:
    """The aid the bridge gave a room named `label` before ids were kept in a file, so the first
    start after the upgrade keeps every room's accessory (and the automations on it)."""
    return 2 + zlib.crc32(label.encode()) % LEGACY_AID_SPAN


class AccessoryIds:
    """Which aid each room has, kept in `homekit.accessories` (0600, replaced atomically).

    A room is an entry: its aid, its room name (None for a node without a room: the entry then
    belongs to that node id) and the node ids it had when last shown. A room finds its entry by
    its room name (or node id), else by sharing nodes with an entry no other room took — that is
    a rename, or a node without a room given one — else it gets a new aid. An aid is never given
    to another room while its entry is remembered. The file is written before HomeKit is shown
    anything that needs it; a write that fails leaves the ids as they were, and `assign` says so
    (`Assignment.error`) instead of showing a room under an aid it could lose on the next start.
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / "homekit.accessories"
        self._tmp = directory / ".homekit.accessories.tmp"
        self.entries: list[dict[str, Any]] = self._load()

    def _load(self) -> list[dict[str, Any]]:
        try:
            data = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise IdentityError(self._unreadable(getattr(exc, "strerror", None) or str(exc))) from None
        entries = data.get("accessories") if isinstance(data, dict) else None
        if not isinstance(entries, list) or not all(self._valid(e) for e in entries):
            raise IdentityError(self._unreadable("not the bridge's list of accessories"))
        return [{"aid": e["aid"], "room": e.get("room"), "node": e.get("node"), "nodes": list(e["nodes"])}
                for e in entries]

    def _unreadable(self, why: str) -> str:
        return (f"cannot read the HomeKit accessory ids in {self.path} ({why}): restore the file from a backup, "
                "or remove it to give every room a new accessory id (Apple Home then loses the scenes and "
                "automations on them)")

    @staticmethod
    def _valid(e: Any) -> bool:
        if not isinstance(e, dict) or not isinstance(e.get("aid"), int) or e["aid"] < 2:
            return False
        if not isinstance(e.get("nodes"), list) or not all(isinstance(n, int) for n in e["nodes"]):
            return False
        return isinstance(e.get("room"), str) or isinstance(e.get("node"), int)

    @staticmethod
    def key_of(entry: dict[str, Any]) -> tuple[str, str | int]:
        return ("room", entry["room"]) if entry.get("room") is not None else ("node", entry["node"])

    def assign(self, groups: Mapping[tuple[str, str | int], tuple[tuple[int, ...], str]],
               limit: int) -> Assignment:
        """aids for `groups` (room key -> (node ids, label)); at most `limit` rooms get one: those
        that had one first, in the order they got it, then new rooms by their first node id."""
        entries = [dict(e, nodes=list(e["nodes"])) for e in self.entries]
        by_key = {self.key_of(e): e for e in entries}
        found: dict[tuple[str, str | int], dict[str, Any]] = {}
        for key in groups:
            if key in by_key:
                found[key] = by_key[key]
        claimed = {id(e) for e in found.values()}
        for key, (node_ids, _label) in sorted(groups.items(), key=lambda kv: min(kv[1][0], default=0)):
            if key in found:
                continue
            shared = [(len(set(node_ids) & set(e["nodes"])), -e["aid"], i) for i, e in enumerate(entries)
                      if id(e) not in claimed and set(node_ids) & set(e["nodes"])]
            if shared:  # a rename or a move: the room takes over the entry its nodes had
                adopted = entries[max(shared)[2]]
                found[key] = adopted
                claimed.add(id(adopted))
        order = {id(e): i for i, e in enumerate(entries)}
        had = sorted((k for k in groups if k in found), key=lambda k: order[id(found[k])])
        new = sorted((k for k in groups if k not in found), key=lambda k: min(groups[k][0], default=0))
        shown, left_out = (had + new)[:limit], tuple((had + new)[limit:])
        taken = {e["aid"] for e in entries} | {1}
        for key in shown:
            node_ids, label = groups[key]
            entry: dict[str, Any] | None = found.get(key)
            if entry is None:
                aid = legacy_aid(label)
                while aid in taken or aid == 7:  # HAP-python's own allocator avoids 7, and so do we
                    aid += 1
                taken.add(aid)
                entry = found[key] = {"aid": aid, "room": None, "node": None, "nodes": []}
                entries.append(entry)
            kind, ident = key
            entry["room"], entry["node"] = (ident, None) if kind == "room" else (None, ident)
            entry["nodes"] = sorted(node_ids)
        live = {id(found[k]) for k in shown}
        for entry in [e for e in entries if id(e) not in live][:max(0, len(entries) - MAX_REMEMBERED)]:
            entries.remove(entry)  # the longest-remembered rooms not shown now are forgotten first
        aids = {key: found[key]["aid"] for key in shown}
        if entries != self.entries:
            try:
                self._write(entries)
            except OSError as exc:
                where = f"{exc.filename}: " if exc.filename and str(exc.filename) != str(self.path) else ""
                return Assignment(aids, left_out, f"cannot save the HomeKit accessory ids to {self.path} "
                                  f"({where}{exc.strerror or exc}); rooms keep their accessories, but no room is "
                                  "added or renamed in HomeKit until they are saved (free space, or make "
                                  f"{self.path.parent} writable)")
            self.entries = entries
        return Assignment(aids, left_out)

    def _write(self, entries: list[dict[str, Any]]) -> None:
        data = orjson.dumps({"version": 1, "accessories": entries}, option=orjson.OPT_INDENT_2)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            try:
                os.fchmod(fd, 0o600)
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(self._tmp, self.path)
        except OSError:
            try:
                self._tmp.unlink()
            except OSError:
                pass
            raise
        try:  # the rename itself survives a power cut
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError:
            pass
