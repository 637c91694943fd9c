"""What the benchmarks share: waiting for something (a pid file, a socket, a process to
go) to happen."""
from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(ready: Callable[[], object], timeout: float = 5.0,
               interval: float = 0.02) -> bool:
    """Polls ready() until it is true (True) or timeout seconds have passed (False)."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def wait_for(what: str, ready: Callable[[], object], timeout: float = 5.0) -> None:
    """As wait_until, but a timeout is an error: RuntimeError("timed out waiting for what")."""
    if not wait_until(ready, timeout):
        raise RuntimeError(f"timed out waiting for {what}")
