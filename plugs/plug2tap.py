"""pyvde-plug2tap: a switch port joined to a Linux tap device (like vde_plug2tap).

    pyvde-plug2tap [-s SOCK] [-p PORT] [-g GROUP] [-m MODE] [-d] [-P PIDFILE]
                   [--mtu N] [--up] [--reconnect] TAP

`-s -` joins the tap to the stream on stdin/stdout instead of a switch
(`dpipe vde_plug = ssh host pyvde-plug2tap -s - tap0`).
"""
from __future__ import annotations

import sys

from . import ends, tap
from .plug import Parser, _maxframe, _octal, _port
from .runner import Runner, maxframe_for
from .vdeclient import PlugError, describe

PROG = "pyvde-plug2tap"


def parser() -> Parser:
    p = Parser(prog=PROG, description="Join a VDE switch and a Linux tap interface"
               " (like vde_plug2tap).")
    p.add_argument("tap", metavar="TAP", help="tap interface name (attached or created)")
    p.add_argument("-s", "--sock", default="",
                   help="switch control directory or VNL (default: the default switch);"
                        " '-' for a stream on stdin/stdout")
    p.add_argument("-p", "--port", type=_port, help="switch port")
    p.add_argument("-g", "--group", help="group of the data socket")
    p.add_argument("-m", "--mod", "--mode", dest="mod", type=_octal,
                   help="mode of the data socket")
    p.add_argument("-d", "--daemon", action="store_true", help="run in the background")
    p.add_argument("-P", "--pidfile", help="write the process id to FILE")
    p.add_argument("--mtu", type=int, help=f"set the tap's MTU (68..{tap.MAX_MTU})")
    p.add_argument("--up", action="store_true", help="bring the tap up")
    p.add_argument("--reconnect", action="store_true",
                   help="when the switch goes away, reconnect when it comes back")
    p.add_argument("--maxframe", type=_maxframe,
                   help="largest frame (default: 9234, or the tap's MTU + 18 if larger)")
    p.add_argument("-D", "--descr", default=f"{PROG}:", help="description the switch shows")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    runner = Runner(PROG)
    if args.daemon:
        runner.fork_daemon()                    # before describe(): the pid the switch shows
    opened: list[ends.Opened] = []
    description = describe(args.descr)
    pidfile = None
    try:
        if args.mtu is not None and not 68 <= args.mtu <= tap.MAX_MTU:
            raise PlugError(f"--mtu {args.mtu}: out of range (68..{tap.MAX_MTU})")
        if args.sock == "-":
            opened.append(ends.open_stdio())
        else:
            opened.append(ends.open_vnl(args.sock, description, args.group, args.mod,
                                        args.port))
        try:
            tap_vnl = ends.vnl.parse(f"tap://{args.tap}")
        except ends.vnl.VnlError:
            raise PlugError(f"'{args.tap}' is not a tap interface name (1..15 bytes, no '/')"
                            ) from None
        opened.append(ends.open_tap(tap_vnl, args.mtu, args.up))
        maxframe = maxframe_for(opened, args.maxframe)
        pidfile = runner.detach(args.daemon, args.pidfile)
    except (PlugError, OSError) as e:
        return runner.fail(opened, e)

    try:
        return runner.loop(opened[0], opened[1], maxframe, args.reconnect)
    finally:
        for o in opened:
            o.close()
        if pidfile:
            pidfile.remove()


if __name__ == "__main__":
    sys.exit(main())
