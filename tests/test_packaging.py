"""packaging/ruview-bridge.service is a unit systemd takes without a word, hardened, with secrets
kept off the command line; LICENSE and CHANGELOG.md are there and say what pyproject.toml says."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bridge.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "packaging" / "ruview-bridge.service"
INSTALLED = "/opt/ruview-bridge/.venv/bin/ruview-bridge"  # where docs/service.md installs it

HARDENING = {
    "DynamicUser": "yes", "StateDirectory": "ruview-bridge", "ConfigurationDirectory": "ruview-bridge",
    "ProtectSystem": "strict", "ProtectHome": "yes", "NoNewPrivileges": "yes", "PrivateTmp": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX AF_NETLINK", "Restart": "on-failure",
    "EnvironmentFile": "-/etc/ruview-bridge/env", "CapabilityBoundingSet": "", "UMask": "0077",
}


def _keys(text: str) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            keys.setdefault(key.strip(), []).append(value.strip())
    return keys


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
    if not Path(found).exists():
        pytest.fail("systemd-analyze is missing: run ./tests/run.sh, which installs systemd")
    return found


def _testable_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart on this test environment's own ruview-bridge script: verify checks that
    the program exists and is executable, and /opt/ruview-bridge is only there on an installed host."""
    script = Path(sys.executable).parent / "ruview-bridge"
    assert script.exists(), f"{script} is missing: the package is not installed in this environment"
    text = UNIT.read_text(encoding="utf-8")
    assert f"ExecStart={INSTALLED} " in text
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(f"ExecStart={INSTALLED} ", f"ExecStart={script} "), encoding="utf-8")
    return copy


def test_the_service_unit_verifies_without_a_warning(tmp_path):
    out = subprocess.run([_systemd_analyze(), "verify", str(_testable_copy(tmp_path))], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and not (out.stdout + out.stderr).strip(), out.stdout + out.stderr


def test_the_service_unit_is_hardened_and_systemd_rates_its_exposure_low(tmp_path):
    keys = _keys(UNIT.read_text(encoding="utf-8"))
    for key, value in HARDENING.items():
        assert value in keys.get(key, []), f"{key}={value} is missing"
    assert "MemoryDenyWriteExecute" not in keys, "wasmtime writes the machine code of plugins it then runs"
    # systemd's own score of what the sandbox leaves open: 0 (nothing) .. 10 (all); 2.5 is "OK"
    out = subprocess.run([_systemd_analyze(), "security", "--offline=yes", "--threshold=25",
                          str(_testable_copy(tmp_path))], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr


def test_the_command_line_is_the_real_one_and_carries_no_secret():
    (exec_start,) = _keys(UNIT.read_text(encoding="utf-8"))["ExecStart"]
    argv = shlex.split(exec_start)
    assert argv[0] == INSTALLED
    args = build_parser().parse_args(argv[1:])  # exits (fails the test) on a flag the CLI does not have
    assert args.command == "run" and args.config == "/etc/ruview-bridge/config.yaml" and args.no_status
    assert not any(word in exec_start.lower() for word in ("password", "token", "secret"))


def test_the_license_and_the_changelog_are_there():
    license_text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["license"]["text"]
    assert declared == "MIT" and license_text.startswith("MIT License")
    assert "Copyright (c) 2026 The ruview-bridge authors" in license_text
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "https://keepachangelog.com/" in changelog and "## [Unreleased]" in changelog
