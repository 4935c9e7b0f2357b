"""The AssemblyScript compiler the plugin tests build with: plugins/pdk/assemblyscript's pinned one,
installed by `npm ci` there on first use (under the lock plugins/build.sh takes, so parallel test
workers install it once)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
from pathlib import Path

from tests.plugins.helpers import PLUGINS

AS_PDK = PLUGINS / "pdk" / "assemblyscript"
ASC = AS_PDK / "node_modules" / ".bin" / "asc"
LOCK = Path(os.environ.get("TMPDIR", tempfile.gettempdir())) / "ruview-plugins-npm-ci.lock"


def asc() -> Path:
    if not ASC.exists():
        with open(LOCK, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not ASC.exists():
                subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=AS_PDK,
                               check=True, capture_output=True, timeout=600)
    return ASC
