"""The type check is part of the suite: bridge/ and firmware_tools/ pass mypy with zero errors.

The settings are pyproject.toml's `[tool.mypy]` (which packages, the pydantic plugin, the few
libraries that publish no types). A change that a checker can prove wrong fails here, in CI.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_finds_no_errors_in_bridge_and_firmware_tools(tmp_path):
    run = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache")],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "Success: no issues found" in run.stdout
