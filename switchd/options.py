"""pyvde-switch's command line: vde_switch's options, defaults and spellings (§5.1).

Pure: turns argv into an Options value or raises UsageError with a one-line message.
Parsing follows getopt_long_only, as vde_switch does, so the man page's single-dash
spellings (`-sock DIR`, `-hub`, `-numports 8`) work beside `-s DIR` and `--sock=DIR`.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

VERSION = "0.1.0"
DEFAULT_NUMPORTS = 32
DEFAULT_MAXFRAME = 9234       # vdeplug4's VDE_ETHBUFSIZE: a 9216-byte MTU + header + tag
MAX_MAXFRAME = 65550          # a 65535-byte payload + header + tag
MAX_NUMPORTS = 65535
DEFAULT_HANDSHAKE_TIMEOUT = 5.0


class UsageError(Exception):
    """A bad command line; the message names the option and what is wrong."""


@dataclass
class Options:
    sock: str = ""
    numports: int = DEFAULT_NUMPORTS
    hub: bool = False
    fstp: bool = False
    macaddr: bytes | None = None
    priority: int = 0x8000
    hashsize: int = 128
    mode: int | None = None
    dirmode: int | None = None
    group: str | None = None
    daemon: bool = False
    pidfile: str | None = None
    rcfile: str | None = None
    mgmt: str | None = None
    mgmtmode: int = 0o600
    mgmtgroup: str | None = None
    nostdin: bool = False
    maxframe: int = DEFAULT_MAXFRAME
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    taps: list[str] = field(default_factory=list)
    captures: list[tuple[int, str]] = field(default_factory=list)   # --capture PORT:FILE
    help: bool = False
    version: bool = False


# (long names, short letter, takes an argument, destination)
_SPEC: list[tuple[tuple[str, ...], str | None, bool, str]] = [
    (("help",), "h", False, "help"),
    (("version",), "v", False, "version"),
    (("numports",), "n", True, "numports"),
    (("hub",), "x", False, "hub"),
    (("fstp",), "F", False, "fstp"),
    (("macaddr",), None, True, "macaddr"),
    (("priority",), None, True, "priority"),
    (("hashsize",), None, True, "hashsize"),
    (("sock", "vdesock", "unix"), "s", True, "sock"),
    (("mode", "mod"), "m", True, "mode"),
    (("dirmode",), None, True, "dirmode"),
    (("group",), "g", True, "group"),
    (("daemon",), "d", False, "daemon"),
    (("pidfile",), "p", True, "pidfile"),
    (("rcfile",), "f", True, "rcfile"),
    (("mgmt",), "M", True, "mgmt"),
    (("mgmtmode",), None, True, "mgmtmode"),
    (("mgmtgroup",), None, True, "mgmtgroup"),
    (("debugclients",), "D", True, "debugclients"),
    (("tap",), "t", True, "tap"),
    (("nostdin",), None, False, "nostdin"),
    (("maxframe",), None, True, "maxframe"),
    (("handshake-timeout",), None, True, "handshake_timeout"),
    (("capture",), None, True, "capture"),
]
_LONG = {name: spec for spec in _SPEC for name in spec[0]}
_SHORT = {spec[1]: spec for spec in _SPEC if spec[1]}


def default_sock() -> str:
    return "/var/run/vde.ctl" if os.geteuid() == 0 else "/tmp/vde.ctl"


def _int(opt: str, text: str, lo: int, hi: int) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise UsageError(f"option {opt}: '{text}' is not a number") from None
    if not lo <= value <= hi:
        raise UsageError(f"option {opt}: {value} is out of range ({lo}..{hi})")
    return value


def _octal(opt: str, text: str) -> int:
    if not re.fullmatch(r"[0-7]{1,5}", text):
        raise UsageError(f"option {opt}: '{text}' is not an octal mode like 0660")
    value = int(text, 8)
    if value > 0o7777:
        raise UsageError(f"option {opt}: mode {text} is out of range (at most 07777)")
    return value


def parse_mac(text: str) -> bytes:
    """'xx:xx:xx:xx:xx:xx' or 'xx.xx.xx.xx.xx.xx' (hex), as vde_switch accepts."""
    parts = re.split(r"[:.]", text)
    if len(parts) != 6 or not all(re.fullmatch(r"[0-9a-fA-F]{1,2}", p) for p in parts):
        raise ValueError(f"'{text}' is not a MAC address like 02:00:00:00:00:01")
    return bytes(int(p, 16) for p in parts)


def _store(opts: Options, dest: str, opt: str, value: str | None) -> None:
    if dest in ("help", "version", "hub", "fstp", "daemon", "nostdin"):
        setattr(opts, dest, True)
    elif dest == "numports":
        opts.numports = _int(opt, value, 1, MAX_NUMPORTS)
    elif dest == "hashsize":
        opts.hashsize = _int(opt, value, 1, 1 << 20)
    elif dest == "priority":
        opts.priority = _int(opt, value, 0, 0xFFFFFFFF) & 0xFFFF
    elif dest == "maxframe":
        opts.maxframe = _int(opt, value, 14, MAX_MAXFRAME)
    elif dest == "handshake_timeout":
        try:
            opts.handshake_timeout = float(value)
        except ValueError:
            raise UsageError(f"option {opt}: '{value}' is not a number of seconds") from None
        if not 0 < opts.handshake_timeout <= 3600:
            raise UsageError(f"option {opt}: must be more than 0 and at most 3600 seconds")
    elif dest == "macaddr":
        try:
            opts.macaddr = parse_mac(value)
        except ValueError as e:
            raise UsageError(f"option {opt}: {e}") from None
    elif dest in ("mode", "dirmode", "mgmtmode"):
        setattr(opts, dest, _octal(opt, value))
    elif dest == "tap":
        opts.taps.append(value)
    elif dest == "capture":
        port, sep, path = value.partition(":")
        if not sep or not path or not port.isdigit():
            raise UsageError(f"option {opt}: '{value}' is not PORT:FILE (e.g. 1:/tmp/port1.pcap)")
        opts.captures.append((int(port), path))
    elif dest == "debugclients":
        pass  # vde_switch parses it and ignores it
    elif dest in ("sock", "group", "pidfile", "rcfile", "mgmt", "mgmtgroup"):
        if value == "":
            raise UsageError(f"option {opt}: needs a non-empty value")
        setattr(opts, dest, value)
    else:  # pragma: no cover - every _SPEC destination is handled above
        raise AssertionError(dest)


def _match_long(name: str) -> tuple | None:
    """Exact long name, else the one long option it is an unambiguous prefix of."""
    if name in _LONG:
        return _LONG[name]
    hits = {_LONG[n] for n in _LONG if n.startswith(name)}
    if len(hits) > 1:
        names = ", ".join(sorted("--" + s[0][0] for s in hits))
        raise UsageError(f"option '{name}' is ambiguous ({names})")
    return hits.pop() if hits else None


def parse(argv: list[str]) -> Options:
    opts = Options()
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            if i < len(argv):
                raise UsageError(f"unexpected argument '{argv[i]}'")
            break
        if not arg.startswith("-") or arg == "-":
            raise UsageError(f"unexpected argument '{arg}'")
        double = arg.startswith("--")
        body = arg[2:] if double else arg[1:]
        name, eq, inline = body.partition("=")
        spec = None
        # getopt_long_only: "-x" where x is a short option stays short; else try long first.
        if double or len(body) > 1 or body not in _SHORT:
            spec = _match_long(name)
            if spec is None and double:
                raise UsageError(f"unknown option '--{name}'")
        if spec is not None:
            longs, _, takes, dest = spec
            opt = "--" + longs[0]
            if takes:
                if eq:
                    value = inline
                elif i < len(argv):
                    value = argv[i]
                    i += 1
                else:
                    raise UsageError(f"option {opt} needs a value")
            else:
                if eq:
                    raise UsageError(f"option {opt} takes no value")
                value = None
            _store(opts, dest, opt, value)
            continue
        # a cluster of short options: -xd, -n8, -s/tmp/sw
        j = 0
        while j < len(body):
            letter = body[j]
            j += 1
            if letter not in _SHORT:
                raise UsageError(f"unknown option '-{letter}'")
            longs, _, takes, dest = _SHORT[letter]
            opt = f"-{letter}"
            if takes:
                if j < len(body):
                    value = body[j:]
                elif i < len(argv):
                    value = argv[i]
                    i += 1
                else:
                    raise UsageError(f"option {opt} needs a value")
                _store(opts, dest, opt, value)
                break
            _store(opts, dest, opt, None)
    if not opts.sock:
        opts.sock = default_sock()
    return opts


USAGE = f"""\
Usage: pyvde-switch [OPTIONS]
A VDE-compatible Ethernet switch (pyvde {VERSION}); clients: QEMU, vde_plug, vde_plug2tap...

  -s, --sock DIR            control directory (default /var/run/vde.ctl as root, else /tmp/vde.ctl)
  -n, --numports N          number of ports: 1..N for clients, plus port 0 (default 32)
  -x, --hub                 hub mode: every frame goes to every other port
  -m, --mode OCTAL          mode of the ctl and data sockets (default 0600)
      --dirmode OCTAL       mode of the control directory (default 02700)
  -g, --group NAME          group owner of the directory and sockets
  -d, --daemon              run in the background, log to syslog
  -p, --pidfile FILE        write the process id to FILE
  -f, --rcfile FILE         run console commands from FILE at start
                            (default ~/.vde2/vde_switch.rc, else /etc/vde2/vde_switch.rc)
  -M, --mgmt PATH           management console socket (unixterm, vdeterm, pyvde-ctl)
      --mgmtmode OCTAL      its mode (default 0600)
      --mgmtgroup NAME      its group
      --hashsize N          MAC table buckets (default 128; rounded up to a power of two)
      --macaddr MAC         the switch's own MAC address (default 00:ff + 4 random bytes)
      --maxframe BYTES      largest frame forwarded, 14..65550 (default 9234)
      --handshake-timeout S close control connections silent for S seconds (default 5)
      --nostdin             no console on standard input
      --capture PORT:FILE   write a pcap file of PORT's traffic from the start (repeatable)
  -F, --fstp, --priority N  accepted for compatibility; spanning tree is not implemented
  -D, --debugclients N      accepted for compatibility; no effect
  -v, --version             print the version and exit
  -h, --help                print this help and exit
Long options may also be written with one dash (-sock DIR, -hub), as vde_switch allows.
"""
