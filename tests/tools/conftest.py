"""Fixtures for the node tools: a mock ROM bootloader process and synthetic releases."""

from __future__ import annotations

import pytest

from tests.tools.images import release_files
from tests.tools.mock_bootloader import MockBootloader


@pytest.fixture
def mock_c6():
    mock = MockBootloader("esp32c6")
    yield mock
    mock.stop()


@pytest.fixture
def release_dir(tmp_path):
    """An ESP-IDF build folder as `idf.py build` leaves it (the files flashing needs)."""
    root = tmp_path / "build"
    for name, data in release_files().items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root
