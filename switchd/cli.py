"""`pyvde-switch`: parse the command line, start the switch, run it, clean up.

Every start-up failure is one line on stderr and exit status 1; nothing is left behind.
"""
from __future__ import annotations

import logging
import resource
import sys

import trio

from . import options
from .control_socket import StartupError
from .daemon import PidFile, daemonize, hold_stop_signals, setup_logging
from .switch import Switch
from .usage import usage_error

PROG = "pyvde-switch"
log = logging.getLogger(PROG)


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> int:
    try:
        opts = options.parse(sys.argv[1:] if argv is None else argv)
    except options.UsageError as e:
        print(usage_error(PROG, str(e)), file=sys.stderr)
        return 1
    if opts.help:
        sys.stdout.write(options.USAGE)
        return 0
    if opts.version:
        print(f"{PROG} {options.VERSION} (VDE switch protocol compatible with vde_switch 2.3.2)")
        return 0
    if opts.taps:
        print(f"{PROG}: -t/--tap is not supported: attach a tap with pyvde-plug2tap or"
              " vde_plug2tap", file=sys.stderr)
        return 1
    setup_logging(False, PROG)
    if opts.fstp:
        log.warning("fast spanning tree (-F/--fstp) is not implemented; continuing without it")
    _raise_fd_limit()

    pidfile = PidFile(opts.pidfile) if opts.pidfile else None
    hold_stop_signals()
    try:
        switch = Switch(opts)
        switch.open()
    except (StartupError, OSError, ValueError) as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    try:
        # Before daemonizing: failures reach stderr and exit 1, relative paths work.
        switch.load_rcfile()
        switch.start_captures()
    except StartupError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        switch.close()
        return 1
    try:
        try:
            if opts.daemon:         # the pid file is whole before the command returns
                daemonize(pidfile)
                setup_logging(True, PROG)
            elif pidfile:
                pidfile.write()
        except OSError as e:
            raise StartupError(f"cannot write pid file {pidfile.path}: {e.strerror}") from None
        log.info("switch ready on %s (%d ports)", switch.control.directory, opts.numports)
        trio.run(switch.run)
    except StartupError as e:
        log.error("%s", e)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        switch.close()
        if pidfile:
            pidfile.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
