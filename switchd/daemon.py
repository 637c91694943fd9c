"""Process set-up around the switch: logging, daemonizing, the pid file.

Kept apart so the switch itself knows nothing about how its process was started.
"""
from __future__ import annotations

import logging
import logging.handlers
import os
import signal
import sys

_held: list[int] = []


def hold_stop_signals() -> None:
    """Until trio's own handlers take over, SIGINT/SIGTERM are only noted, never lost:
    a switch told to stop while starting stops cleanly as soon as it runs."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: _held.append(signum))


def held_stop_signal() -> int | None:
    return _held[0] if _held else None


def setup_logging(daemon: bool, name: str) -> None:
    root = logging.getLogger()
    root.handlers.clear()
    if daemon and os.path.exists("/dev/log"):
        handler: logging.Handler = logging.handlers.SysLogHandler(
            "/dev/log", facility=logging.handlers.SysLogHandler.LOG_DAEMON)
        handler.setFormatter(logging.Formatter(f"{name}[%(process)d]: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"%(asctime)s {name}: %(message)s", "%H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def daemonize(pidfile: PidFile | None = None) -> None:
    """Detaches like daemon(0, 0): new session, cwd /, standard streams on /dev/null.

    The parent exits only after the child is set up, so when `pyvde-switch -d`
    returns, the switch's sockets (created before this call) already accept clients,
    and the pid file, if one is given, holds the daemon's pid (if it cannot be written,
    OSError is raised in the daemon while its stderr is still the terminal's, and the
    command exits 1)."""
    ready = fork_to_background()
    if pidfile is not None:
        pidfile.write()
    finish_daemon(ready)


def fork_to_background() -> int:
    """First half of daemonize(): the process that stays is a grandchild in a new
    session; the command waits (in the original process) until finish_daemon() is
    called with the returned fd, or exits 1 if this process dies first."""
    r, w = os.pipe()
    if os.fork() > 0:
        os.close(w)
        ok = os.read(r, 1)
        os._exit(0 if ok == b"1" else 1)
    os.close(r)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    return w


def finish_daemon(ready_fd: int) -> None:
    """Second half: cwd /, standard streams on /dev/null, and the waiting command released."""
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)
    os.write(ready_fd, b"1")
    os.close(ready_fd)


class PidFile:
    """Refused if the file exists, like vde_switch's O_EXCL; removed at exit. It appears
    whole: written under a temporary name and linked into place (link() fails if the
    name exists), so a reader never sees it empty."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        self.written = False

    def write(self) -> None:
        tmp = f"{self.path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()}\n")
            try:
                os.link(tmp, self.path)
            except OSError as e:            # name the pid file, not the temporary one
                raise OSError(e.errno, e.strerror, self.path) from None
        finally:
            os.unlink(tmp)
        self.written = True

    def remove(self) -> None:
        if self.written:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            self.written = False
