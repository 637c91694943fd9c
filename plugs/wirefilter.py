"""pyvde-wirefilter: a bad wire between two VDE networks (like vde2's wirefilter).

    pyvde-wirefilter [OPTIONS] -v LEFT:RIGHT
    pyvde-wirefilter [OPTIONS] LEFT RIGHT

Frames move and are decided in C (cffi_build/wire.c, wire_core.c); this module opens
the two sides, sets the parameters (wirefilter's and netem's, per Markov node and
direction) and serves wirefilter's console (`VDEwf$ `) on -M and, when both sides are
datagram VNLs and there is no --daemon, on stdin/stdout. A side is a datagram VNL
(vde://, udp://, ptp://) or, as `-`, the record stream on stdin/stdout; with no sides at
all it sits in a dpipe chain.
"""
from __future__ import annotations

import errno
import logging
import os
import secrets
import signal
import socket
import sys

import trio

from switchd import console
from switchd.console import (
    Audience,
    CommandError,
    CommandTable,
    Context,
    SessionEnd,
    bad_argument,
)
from switchd.daemon import PidFile, daemonize
from switchd.listeners import StartupError
from switchd.mgmt_socket import ConsoleHost, MgmtSocket, serve_stdin, stdin_usable
from switchd.usage import answer_usage

from . import ends, pump
from ._wire import ffi, lib
from .vdeclient import PlugError, describe
from .wire_options import IMPAIRMENTS, LR, RL, WireOptions, WireUsageError, parse_args
from .wirevalue import (
    DISTRIBUTIONS,
    NETEM_SETTINGS,
    NetemValue,
    WireValue,
    WireValueError,
    parse,
    parse_netem,
)

PROG = "pyvde-wirefilter"
VERSION = "0.1.0"
BANNER = f"\nVDE wirefilter (pyvde-wirefilter {VERSION})\n(C) the pyvde developers - MIT licence\n"
PROMPT = b"\nVDEwf$ "
MAXCONN = 3          # mgmt sessions at once, as wirefilter
MAXFRAME = 65550
DIRS = {LR: lib.WIRE_LR, RL: lib.WIRE_RL}
ZERO = WireValue((LR, RL), 0.0)
log = logging.getLogger(PROG)

USAGE = f"""\
Usage: {PROG} [OPTIONS] -v LEFT:RIGHT   (or: {PROG} [OPTIONS] LEFT RIGHT)
A bad wire between two VDE networks (pyvde {VERSION}).
wirefilter's values: [LR|RL]value[+var][K|M|G][U|N]

  -l, --loss PERCENT        -L, --lostburst FRAMES (Gilbert model)
  -d, --delay MS            -D, --dup PERCENT
  -b, --band BYTES/S        -s, --speed BYTES/S (interface speed)
  -c, --chanbufsize, --capacity BYTES
  -n, --noise BITS/MB       -m, --mtu BYTES           -N, --nofifo
netem's models: [LR|RL]args (commas or spaces)
  --gemodel P[,R[,1-H[,1-K]]]      --loss-state P13[,P31[,P32[,P23[,P14]]]]
  --loss-corr PCT  --delay-corr PCT  --dup-corr PCT
  --delay-distribution uniform|normal|pareto|paretonormal
  --reorder PCT[,CORR]  --reorder-gap N  --corrupt PCT[,CORR]  --discard-corrupt
  --rate RATE[,OVERHEAD[,CELLSIZE[,CELLOVERHEAD]]] (100mbit, 12kbps...)
  --slot MIN[,MAX][,packets N][,bytes N] (ms)
  -M, --mgmt PATH           --mgmtmode OCTAL          -f, --rcfile FILE
  --seed N                  --daemon                  --pidfile FILE
  --blink SOCKET            --blinkid ID
  A side may be '-' (stdin/stdout); with no sides: a dpipe chain (ALTERNATE_STDIN/OUT)
  Markov model: markov-numnodes, setedge... from the console or the rc file
"""


class Wire:
    """The engine, the Markov model and the parameters as the user gave them (for showinfo).

    Parameters belong to a Markov node and a direction; node 0 is the only one until
    markov-numnodes makes more. consoles holds the open console sessions: a command
    subscribes its own session to a topic with ctx.session.subscribe(topic) (ctx.session
    is None in an rc file), and trio code sends an event line to exactly the subscribed
    sessions with consoles.publish(topic, line).
    """

    def __init__(self, seed: int, mono: bool = False):
        self.engine = lib.wire_new(MAXFRAME, seed)
        if self.engine == ffi.NULL:
            raise MemoryError("cannot create the wire engine")
        self.shown: dict[tuple[int, str, str], WireValue | NetemValue] = {}
        self.names: dict[int, str] = {}
        self.fifo = True
        self.mono = mono
        self.blink: tuple[str, str] | None = None     # (socket path, id)
        self.consoles = Audience()

    # -------------------------------------------------------------- parameters
    def set(self, name: str, v: WireValue | NetemValue) -> None:
        """Sets one option (wirefilter's or netem's) for v's directions in v's node."""
        if v.node >= self.numnodes:
            raise ValueError(f"Markov node {v.node} does not exist")
        lib.wire_lock(self.engine)
        try:
            for d in v.directions:
                self.shown[(v.node, name, d)] = v
                self._apply(lib.wire_params(self.engine, v.node, DIRS[d]), v.node, name, d, v)
        finally:
            lib.wire_unlock(self.engine)

    def _apply(self, p, node: int, name: str, d: str, v) -> None:
        if isinstance(v, WireValue):
            if name == "mtu":
                p.mtu = int(v.value)
                return
            if name in ("loss", "lostburst"):
                p.loss_model = lib.WIRE_LOSS_WF
            field = getattr(p, name)
            field.value, field.variation = v.value, v.variation
            shaped = self.shown.get((node, "delay-distribution", d)) if name == "delay" else None
            field.dist = (DISTRIBUTIONS[shaped.values[0]] if shaped else
                          lib.WIRE_NORMAL if v.distribution == "N" else lib.WIRE_UNIFORM)
            return
        x = v.values
        if name == "gemodel":
            p.loss_model = lib.WIRE_LOSS_GE
            p.ge_p, p.ge_r, p.ge_1h, p.ge_1k = x
        elif name == "loss-state":
            p.loss_model = lib.WIRE_LOSS_4STATE
            p.p13, p.p31, p.p32, p.p23, p.p14 = x
        elif name == "delay-distribution":
            p.delay.dist = DISTRIBUTIONS[x[0]]
        elif name in ("loss-corr", "delay-corr", "dup-corr"):
            setattr(p, name.replace("-corr", "_corr"), x[0])
        elif name == "reorder":
            p.reorder, p.reorder_corr = x
        elif name == "reorder-gap":
            p.reorder_gap = int(x[0])
        elif name == "corrupt":
            p.corrupt, p.corrupt_corr = x
        elif name == "discard-corrupt":
            p.discard_corrupt = int(x[0])
        elif name == "rate":
            p.rate, p.rate_overhead, p.rate_cell, p.rate_cell_overhead = (
                x[0], int(x[1]), int(x[2]), int(x[3]))
        elif name == "slot":
            p.slot_min_us, p.slot_max_us = x[0] * 1000, x[1] * 1000
            p.slot_packets, p.slot_bytes = int(x[2]), int(x[3])

    def set_fifo(self, on: bool) -> None:
        lib.wire_lock(self.engine)
        for d in DIRS.values():
            lib.wire_direction(self.engine, d).fifo = 1 if on else 0
        lib.wire_unlock(self.engine)
        self.fifo = on

    def get(self, name: str, d: str, node: int = 0) -> WireValue | NetemValue | None:
        return self.shown.get((node, name, d))

    # -------------------------------------------------------------- the Markov model
    @property
    def numnodes(self) -> int:
        return lib.wire_markov(self.engine).numnodes

    @property
    def current(self) -> int:
        return lib.wire_markov(self.engine).current

    @property
    def markov_time(self) -> float:
        return lib.wire_markov(self.engine).time_ms

    def markov_resize(self, n: int) -> None:
        """n nodes (1..WIRE_MAX_NODES); nodes that go away lose their parameters."""
        if not 1 <= n <= lib.WIRE_MAX_NODES:
            raise ValueError(f"the number of nodes must be 1..{lib.WIRE_MAX_NODES}")
        lib.wire_lock(self.engine)
        try:
            for node in range(n, self.numnodes):
                for d in DIRS.values():
                    lib.wire_params_init(lib.wire_params(self.engine, node, d))
            self.shown = {k: v for k, v in self.shown.items() if k[0] < n}
            self.names = {k: v for k, v in self.names.items() if k < n}
            lib.wire_markov_resize(lib.wire_markov(self.engine), n)
            lib.wire_markov_restart(self.engine)
        finally:
            lib.wire_unlock(self.engine)

    def markov_set_time(self, ms: float) -> None:
        lib.wire_lock(self.engine)
        lib.wire_markov(self.engine).time_ms = ms
        lib.wire_markov_restart(self.engine)
        lib.wire_unlock(self.engine)

    def markov_set_node(self, n: int) -> None:
        lib.wire_lock(self.engine)
        lib.wire_markov(self.engine).current = n
        lib.wire_unlock(self.engine)

    def set_edge(self, a: int, b: int, weight: float) -> bool:
        lib.wire_lock(self.engine)
        ok = lib.wire_markov_setedge(lib.wire_markov(self.engine), a, b, weight) == 0
        lib.wire_unlock(self.engine)
        return ok

    def edges(self, node: int) -> list[tuple[int, float]]:
        m = lib.wire_markov(self.engine)
        return [(j, m.weight[node][j]) for j in range(m.numnodes) if m.weight[node][j] != 0]

    def node_changes(self) -> list[tuple[int, int]]:
        a, b = ffi.new("int32_t[64]"), ffi.new("int32_t[64]")
        n = lib.wire_markov_events(self.engine, a, b, 64)
        return [(a[i], b[i]) for i in range(n)]

    def name(self, node: int) -> str:
        return self.names.get(node, "")

    def announce_node_change(self, a: int, b: int) -> None:
        """markov-debug: sessions that asked get wirefilter's 38xx line."""
        if self.consoles.wants("markov"):
            self.consoles.publish("markov", f'{3800 + b:04d} Node {a} "{self.name(a)}" -> {b}'
                                            f' "{self.name(b)}"\n'.encode())

    # -------------------------------------------------------------- counters
    def queued(self, d: str) -> int:
        st = ffi.new("struct wire_stats *")
        lib.wire_get_stats(self.engine, DIRS[d], st)
        return st.queued_frames

    def counters(self, d: str) -> dict[str, int]:
        lib.wire_lock(self.engine)
        c = lib.wire_direction(self.engine, DIRS[d]).c
        out = {k: getattr(c, k) for k in COUNTERS}
        lib.wire_unlock(self.engine)
        return out

    def close(self) -> None:
        if self.engine != ffi.NULL:
            lib.wire_free(self.engine)
            self.engine = ffi.NULL


COUNTERS = ("in", "delivered", "dup_copies", "drop_mtu", "drop_loss", "drop_capacity",
            "drop_corrupt", "flipped_bits", "corrupted", "reordered")


def showinfo_lines(w: Wire, node: int) -> list[str]:
    """wirefilter's showinfo layout; netem's settings in use follow the Cap. line."""
    def text(name: str, d: str) -> str:
        v = w.get(name, d, node)
        return v.text() if v is not None else ZERO.text()

    def row(label: str, name: str) -> str:
        if w.mono:
            return f"{label:<6} {text(name, LR)}"
        return f"{label:<6} L->R {text(name, LR)}   R->L {text(name, RL)}"

    def mtu(d: str) -> str:
        v = w.get("mtu", d, node)
        return str(int(v.value)) if v is not None else "0"

    out = [f"WireFilter: {'mono' if w.mono else 'bi'}directional"]
    if w.numnodes > 1:
        out.append(f'Node {node} "{w.name(node)}" (0,..,{w.numnodes - 1}) Markov-time'
                   f" {w.markov_time:g}")
    out += [row("Loss", "loss"), row("Lburst", "lostburst"), row("Delay", "delay"),
            row("Dup", "dup"), row("Bandw", "band"), row("Speed", "speed"),
            row("Noise", "noise"),
            f"MTU    {mtu(LR)}" if w.mono else f"MTU    L->R {mtu(LR)}     R->L {mtu(RL)}   ",
            row("Cap.", "capacity")]
    for name in NETEM_SETTINGS:
        if any(w.get(name, d, node) is not None for d in (LR, RL)):
            out.append(f"{name} L->R {_netem_text(w, name, LR, node)}   R->L"
                       f" {_netem_text(w, name, RL, node)}")
    queue = (f"{w.queued(LR)}" if w.mono else
             f"L->R {w.queued(LR)}      R->L {w.queued(RL)}   ")
    out += [f"Current Delay Queue size:   {queue}",
            f"Fifoness {'TRUE' if w.fifo else 'FALSE'}",
            f"Waiting packets in delay queues {w.queued(LR) + w.queued(RL)}"]
    if w.blink:
        out += [f"Blink socket: {w.blink[0]}", f"Blink id:     {w.blink[1]}"]
    return out


def _netem_text(w: Wire, name: str, d: str, node: int) -> str:
    v = w.get(name, d, node)
    return v.text() if v is not None else "-"


def _node_arg(w: Wire, ctx: Context) -> int:
    """showinfo/showedges [n]: node n, or the current node."""
    node = ctx.int_arg(default=w.current)
    if not 0 <= node < w.numnodes:
        raise bad_argument(f"node {node} does not exist (0..{w.numnodes - 1})")
    return node


def build_commands(w: Wire) -> CommandTable:
    t = CommandTable()

    @t.command("help", "[arg]", "Help (limited to arg when specified)", data=True)
    def help_(ctx: Context) -> None:
        ctx.out += t.help_lines(ctx.arg)

    @t.command("showinfo", "[n]", "show status and parameter values (of Markov node n)",
               data=True)
    def showinfo(ctx: Context) -> None:
        ctx.out += showinfo_lines(w, _node_arg(w, ctx))

    @t.command("counters", "", "frames in, delivered and dropped by cause (pyvde)", data=True)
    def counters(ctx: Context) -> None:
        for d in (LR, RL):
            c = w.counters(d)
            ctx.out.append(f"{d[0]}->{d[1]} in {c['in']} delivered {c['delivered']} dup"
                           f" {c['dup_copies']} drop loss {c['drop_loss']} mtu {c['drop_mtu']}"
                           f" capacity {c['drop_capacity']} corrupt {c['drop_corrupt']}"
                           f" flipped-bits {c['flipped_bits']} corrupted {c['corrupted']}"
                           f" reordered {c['reordered']}")

    @t.command("load", "path", "load a configuration script")
    def load(ctx: Context) -> None:
        try:
            results = console.run_script(t, ctx.arg, ctx.session)
        except (OSError, ValueError) as e:
            raise CommandError(getattr(e, "errno", None) or errno.EINVAL) from None
        ctx.raw.append(console.transcript(ctx.arg, results))

    def setter(name: str, netem: bool):
        def handler(ctx: Context) -> None:
            try:
                v = (parse_netem(name, ctx.arg, w.numnodes) if netem
                     else parse(ctx.arg, w.numnodes))
            except WireValueError as e:
                raise bad_argument(str(e)) from None
            w.set(name, v)
        return handler

    names = {"loss": ["loss"], "lostburst": ["lostburst"], "delay": ["delay"], "dup": ["dup"],
             "band": ["bandwidth", "band"], "speed": ["speed"],
             "capacity": ["chanbufsize", "capacity"], "noise": ["noise"], "mtu": ["mtu"]}
    for name, cmds in names.items():
        for cmd in cmds:
            t.add(cmd, "value", f"set {IMPAIRMENTS[name][2]}", setter(name, False))

    @t.command("fifo", "0/1", "fifo=1 FIFO (default), fifo=0 allow reordering")
    def fifo(ctx: Context) -> None:
        w.set_fifo(ctx.int_arg() != 0)

    for name in NETEM_SETTINGS:
        t.add(name, "value", f"netem: {NETEM_HELP[name]}", setter(name, True))

    @t.command("markov-numnodes", "n", "markov mode: set number of states")
    def numnodes(ctx: Context) -> None:
        n = ctx.int_arg()
        if not 1 <= n <= lib.WIRE_MAX_NODES:
            raise bad_argument(f"the number of nodes must be 1..{lib.WIRE_MAX_NODES}")
        w.markov_resize(n)

    @t.command("markov-setnode", "n", "markov mode: set current state")
    def setnode(ctx: Context) -> None:
        n = ctx.int_arg()
        if not 0 <= n < w.numnodes:
            raise bad_argument(f"node {n} does not exist (0..{w.numnodes - 1})")
        w.markov_set_node(n)

    @t.command("markov-name", "n,name", "markov mode: set state's name")
    def markov_name(ctx: Context) -> None:
        number, _, name = ctx.arg.partition(",")
        try:
            n = int(number.strip(), 10)
        except ValueError:
            raise bad_argument(f"'{number}' is not a node number") from None
        if not 0 <= n < w.numnodes:
            raise bad_argument(f"node {n} does not exist (0..{w.numnodes - 1})")
        if name.strip():
            w.names[n] = name.strip()
        else:
            w.names.pop(n, None)

    @t.command("markov-time", "ms", "markov mode: transition period")
    def markov_time(ctx: Context) -> None:
        try:
            ms = float(ctx.arg)
        except ValueError:
            raise bad_argument(f"'{ctx.arg}' is not a time in milliseconds") from None
        if not 0 < ms < 1e9:
            raise bad_argument("the period must be more than 0 ms")
        w.markov_set_time(ms)

    @t.command("setedge", "n1,n2,w", "markov mode: set edge weight")
    def setedge(ctx: Context) -> None:
        parts = [x.strip() for x in ctx.arg.split(",")]
        try:
            a, b, weight = int(parts[0]), int(parts[1]), float(parts[2])
        except (ValueError, IndexError):
            raise bad_argument("expected n1,n2,weight") from None
        if len(parts) != 3 or not w.set_edge(a, b, weight):
            raise bad_argument("no such nodes, or node's edges would weigh more than 100")

    @t.command("showedges", "[n]", "markov mode: show edge weights", data=True)
    def showedges(ctx: Context) -> None:
        node = _node_arg(w, ctx)
        for j, weight in w.edges(node):
            ctx.out.append(f'Edge {node:<2d}->{j:<2d} "{w.name(node)}"->"{w.name(j)}"'
                           f" weight {weight:g}")

    @t.command("showcurrent", "", "markov mode: show current state", data=True)
    def showcurrent(ctx: Context) -> None:
        ctx.out.append(f'Current Markov Node {w.current} "{w.name(w.current)}"'
                       f" (0,..,{w.numnodes - 1})")

    @t.command("markov-debug", "n", "markov mode: set debug level")
    def markov_debug(ctx: Context) -> None:
        n = ctx.int_arg()
        if n < 0 or ctx.session is None:
            raise bad_argument("the level is 0 (off) or more, in a console session")
        if n > 0:
            ctx.session.subscribe("markov")
        else:
            ctx.session.unsubscribe("markov")

    @t.command("logout", "", "logout from this mgmt session")
    def logout(ctx: Context) -> None:
        raise SessionEnd("logout")

    @t.command("shutdown", "", "shut the wirefilter down")
    def shutdown_(ctx: Context) -> None:
        raise SessionEnd("shutdown")

    return t


NETEM_HELP = {
    "gemodel": "Gilbert-Elliott loss P[,R[,1-H[,1-K]]] %",
    "loss-state": "4-state loss P13[,P31[,P32[,P23[,P14]]]] %",
    "loss-corr": "loss correlation %",
    "delay-distribution": "uniform, normal, pareto or paretonormal",
    "delay-corr": "delay correlation %",
    "dup-corr": "duplication correlation %",
    "reorder": "frames sent ahead PCT[,CORR]",
    "reorder-gap": "one reordered frame every N at most",
    "corrupt": "frames with one bit flipped PCT[,CORR]",
    "discard-corrupt": "1: drop damaged frames",
    "rate": "RATE[,OVERHEAD[,CELL[,CELLOVERHEAD]]]",
    "slot": "MIN[,MAX][,packets N][,bytes N] ms",
}


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

        async def node_changes() -> None:
            while True:
                await trio.lowlevel.wait_readable(lib.wire_markov_fd(w.engine))
                for a, b in w.node_changes():
                    w.announce_node_change(a, b)

        async def signals() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as sigs:
                async for _ in sigs:
                    stop.set()
        nursery.start_soon(ended)
        nursery.start_soon(node_changes)
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


def open_blink(w: Wire, path: str, blinkid: str) -> None:
    """--blink: the engine announces every copy it sends to the datagram socket at path."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    r = lib.wire_set_blink(w.engine, s.fileno(), path.encode(), blinkid.encode(), w.mono)
    if r < 0:
        s.close()
        raise PlugError(f"--blink {path} / --blinkid {blinkid}: too long")
    s.detach()          # the engine owns the fd now
    w.blink = (path, blinkid)


def main(argv: list[str] | None = None) -> int:
    try:
        opts = parse_args(sys.argv[1:] if argv is None else argv)
    except WireUsageError as e:
        return answer_usage(PROG, e, USAGE)
    if opts.left == "-" and opts.right == "-":
        print(f"{PROG}: only one side can be '-' (stdin/stdout)", file=sys.stderr)
        return 2
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
        mono = opts.dpipe and streams[0][1] < 0
        w = Wire(opts.seed if opts.seed is not None else secrets.randbits(64), mono)
        for per_name in (opts.values, opts.netem):
            for name, per_dir in per_name.items():
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
        pidfile_path = os.path.abspath(opts.pidfile) if opts.pidfile else None   # before cd /
        pidfile = PidFile(pidfile_path) if pidfile_path else None
        if opts.daemon:          # before the engine thread starts: fork keeps no threads
            daemonize(pidfile)   # the pid file is whole before the command returns
        elif pidfile:
            pidfile.write()
        if opts.blink:           # the default id is the pid: the daemon's, as in the pidfile
            open_blink(w, opts.blink, opts.blinkid or f"{os.getpid():06d}")
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
