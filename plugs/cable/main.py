"""pyvde-cable: a switch joined to switches on other hosts over UDP: sealed with a
pre-shared key (vde_cryptcab's job), plain (vdeplug4's udp://), or as a VXLAN / VXVDE
tunnel endpoint. Frames move in C (cffi_build/cable.c); this is the trio shell: set-up,
the handshake (handshake.py, pure), keepalives, reports."""
from __future__ import annotations

import logging
import os
import signal
import socket
import stat
import sys
import time
from collections import Counter

import trio

from switchd.daemon import PidFile, daemonize, setup_logging
from switchd.usage import answer_usage

from ..ends import switch_vnl
from ..vdeclient import PlugError, connect, describe
from . import engine as eng
from .handshake import Handshake, InstallSession, Refused, SendDatagram, SendKeepalive
from .options import PROG, USAGE, CableUsageError, max_frame, parse_args, read_key

log = logging.getLogger(PROG)
IP_MTU_DISCOVER, IP_PMTUDISC_DO = 10, 2
LOG_EVERY = 10.0                # seconds between log lines about one kind of refusal
HINT_EVERY = 60.0               # seconds between oversize hints
REPORTED = ("oversize", "send_errors", "truncated", "bad_tag", "replayed", "unknown_index",
            "bad_header", "no_session", "control_dropped")


class StartError(Exception):
    """One line for stderr; exit status 1."""


# ------------------------------------------------------------------ set-up

def resolve(host: str, port: int) -> tuple[str, int]:
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)
    except socket.gaierror as e:
        raise StartError(f"{host}: {e.strerror}") from None
    return infos[0][4][0], port


def udp_socket(bind: tuple[str, int], reuse: bool = False) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if reuse:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            s.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
        s.bind(bind)
    except OSError as e:
        s.close()
        where = f"{bind[0] or '*'}:{bind[1]}"
        raise StartError(f"UDP {where}: {e.strerror}") from None
    s.setblocking(False)
    return s


def join_group(s: socket.socket, group: str, local: str | None, ttl: int, loop: bool) -> None:
    iface = socket.inet_aton(local or "0.0.0.0")
    try:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                     socket.inet_aton(group) + iface)
    except OSError as e:
        raise StartError(f"cannot join multicast group {group}: {e.strerror}") from None
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, int(loop))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
    if local:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, iface)


def load_key(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(65)
            mode = os.fstat(f.fileno()).st_mode
    except OSError as e:
        raise StartError(f"key file {path}: {e.strerror}") from None
    try:
        key, warning = read_key(data, stat.S_IMODE(mode))
    except ValueError as e:
        raise StartError(f"key file {path}: {e}") from None
    if warning:
        log.warning("key file %s: %s", path, warning)
    return key


def genkey(path: str) -> int:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        print(f"{PROG}: {path}: {e.strerror}", file=sys.stderr)
        return 1
    with os.fdopen(fd, "wb") as f:
        f.write(os.urandom(32))
    return 0


# ------------------------------------------------------------------ the shell

class Cable:
    def __init__(self, opts, engine: eng.Engine, handshake: Handshake | None,
                 peer: tuple[str, int] | None, limit: int):
        self.opts, self.engine = opts, engine
        self.hs, self.peer, self.limit = handshake, peer, limit
        self.refused: Counter[str] = Counter()
        self.logged_at: dict[str, float] = {}
        self.seen: dict[str, int] = {}
        self.hint_at = -HINT_EVERY
        self.stop = trio.Event()

    def now(self) -> float:
        return time.monotonic()

    def apply(self, effects) -> None:
        for e in effects:
            if isinstance(e, SendDatagram):
                err = self.engine.send_raw(e.data, e.addr)
                if err:
                    self.log_limited("send", f"handshake not sent to {e.addr[0]}:{e.addr[1]}:"
                                             f" {os.strerror(err)}")
            elif isinstance(e, InstallSession):
                slot = eng.CURRENT if e.slot == "current" else eng.PENDING
                self.engine.install(slot, e.my_index, e.peer_index, e.send_key, e.recv_key,
                                    e.addr)
                log.info("session %s with %s:%d (%s)", f"{e.my_index:08x}", *e.addr, e.slot)
            elif isinstance(e, SendKeepalive):
                self.engine.keepalive()
            elif isinstance(e, Refused):
                self.note(e.reason)

    def note(self, reason: str, detail: str = "") -> None:
        """Counts a refusal of the handshake and logs it (rate-limited)."""
        self.refused[reason] += 1
        self.log_limited(reason, f"{reason}{f': {detail}' if detail else ''}"
                                 f" ({self.refused[reason]} so far)")

    def log_limited(self, key: str, text: str) -> None:
        """Logs at most every LOG_EVERY seconds per key."""
        t = self.now()
        if t - self.logged_at.get(key, -LOG_EVERY) >= LOG_EVERY:
            self.logged_at[key] = t
            log.warning("%s", text)

    def stats_check(self) -> None:
        """Counters the engine keeps: a log line when one grew (rate-limited), and the
        oversize hint."""
        st = self.engine.stats()
        for k in REPORTED:
            grew = st[k] - self.seen.get(k, 0)
            self.seen[k] = st[k]
            if grew <= 0:
                continue
            if k == "oversize":
                t = self.now()
                if t - self.hint_at >= HINT_EVERY:
                    self.hint_at = t
                    log.warning("%d frame(s) dropped: larger than %d bytes, the most a"
                                " datagram of path MTU %d carries here; give the guests an"
                                " MTU of at most %d, or raise --path-mtu", grew, self.limit,
                                self.opts.path_mtu, self.limit - 14)
            else:
                self.log_limited(k, f"dropped: {k.replace('_', ' ')} ({st[k]} so far)")

    def report(self) -> str:
        st = self.engine.stats()
        peer = f"{st['peer'][0]}:{st['peer'][1]}" if st["peer"] else "none"
        drops = ", ".join(f"{k.replace('_', ' ')} {st[k]}" for k in REPORTED if st[k])
        refused = ", ".join(f"{k} {n}" for k, n in sorted(self.refused.items()))
        return (f"peer {peer}; to the network {st['to_net_frames']} frames"
                f" ({st['to_net_bytes']} bytes), from it {st['from_net_frames']} frames"
                f" ({st['from_net_bytes']} bytes); keepalives out {st['keepalives_out']},"
                f" in {st['keepalives_in']}; learned {st['learned']}"
                f"; dropped: {drops or 'nothing'}; refused: {refused or 'nothing'}")

    async def events(self) -> None:
        while True:
            await trio.lowlevel.wait_readable(self.engine.event_fd)
            for ev in self.engine.events():
                now, wall = self.now(), time.time()
                if ev.kind == eng.EV_ENDED:
                    why = self.engine.ended()
                    if why == eng.END_SWITCH:
                        log.info("the switch went away")
                    elif why == eng.FAILED:
                        log.error("the engine failed: %s",
                                  os.strerror(self.engine.stats()["error"]))
                    self.stop.set()
                    return
                if self.hs is None:
                    continue
                if ev.kind == eng.EV_CONTROL:
                    self.apply(self.hs.datagram(ev.data, ev.addr, now, wall))
                elif ev.kind == eng.EV_UNKNOWN:
                    self.apply(self.hs.unknown_index(ev.index, ev.addr, now, wall))
                elif ev.kind == eng.EV_PROMOTED:
                    log.info("session %08x confirmed by %s:%d", ev.index, *ev.addr)
                    self.apply(self.hs.promoted(now))

    async def timers(self) -> None:
        next_stats = 0.0
        while True:
            now = self.now()
            if self.hs is not None:
                st = self.engine.stats()
                rx = st["last_auth_rx_ms"] / 1000 if st["last_auth_rx_ms"] else 0.0
                tx = st["last_tx_ms"] / 1000 if st["last_tx_ms"] else 0.0
                self.apply(self.hs.tick(now, time.time(), rx, tx))
            if now >= next_stats:
                self.stats_check()
                next_stats = now + 1.0
                if self.engine.ended() != eng.RUNNING:     # in case its event was lost
                    self.stop.set()
            due = self.hs.next_deadline() if self.hs is not None else None
            deadline = next_stats if due is None else min(next_stats, due)
            await trio.sleep(max(0.01, min(deadline - self.now(), 1.0)))

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            async def signals() -> None:
                with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP,
                                               signal.SIGUSR1) as sigs:
                    async for sig in sigs:
                        if sig == signal.SIGUSR1:
                            log.info("%s", self.report())
                        else:
                            self.stop.set()
            nursery.start_soon(signals)
            nursery.start_soon(self.events)
            nursery.start_soon(self.timers)
            if self.hs is not None and self.peer is not None:
                self.apply(self.hs.start(self.now(), time.time(), self.peer))
            self.engine.start()
            await self.stop.wait()
            nursery.cancel_scope.cancel()


def open_network(opts) -> tuple[list[socket.socket], int, int, tuple[str, int] | None]:
    """The UDP socket(s): (sockets, udp fd, multicast fd, the peer to send to)."""
    peer = resolve(*opts.connect) if opts.connect else None
    if opts.mode in ("sealed", "plain"):
        bind = (opts.listen[0], opts.listen[1]) if opts.listen else ("", 0)
        s = udp_socket(bind)
        return [s], s.fileno(), -1, peer
    if opts.mode == "vxlan":
        s = udp_socket((opts.local or "", opts.udp_port) if not opts.group
                       else ("", opts.udp_port))
        if opts.group:
            join_group(s, opts.group, opts.local, opts.ttl, loop=False)
        return [s], s.fileno(), -1, None
    # vxvde: a multicast socket for the group, a unicast one that sends everything
    m = udp_socket((opts.group, opts.udp_port), reuse=True)
    join_group(m, opts.group, opts.local, opts.ttl, loop=True)
    u = udp_socket((opts.local or "", 0))
    u.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, opts.ttl)
    u.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, opts.ttl)
    if opts.local:
        u.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(opts.local))
    return [u, m], u.fileno(), m.fileno(), None


def main(argv: list[str] | None = None) -> int:
    try:
        opts = parse_args(sys.argv[1:] if argv is None else argv)
    except CableUsageError as e:
        return answer_usage(PROG, e, USAGE)
    if opts.mode == "genkey":
        return genkey(opts.genkey)
    logging.basicConfig(format=f"{PROG}: %(message)s", level=logging.INFO)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    conn = None
    socks: list[socket.socket] = []
    pidfile = None
    try:
        key = load_key(opts.key_file) if opts.mode == "sealed" else None
        socks, udp_fd, mcast_fd, peer = open_network(opts)
        conn = connect(switch_vnl(opts.sock or "", opts.port), describe(opts.descr))
        limit = max_frame(opts.mode, opts.path_mtu)
        engine = eng.Engine(opts.mode, conn.data.fileno(), udp_fd, limit,
                            watch_fd=conn.ctl.fileno(), mcast_fd=mcast_fd,
                            peer=peer if opts.mode == "plain" else None, vni=opts.vni or 0,
                            group=opts.group, udp_port=opts.udp_port or 0,
                            peers=tuple(resolve(p, 0)[0] for p in opts.peers))
        hs = None
        if opts.mode == "sealed":
            hs = Handshake(key, initiator=peer is not None, keepalive=opts.keepalive,
                           rand=os.urandom)
        if not opts.quiet:
            where = ", ".join(f"{s.getsockname()[0] or '*'}:{s.getsockname()[1]}" for s in socks)
            log.info("%s cable on UDP %s%s, frames up to %d bytes", opts.mode, where,
                     f" to {peer[0]}:{peer[1]}" if peer else "", limit)
        pidfile = PidFile(os.path.abspath(opts.pidfile)) if opts.pidfile else None
        if opts.daemon:
            daemonize(pidfile)              # the pid file is whole before the command returns
            setup_logging(True, PROG)       # syslog, as the switch's daemon
        elif pidfile:
            pidfile.write()
        try:
            trio.run(Cable(opts, engine, hs, peer, limit).run)
        finally:
            engine.stop()                       # joined before the sockets close
        return 0
    except (StartError, PlugError) as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"{PROG}: {e.filename + ': ' if e.filename else ''}{e.strerror}", file=sys.stderr)
        return 1
    except BaseExceptionGroup as eg:        # trio's: the first real error, in one line
        first = eg.exceptions[0]
        print(f"{PROG}: {first}", file=sys.stderr)
        return 1
    finally:
        for s in socks:
            s.close()
        if conn is not None:
            conn.close()
        if pidfile is not None:
            pidfile.remove()


if __name__ == "__main__":
    sys.exit(main())
