"""Reading a plugin's files when they may be hostile: regular files only, bounded, never blocking.

A FIFO named `plugin.wasm` blocked the plugin host in open(); a symlink to /dev/zero passed the
size check (a device has size 0) and grew the bridge by hundreds of MiB in read(). So a file is
opened without blocking, checked to be a regular file on the open descriptor (what was checked
is what is read: no second lookup by name), and read to at most `limit` bytes.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class PluginFileError(OSError):
    """A plugin file that may not be read; str() names the file and why."""


def read_bounded(path: Path, limit: int) -> bytes:
    """The whole of `path`, a regular file of at most `limit` bytes, or PluginFileError."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise PluginFileError(f"{path}: cannot read it: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise PluginFileError(f"{path}: not a regular file (a device, FIFO or socket is never read)")
        if info.st_size > limit:
            raise PluginFileError(f"{path}: larger than {_size(limit)}")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:  # grew while we read it
                raise PluginFileError(f"{path}: larger than {_size(limit)}")
        return b"".join(chunks)
    except OSError as exc:
        if isinstance(exc, PluginFileError):
            raise
        raise PluginFileError(f"{path}: cannot read it: {exc.strerror}") from None
    finally:
        os.close(fd)


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit >> 10} KiB"
