"""Where the Wi-Fi password comes from: a file, the environment or a prompt — never argv,
which `ps` and shell history would show to anyone on the machine."""

from __future__ import annotations

import getpass
import os
import stat
import sys
from pathlib import Path
from typing import Callable, Mapping

ENV = "RUVIEW_WIFI_PASSWORD"


class PasswordError(ValueError):
    pass


def read_password(password_file: Path | None, env: Mapping[str, str] = os.environ,
                  prompt: Callable[[str], str] = getpass.getpass,
                  interactive: bool | None = None) -> str:
    if password_file is not None:
        try:
            mode = password_file.stat().st_mode
            text = password_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise PasswordError(f"--password-file {password_file}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise PasswordError(f"--password-file {password_file}: not UTF-8 text") from None
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            raise PasswordError(f"--password-file {password_file} is readable by other users; "
                                f"run: chmod 600 {password_file}")
        text = text[:-1] if text.endswith("\n") else text
        text = text[:-1] if text.endswith("\r") else text
        if not text:
            raise PasswordError(f"--password-file {password_file} is empty")
        return text
    if env.get(ENV):
        return env[ENV]
    if interactive is None:
        interactive = sys.stdin.isatty()
    if not interactive:
        raise PasswordError(f"--ssid needs the Wi-Fi password: set {ENV} or pass --password-file "
                            "(no terminal to prompt on)")
    first = prompt("Wi-Fi password: ")
    if prompt("Again: ") != first:
        raise PasswordError("the two passwords differ; nothing was sent")
    return first
