"""The hand-written stubs of the extension (python/ferrotune/_core.pyi) match what it exports."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_core_stubs_match_the_extension():
    pytest.importorskip("mypy")
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "ferrotune._core"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
