"""What pyvde-plug and pyvde-plug2tap share around the pump: signals, the run loop,
reconnecting to a switch that went away, daemon mode and the pid file."""
from __future__ import annotations

import os
import select
import signal
import sys

from switchd.daemon import PidFile, finish_daemon, fork_to_background

from . import pump
from .ends import Opened, vde_end
from .vdeclient import PlugError

DEFAULT_MAXFRAME = 9234        # vdeplug4's VDE_ETHBUFSIZE; raised for large tap MTUs


class Runner:
    def __init__(self, prog: str):
        self.prog = prog
        self.stopped = False
        self.ready_w = -1           # -d: tells the waiting command that we are up
        self.stop_r, self.stop_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.stop_w, warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)

    def _on_signal(self, signum, frame) -> None:
        self.stopped = True

    def error(self, message: str) -> int:
        print(f"{self.prog}: {message}", file=sys.stderr)
        return 1

    def wait_stop(self, timeout: float) -> bool:
        """Sleeps up to timeout; True if a stop signal came."""
        select.select([self.stop_r], [], [], timeout)
        self._drain()
        return self.stopped

    def _drain(self) -> None:
        try:
            while os.read(self.stop_r, 64):
                pass
        except BlockingIOError:
            pass

    def fork_daemon(self) -> None:
        """-d, first half: go to the background before connecting, so the switch is told
        the pid of the process that stays (as vde_plug does). The command itself waits
        until detach() says the ends are open; if this process fails first (its error line
        still reaches the terminal), the command exits 1."""
        self.ready_w = fork_to_background()

    def detach(self, daemon: bool, pidfile: str | None) -> PidFile | None:
        """After the ends are open (so errors still reach the terminal): the pid file,
        then, with -d, standard streams on /dev/null and the waiting command released."""
        pf = PidFile(pidfile) if pidfile else None
        if pf:
            pf.write()
        if daemon:
            finish_daemon(self.ready_w)
        return pf

    def fail(self, opened: list[Opened], e: Exception) -> int:
        """Start-up failed: close what was opened, one line on stderr, exit status 1."""
        for o in opened:
            o.close()
        if isinstance(e, PlugError):
            return self.error(str(e))
        return self.error(f"{e.filename or ''}: {e.strerror}".lstrip(": "))

    def loop(self, a: Opened, b: Opened, maxframe: int, reconnect: bool) -> int:
        """Pumps until the link ends. With reconnect, an end whose switch closed the
        control connection is connected again (every 0.5 s until it works)."""
        with pump.Pump(maxframe) as p:
            return self._loop(p, a, b, maxframe, reconnect)

    def _loop(self, p, a, b, maxframe, reconnect) -> int:
        while True:
            result = p.run(a.end, b.end, self.stop_r)
            if result.reason == pump.STOPPED:
                self._drain()
                if self.stopped:
                    return 0
                continue
            if result.reason == pump.BAD_STREAM:
                end = (a, b)[result.bad_end].end
                return self.error(f"{end.name}: impossible record length {result.bad_len}"
                                  f" (largest frame {maxframe}); stream closed")
            if result.reason in (pump.END_A, pump.END_B):
                end = a if result.reason == pump.END_A else b
                if end.end.kind == pump.TAP:
                    return self.error(f"{end.end.name} went away")
                return 0                         # end of the stream: a normal end
            # WATCHED: a switch closed its control connection
            for opened in (a, b):
                if opened.conn is None or not _readable(opened.conn.ctl.fileno()):
                    continue
                where = opened.conn.directory
                if not reconnect:
                    print(f"{self.prog}: switch at {where} closed the connection",
                          file=sys.stderr)
                    return 0
                print(f"{self.prog}: switch at {where} went away; reconnecting",
                      file=sys.stderr)
                old = opened.conn
                old.close()
                opened.conn = None
                conn = self._reconnect(old)
                if conn is None:
                    return 0
                opened.conn = conn
                opened.end = vde_end(conn)
                print(f"{self.prog}: reconnected to {conn.directory}", file=sys.stderr)

    def _reconnect(self, old):
        while True:
            try:
                return old.reopen()
            except PlugError:
                if self.wait_stop(0.5):
                    return None


def _readable(fd: int) -> bool:
    r, _, _ = select.select([fd], [], [], 0)
    return bool(r)


def maxframe_for(opened: list[Opened], asked: int | None) -> int:
    """--maxframe if given; else vdeplug4's 9234, or more when a tap's MTU needs it."""
    if asked is not None:
        return asked
    mtus = [o.tap_mtu for o in opened if o.tap_mtu]
    return min(pump.MAX_FRAME, max([DEFAULT_MAXFRAME] + [m + 18 for m in mtus]))
