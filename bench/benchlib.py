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


def add_trial_options(ap, quick_seconds: float) -> None:
    """--trials, --duration and --quick, as every benchmark takes them."""
    ap.add_argument("--trials", type=int, default=3,
                    help="runs per figure; the median is reported (default 3)")
    ap.add_argument("--duration", type=float, default=5.0,
                    help="seconds per run (default 5)")
    ap.add_argument("--quick", action="store_true",
                    help=f"a smoke run: 1 run of {quick_seconds:g} s per figure")
    ap.set_defaults(quick_seconds=quick_seconds)


def parse_trial_options(ap, argv=None):
    """ap.parse_args(), with --quick applied."""
    args = ap.parse_args(argv)
    if args.quick:
        args.trials, args.duration = 1, args.quick_seconds
    return args
