"""`ruview-node ota`: an app image pushed to one node, and success only once the node confirms it.

A node takes the image (POST /ota), reboots ~1 s later into it pending verification, and the
bootloader reverts to the old image unless the new one confirms itself. So an upload that
answered ok proves little: this waits until the node is back, still runs the new version after
`settle` seconds, and (with a frame watch) sends frames again. Checked before a byte is sent:
the image (ESP-IDF app image magic, the C6's chip id, its app descriptor's version, the node's
`max_size`) and the PSK (an empty POST /ota: 403 bad PSK, 400 good one), since a real node that
refuses an upload resets the connection while the image is still being sent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Protocol

from firmware_tools.node_http import NodeClient, NodeHttpError
from firmware_tools.release import C6_CHIP_ID, CHIP_IDS, app_info, image_chip_id

POLL = 0.2


class ImageError(ValueError):
    """An image the node must not be sent."""


class FrameWatch(Protocol):
    """Whether the node's frames came back after its reboot (the bridge's node_rebooted event)."""

    def resumed(self) -> bool: ...


@dataclass(frozen=True)
class Outcome:
    ok: bool
    kind: str            # updated | unchanged | rolled_back | not_back | psk_refused | refused | no_frames
    line: str            # the one line that says it
    old: str = ""
    new: str = ""


def check_image(image: bytes, name: str, max_size: int | None = None) -> str:
    """The image's version; ImageError when it is no C6 app image or too large for the node."""
    chip = image_chip_id(image)
    if chip is None:
        raise ImageError(f"{name}: not an ESP-IDF app image (it does not start with 0xE9)")
    if chip != C6_CHIP_ID:
        raise ImageError(f"{name}: built for {CHIP_IDS.get(chip, f'chip id {chip}')}, not the ESP32-C6")
    info = app_info(image)
    if info is None:
        raise ImageError(f"{name}: an ESP image without an app descriptor: a bootloader or a merged image, "
                         "not the app (esp32-csi-node.bin)")
    if max_size is not None and len(image) > max_size:
        raise ImageError(f"{name}: {len(image):,} bytes; the node takes at most {max_size:,}")
    if not info.version:
        raise ImageError(f"{name}: its app descriptor has no version")
    return info.version


def push(client: NodeClient, image: bytes, image_name: str, *, label: str, timeout: float = 60.0,
         settle: float = 5.0, frames: FrameWatch | None = None,
         progress: Callable[[int, int], None] | None = None,
         say: Callable[[str], None] = lambda _: None,
         on_phase: Callable[[str], None] = lambda _: None) -> Outcome:
    """Push `image` and follow the node until it is confirmed, rolled back or not back."""
    new = check_image(image, image_name)
    status = client.status()
    old = str(status.get("version", "?"))
    max_size = status.get("max_size")
    check_image(image, image_name, max_size if isinstance(max_size, int) else None)
    if old == new:
        return Outcome(True, "unchanged", f"node {label} already runs {new}; nothing sent", old, new)
    if not client.psk_accepted():
        return Outcome(False, "psk_refused", f"node {label} refused the PSK (403): update {old} -> {new} "
                                             "not sent; use the PSK provisioned into this node", old, new)
    if client.accepts_anyone():
        say(f"warning: node {label} accepts updates without any PSK (no security/ota_psk): anyone on the "
            "network can replace its firmware. Provision one: ruview-node provision --ota-psk")
    on_phase("uploading")
    try:
        answer = client.call("POST", "/ota", image, content_type="application/octet-stream",
                             progress=progress, timeout=max(client.timeout, 120.0))
    except NodeHttpError as exc:
        return Outcome(False, "refused", f"node {label}: update {old} -> {new} failed: {exc}", old, new)
    if answer.status != 200:
        what = {403: "the PSK was refused (403)", 400: "the node refused the size (400)",
                500: "the node could not write or verify it (500)"}.get(answer.status, f"HTTP {answer.status}")
        return Outcome(False, "psk_refused" if answer.status == 403 else "refused",
                       f"node {label}: update {old} -> {new} refused: {what}: {answer.body.strip()[:160]}",
                       old, new)
    on_phase("rebooting")
    return _follow(client, label, old, new, timeout, settle, frames, on_phase)


def _follow(client: NodeClient, label: str, old: str, new: str, timeout: float, settle: float,
            frames: FrameWatch | None, on_phase: Callable[[str], None]) -> Outcome:
    deadline = time.monotonic() + timeout
    went_down, seen_new, new_since = False, False, 0.0
    while time.monotonic() < deadline:
        try:
            version = str(client.call("GET", "/ota/status", timeout=2.0).json().get("version", ""))
        except NodeHttpError:
            went_down, new_since = True, 0.0
            time.sleep(POLL)
            continue
        if not went_down:                  # the old image still running, before its restart
            time.sleep(POLL)
            continue
        if version == old:
            how = ("after first running it pending verification" if seen_new
                   else "at once (the bootloader reverted before it reported)")
            return Outcome(False, "rolled_back",
                           f"node {label} rolled back: {old} -> {new} was installed, it runs {old} again, "
                           f"{how}; the new image did not confirm itself (see its serial log)", old, new)
        if version == new:
            if not seen_new:
                on_phase("verifying")
            seen_new = True
            new_since = new_since or time.monotonic()
            resumed = frames is None or frames.resumed()
            if time.monotonic() - new_since >= settle and resumed:
                extra = "" if frames is None else ", frames resumed"
                return Outcome(True, "updated", f"node {label} updated {old} -> {new}: confirmed "
                                                f"(running {settle:g} s{extra})", old, new)
        time.sleep(POLL)
    if seen_new:
        return Outcome(False, "no_frames",
                       f"node {label} runs {new} (was {old}) but its frames did not resume within "
                       f"{timeout:g} s: check its target (ruview-node set-target) and the bridge's UDP port",
                       old, new)
    return Outcome(False, "not_back",
                   f"node {label} did not come back within {timeout:g} s after taking {new} (was {old}): "
                   "check its power and Wi-Fi; the bootloader reverts an image that does not confirm itself",
                   old, new)
