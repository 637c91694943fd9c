"""pyvde-slirp: a user-mode NAT router on a VDE network (like vde2's slirpvde).

    pyvde-slirp [-s SWITCH | -s - | -s tap://TAP [--netns PATH [--userns PATH]]]
                [-H 10.0.2.2/24] [-D] [-L hostport:guest:port] ...

Needs no privileges: guests reach the outside through this process's own sockets. A tap
needs the right to open it: root, its owner, or (--userns) the user namespace owning it.
"""
from __future__ import annotations

import logging
import os
import signal
import sys

import trio

from switchd.daemon import PidFile, daemonize
from switchd.usage import answer_usage

from .. import netns, tap
from ..vdeclient import PlugError, connect, describe
from ..vnl import Vde, default_switch
from .dns import Resolvers
from .net import Network
from .options import USAGE, SlirpUsageError, parse_args
from .router import Link, Router

PROG = "pyvde-slirp"
log = logging.getLogger(PROG)


def banner(opts, net: Network) -> str:
    lines = [f"Starting {PROG}: virtual_host={net.host}/{net.network.prefixlen}",
             f"{'DNS':<19}={net.dns}"]
    if opts.dhcp:
        lines.append(f"{'dhcp_start':<19}={net.dhcp_start}")
    if opts.tftp:
        lines.append(f"{'tftp prefix':<19}={opts.tftp}")
    if opts.tap:
        where = f" in {opts.netns}" if opts.netns else ""
        lines.append(f"{'tap':<19}={opts.tap}{where}")
    else:
        lines.append(f"{'vde switch':<19}={opts.sock or default_switch()}")
    for f in opts.tcp_forwards:
        lines.append(f"{'redir TCP':<19}={f.host_port}:{f.guest_addr}:{f.guest_port}")
    for f in opts.udp_forwards:
        lines.append(f"{'redir UDP':<19}={f.host_port}:{f.guest_addr}:{f.guest_port}")
    return "\n".join(lines) + "\n"


async def serve(router: Router) -> None:
    async with trio.open_nursery() as nursery:
        async def signals() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as s:
                async for _ in s:
                    nursery.cancel_scope.cancel()
        nursery.start_soon(signals)
        await router.run()
        nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    try:
        opts = parse_args(sys.argv[1:] if argv is None else argv)
    except SlirpUsageError as e:
        return answer_usage(PROG, e, USAGE)
    logging.basicConfig(format=f"{PROG}: %(message)s", level=logging.INFO)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        net = Network.from_text(opts.host, opts.dns, opts.dhcp_start, opts.mtu)
    except ValueError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    conn = None
    pidfile = None
    try:
        if opts.sock == "-":
            link = Link(None)
        elif opts.tap:
            tap_fd = netns.open_tap(opts.tap, opts.mtu, opts.netns, opts.userns)
            link = Link(None, tap_fd)
        else:
            vnl = Vde(opts.sock or default_switch(), opts.port)
            conn = connect(vnl, describe(PROG), opts.group, opts.mode)
            link = Link(conn.data)
        router = Router(opts, net, link, Resolvers(opts.resolv_conf))
        router.open_forwards()
        if not opts.quiet:
            sys.stderr.write(banner(opts, net))
        pidfile_path = os.path.abspath(opts.pidfile) if opts.pidfile else None
        pidfile = PidFile(pidfile_path) if pidfile_path else None   # removed only if written
        if opts.daemon:
            daemonize(pidfile)              # the pid file is whole before the command returns
        elif pidfile:
            pidfile.write()
        trio.run(serve, router)
        return 0
    except (PlugError, netns.NetnsError, tap.TapError) as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"{PROG}: {e.filename + ': ' if e.filename else ''}{e.strerror}", file=sys.stderr)
        return 1
    finally:
        if conn is not None:
            conn.close()
        if pidfile is not None:
            pidfile.remove()


if __name__ == "__main__":
    sys.exit(main())
