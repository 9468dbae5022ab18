"""Shared test fixtures."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

import pytest


def _run_and_kill(script: str, done: Callable[[], bool], timeout: float) -> None:
    """Run ``python -c script`` and kill it (SIGKILL, no clean-up) as soon as ``done()`` holds
    or ``timeout`` seconds have passed."""
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.time() + timeout
        while not done() and time.time() < deadline:
            time.sleep(0.05)
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.fixture
def run_and_kill() -> Callable[[str, Callable[[], bool], float], None]:
    """A sweep interrupted part-way: ``run_and_kill(script, done, timeout)``."""
    return _run_and_kill
