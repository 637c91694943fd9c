"""pyvde-plug: vde_plug's three forms (vde-protocol.md §3.2), with a C frame pump.

    pyvde-plug [OPTIONS] [VNL]                      VNL <-> stdin/stdout (2-byte length records)
    pyvde-plug [OPTIONS] VNL1 VNL2                  a cable between two networks
    pyvde-plug [OPTIONS] [VNL] = COMMAND [ARG...]   the stream through COMMAND's stdin/stdout
"""
from __future__ import annotations

import argparse
import re
import socket
import subprocess
import sys

from switchd.usage import usage_error

from . import ends
from .runner import Runner, maxframe_for
from .vdeclient import PlugError, describe

PROG = "pyvde-plug"


def _octal(text: str) -> int:
    if not re.fullmatch(r"[0-7]{1,4}", text):
        raise argparse.ArgumentTypeError(f"'{text}' is not an octal mode like 0660")
    return int(text, 8)


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"'{text}' is not a port number")
    return int(text)


def _maxframe(text: str) -> int:
    if not text.isdigit() or not 14 <= int(text) <= 65550:
        raise argparse.ArgumentTypeError(f"'{text}' is not a frame size of 14..65550 bytes")
    return int(text)


class Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, usage_error(self.prog, message) + "\n")


def parser() -> argparse.ArgumentParser:
    p = Parser(prog=PROG, description="Plug a VDE network into a stream, a command or another"
               " network (like vde_plug).", usage="%(prog)s [OPTIONS] [VNL [VNL2]] [= COMMAND"
               " [ARG...]]")
    p.add_argument("vnls", nargs="*", metavar="VNL",
                   help="vde://DIR[PORT], DIR, tap://IF, udp://[SRC:]SPORT->DST:DPORT, ptp://PATH,"
                        " null:// (default: the default switch)")
    p.add_argument("-d", "--daemon", action="store_true", help="run in the background")
    p.add_argument("-p", "--pidfile", help="write the process id to FILE")
    p.add_argument("-g", "--group", help="group of the data socket (first VNL)")
    p.add_argument("-G", "--group2", help="group of the data socket (second VNL)")
    p.add_argument("-m", "--mod", type=_octal, help="mode of the data socket (first VNL)")
    p.add_argument("-M", "--mod2", type=_octal, help="mode of the data socket (second VNL)")
    p.add_argument("--port", type=_port, help="switch port (first VNL; or write DIR[N])")
    p.add_argument("--port2", type=_port, help="switch port (second VNL)")
    p.add_argument("-D", "--descr", default="vdeplug:", help="description the switch shows")
    p.add_argument("-l", "--log", action="store_true", help="accepted for compatibility")
    p.add_argument("-L", "--iplog", action="store_true", help="accepted for compatibility")
    p.add_argument("--reconnect", action="store_true",
                   help="when a switch goes away, reconnect when it comes back")
    p.add_argument("--maxframe", type=_maxframe,
                   help="largest frame, 14..65550 (default 9234, more for a tap's large MTU)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command: list[str] | None = None
    if "=" in argv:
        i = argv.index("=")
        argv, command = argv[:i], argv[i + 1:]
        if not command:
            print(f"{PROG}: '=' must be followed by a command", file=sys.stderr)
            return 2
    args = parser().parse_intermixed_args(argv)
    if len(args.vnls) > (1 if command is not None else 2):
        print(f"{PROG}: too many VNLs: {' '.join(args.vnls)}", file=sys.stderr)
        return 2
    runner = Runner(PROG)
    if args.daemon:
        runner.fork_daemon()                    # before describe(): the pid the switch shows
    description = describe(args.descr)
    opened: list[ends.Opened] = []
    child = None
    try:
        vnl1 = args.vnls[0] if args.vnls else ""
        opened.append(ends.open_vnl(vnl1, description, args.group, args.mod, args.port))
        if len(args.vnls) == 2:
            opened.append(ends.open_vnl(args.vnls[1], description, args.group2, args.mod2,
                                        args.port2))
        elif command is not None:
            mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                child = subprocess.Popen(command, stdin=theirs, stdout=theirs)
            except OSError as e:
                raise PlugError(f"{command[0]}: {e.strerror}") from None
            finally:
                theirs.close()
            opened.append(ends.Opened(ends.pump.End(ends.pump.STREAM, mine.fileno(),
                                                    mine.fileno(), name=command[0]),
                                      closers=[mine.close]))
        else:
            opened.append(ends.open_stdio())
        maxframe = maxframe_for(opened, args.maxframe)
        pidfile = runner.detach(args.daemon, args.pidfile)
    except (PlugError, OSError) as e:
        status = runner.fail(opened, e)         # closes the command's end of the stream
        end_child(child, 0)
        return status

    try:
        return runner.loop(opened[0], opened[1], maxframe, args.reconnect)
    finally:
        for o in opened:
            o.close()
        end_child(child, 5)
        if pidfile:
            pidfile.remove()


def end_child(child: subprocess.Popen | None, grace: float) -> None:
    """The `=` command, its stream closed: waited for `grace` seconds, then killed."""
    if child is None:
        return
    try:
        child.wait(grace)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


if __name__ == "__main__":
    sys.exit(main())
