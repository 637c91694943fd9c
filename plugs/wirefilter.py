"""pyvde-wirefilter: a bad wire between two VDE networks (like vde2's wirefilter).

    pyvde-wirefilter [OPTIONS] -v LEFT:RIGHT
    pyvde-wirefilter [OPTIONS] LEFT RIGHT

Frames move and are decided in C (cffi_build/wire.c, wire_core.c); this module opens
the two sides, sets the parameters and serves wirefilter's console (`VDEwf$ `) on -M
and, when both sides are datagram VNLs and there is no --daemon, on stdin/stdout.
A side is a datagram VNL (vde://, udp://, ptp://) or, as `-`, the record stream on
stdin/stdout; with no sides at all it sits in a dpipe chain. --speed, --blink and the
Markov model are not implemented yet.
"""
from __future__ import annotations

import errno
import logging
import os
import secrets
import signal
import sys

import trio

from switchd import console
from switchd.console import Audience, CommandError, CommandTable, Context, SessionEnd
from switchd.daemon import PidFile, daemonize
from switchd.listeners import StartupError
from switchd.mgmt_socket import ConsoleHost, MgmtSocket, serve_stdin, stdin_usable

from . import ends, pump
from ._wire import ffi, lib
from .vdeclient import PlugError, describe
from .wire_options import IMPAIRMENTS, LR, RL, WireOptions, WireUsageError, parse_args
from .wirevalue import WireValue, WireValueError, parse

PROG = "pyvde-wirefilter"
VERSION = "0.1.0"
BANNER = f"\nVDE wirefilter (pyvde-wirefilter {VERSION})\n(C) the pyvde developers - MIT licence\n"
PROMPT = b"\nVDEwf$ "
MAXCONN = 3          # mgmt sessions at once, as wirefilter
MAXFRAME = 65550
UNSUPPORTED = {"speed"}
DIRS = {LR: lib.WIRE_LR, RL: lib.WIRE_RL}
ZERO = WireValue((LR, RL), 0.0)
log = logging.getLogger(PROG)

USAGE = f"""\
Usage: {PROG} [OPTIONS] -v LEFT:RIGHT   (or: {PROG} [OPTIONS] LEFT RIGHT)
A bad wire between two VDE networks (pyvde {VERSION}). Values: [LR|RL]value[+var][K|M|G][U|N]

  -l, --loss PERCENT        -L, --lostburst FRAMES (Gilbert model)
  -d, --delay MS            -D, --dup PERCENT
  -b, --band BYTES/S        -c, --chanbufsize, --capacity BYTES
  -n, --noise BITS/MB       -m, --mtu BYTES           -N, --nofifo
  -M, --mgmt PATH           --mgmtmode OCTAL          -f, --rcfile FILE
  --seed N                  --daemon                  --pidfile FILE
  A side may be '-' (stdin/stdout); with no sides: a dpipe chain (ALTERNATE_STDIN/OUT)
  (not yet: --speed, --blink, the Markov model)
"""


class Wire:
    """The engine and the parameters as the user gave them (for showinfo).

    consoles holds the open console sessions: a command subscribes its own session to a
    topic with ctx.session.subscribe(topic) (ctx.session is None in an rc file), and
    trio code sends an event line to exactly the subscribed sessions with
    consoles.publish(topic, line).
    """

    def __init__(self, seed: int):
        self.engine = lib.wire_new(MAXFRAME, seed)
        if self.engine == ffi.NULL:
            raise MemoryError("cannot create the wire engine")
        self.values: dict[str, dict[str, WireValue]] = {}
        self.fifo = True
        self.consoles = Audience()

    def set(self, name: str, v: WireValue) -> None:
        lib.wire_lock(self.engine)
        try:
            for d in v.directions:
                self.values.setdefault(name, {})[d] = v
                wd = lib.wire_direction(self.engine, DIRS[d])
                if name == "mtu":
                    wd.mtu = int(v.value)
                elif name == "capacity":
                    wd.capacity = int(v.value)
                elif name in ("loss", "lostburst", "delay", "dup", "band", "noise"):
                    p = getattr(wd, name)
                    p.value, p.variation = v.value, v.variation
                    p.dist = lib.WIRE_NORMAL if v.distribution == "N" else lib.WIRE_UNIFORM
        finally:
            lib.wire_unlock(self.engine)

    def set_fifo(self, on: bool) -> None:
        lib.wire_lock(self.engine)
        for d in DIRS.values():
            lib.wire_direction(self.engine, d).fifo = 1 if on else 0
        lib.wire_unlock(self.engine)
        self.fifo = on

    def get(self, name: str, d: str) -> WireValue:
        return self.values.get(name, {}).get(d, ZERO)

    def queued(self, d: str) -> int:
        st = ffi.new("struct wire_stats *")
        lib.wire_get_stats(self.engine, DIRS[d], st)
        return st.queued_frames

    def counters(self, d: str) -> dict[str, int]:
        lib.wire_lock(self.engine)
        c = lib.wire_direction(self.engine, DIRS[d]).c
        out = {k: getattr(c, k) for k in ("in", "delivered", "dup_copies", "drop_mtu",
                                            "drop_loss", "drop_capacity", "flipped_bits")}
        lib.wire_unlock(self.engine)
        return out

    def close(self) -> None:
        if self.engine != ffi.NULL:
            lib.wire_free(self.engine)
            self.engine = ffi.NULL


def showinfo_lines(w: Wire) -> list[str]:
    def row(label: str, name: str) -> str:
        return f"{label:<6} L->R {w.get(name, LR).text()}   R->L {w.get(name, RL).text()}"
    mtu = (int(w.get("mtu", LR).value), int(w.get("mtu", RL).value))
    return ["WireFilter: bidirectional", row("Loss", "loss"), row("Lburst", "lostburst"),
            row("Delay", "delay"), row("Dup", "dup"), row("Bandw", "band"),
            row("Speed", "speed"), row("Noise", "noise"),
            f"MTU    L->R {mtu[0]:<5} R->L {mtu[1]:<5}", row("Cap.", "capacity"),
            f"Current Delay Queue size:   L->R {w.queued(LR):<6} R->L {w.queued(RL):<6}",
            f"Fifoness {'TRUE' if w.fifo else 'FALSE'}",
            f"Waiting packets in delay queues {w.queued(LR) + w.queued(RL)}"]


def build_commands(w: Wire) -> CommandTable:
    t = CommandTable()

    @t.command("help", "[arg]", "Help (limited to arg when specified)", data=True)
    def help_(ctx: Context) -> None:
        ctx.out += t.help_lines(ctx.arg)

    @t.command("showinfo", "", "show status and parameter values", data=True)
    def showinfo(ctx: Context) -> None:
        ctx.out += showinfo_lines(w)

    @t.command("counters", "", "frames in, delivered and dropped by cause (pyvde)", data=True)
    def counters(ctx: Context) -> None:
        for d in (LR, RL):
            c = w.counters(d)
            ctx.out.append(f"{d[0]}->{d[1]} in {c['in']} delivered {c['delivered']} dup"
                           f" {c['dup_copies']} drop loss {c['drop_loss']} mtu {c['drop_mtu']}"
                           f" capacity {c['drop_capacity']} flipped-bits {c['flipped_bits']}")

    @t.command("load", "path", "load a configuration script")
    def load(ctx: Context) -> None:
        try:
            results = console.run_script(t, ctx.arg, ctx.session)
        except (OSError, ValueError) as e:
            raise CommandError(getattr(e, "errno", None) or errno.EINVAL) from None
        ctx.raw.append(console.transcript(ctx.arg, results))

    def setter(name: str):
        def handler(ctx: Context) -> None:
            try:
                v = parse(ctx.arg)
            except WireValueError:
                raise CommandError(errno.EINVAL) from None
            if name in UNSUPPORTED:
                raise CommandError(errno.ENOSYS)
            w.set(name, v)
        return handler

    names = {"loss": ["loss"], "lostburst": ["lostburst"], "delay": ["delay"], "dup": ["dup"],
             "band": ["bandwidth", "band"], "speed": ["speed"],
             "capacity": ["chanbufsize", "capacity"], "noise": ["noise"], "mtu": ["mtu"]}
    for name, cmds in names.items():
        for cmd in cmds:
            t.add(cmd, "value", f"set {IMPAIRMENTS[name][2]}", setter(name))

    @t.command("fifo", "0/1", "fifo=1 FIFO (default), fifo=0 allow reordering")
    def fifo(ctx: Context) -> None:
        w.set_fifo(ctx.int_arg() != 0)

    @t.command("logout", "", "logout from this mgmt session")
    def logout(ctx: Context) -> None:
        raise SessionEnd("logout")

    @t.command("shutdown", "", "shut the wirefilter down")
    def shutdown_(ctx: Context) -> None:
        raise SessionEnd("shutdown")

    return t


async def run(w: Wire, stop: trio.Event, mgmt: MgmtSocket | None,
              stdin_console: ConsoleHost | None) -> None:
    async with trio.open_nursery() as nursery:
        if mgmt is not None:
            nursery.start_soon(mgmt.serve)
        if stdin_console is not None:
            nursery.start_soon(serve_stdin, stdin_console)

        async def ended() -> None:
            await trio.lowlevel.wait_readable(lib.wire_event_fd(w.engine))
            stop.set()

        async def signals() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as sigs:
                async for _ in sigs:
                    stop.set()
        nursery.start_soon(ended)
        nursery.start_soon(signals)
        await stop.wait()
        nursery.cancel_scope.cancel()


def stream_sides(opts: WireOptions) -> list[tuple[int, int] | None]:
    """(read fd, write fd) of each side that is a record stream, None for the others.
    '-' is stdin/stdout. In a dpipe chain (no sides given) the left side is stdin/stdout
    and the right one the fds dpipe names in ALTERNATE_STDIN/ALTERNATE_STDOUT; without
    them the wire is one-way, stdin to stdout."""
    if opts.dpipe:
        alt_in, alt_out = os.environ.get("ALTERNATE_STDIN"), os.environ.get("ALTERNATE_STDOUT")
        if alt_in and alt_out and alt_in.isdigit() and alt_out.isdigit():
            return [(0, 1), (int(alt_in), int(alt_out))]
        return [(0, -1), (-1, 1)]
    return [(0, 1) if side == "-" else None for side in (opts.left, opts.right)]


def main(argv: list[str] | None = None) -> int:
    try:
        opts = parse_args(sys.argv[1:] if argv is None else argv)
    except WireUsageError as e:
        if str(e) == "help":
            sys.stdout.write(USAGE)
            return 0
        print(f"{PROG}: {e}\nTry '{PROG} --help' for more information.", file=sys.stderr)
        return 2
    if opts.left == "-" and opts.right == "-":
        print(f"{PROG}: only one side can be '-' (stdin/stdout)", file=sys.stderr)
        return 2
    for name in UNSUPPORTED:
        if opts.values.get(name):
            print(f"{PROG}: option --{name} is not implemented yet", file=sys.stderr)
            return 1
    logging.basicConfig(format=f"{PROG}: %(message)s", level=logging.INFO)
    sides: list[ends.Opened] = []
    w = None
    pidfile = None
    mgmt = None
    try:
        streams = stream_sides(opts)
        for i, vnl in enumerate((opts.left, opts.right)):
            if streams[i] is not None:
                sides.append(None)
                continue
            o = ends.open_vnl(vnl, describe("vde_crosscable"))
            sides.append(o)
            if o.end.kind != pump.DGRAM:
                raise PlugError(f"{vnl}: a side must be a switch, udp://, ptp:// or '-'")
        w = Wire(opts.seed if opts.seed is not None else secrets.randbits(64))
        for name, per_dir in opts.values.items():
            for v in set(per_dir.values()):
                w.set(name, v)
        w.set_fifo(opts.fifo)
        table = build_commands(w)
        if opts.rcfile:
            for line, reply in console.run_script(table, opts.rcfile):
                if reply.code:
                    log.warning("rc file %s: %s: 1%03d %s", opts.rcfile, line, reply.code,
                                os.strerror(reply.code))
        c_sides = []
        for i, o in enumerate(sides):
            s = ffi.new("struct wire_side *")
            if o is None:
                s.rfd, s.wfd = streams[i]
                s.watch, s.stream = -1, 1
            else:
                s.rfd = s.wfd = o.end.rfd
                s.watch = o.end.watch[0] if o.end.watch else -1
            c_sides.append(s)
        stop = trio.Event()
        host = ConsoleHost(table, BANNER, stop.set, prompt=PROMPT, audience=w.consoles,
                           max_sessions=MAXCONN)
        if opts.mgmt:            # before daemonizing: failures reach stderr, relative paths work
            mgmt = MgmtSocket(host, os.path.abspath(opts.mgmt), opts.mgmtmode, -1)
            mgmt.open()
        if opts.daemon:          # before the engine thread starts: fork keeps no threads
            daemonize()
        if opts.pidfile:
            pidfile = PidFile(opts.pidfile)
            pidfile.write()
        r = lib.wire_start(w.engine, c_sides[0], c_sides[1])
        if r < 0:
            raise OSError(-r, os.strerror(-r))
        # As wirefilter: with a switch (or udp://, ptp://) on both sides, stdin/stdout
        # are free for a console.
        stdin_console = not opts.daemon and None not in sides and stdin_usable()
        trio.run(run, w, stop, mgmt, host if stdin_console else None)
        return 0
    except (PlugError, StartupError) as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"{PROG}: {e.filename or ''}: {e.strerror}".replace(": : ", ": "), file=sys.stderr)
        return 1
    finally:
        if mgmt is not None:
            mgmt.close()
        if w is not None:
            w.close()
        for o in sides:
            if o is not None:
                o.close()
        if pidfile is not None:
            pidfile.remove()


if __name__ == "__main__":
    sys.exit(main())
