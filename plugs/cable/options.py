"""pyvde-cable's command line (cable-spec.md, "Command line"), pure: argv in, CableOptions
out, or CableUsageError with one line naming the option.

Modes, exactly one: sealed (--key FILE, the handshake of handshake.py), --plain (one
frame per datagram, vdeplug4's udp://), --vxlan VNI, --vxvde [VNI]; and the subcommand
`genkey FILE` (first and alone: `pyvde-cable genkey FILE`).

Choices where the spec is silent:
* an option given twice: the last one wins (argparse), except --peer, which collects; a
  --peer given twice is an error.
* --peer goes only with --vxlan (VXVDE is multicast only, its usage line has no --peer);
  --listen/--connect only with sealed and plain; --udp-port, --local and --ttl only with
  --vxlan/--vxvde; --keepalive only with sealed.
* --listen: `PORT` or `ADDR:PORT`, ADDR a dotted-quad IPv4 address ("" in the result
  means any); port 0 is refused (a listener on an ephemeral port is of no use).
* HOST (--connect, --peer): a dotted-quad IPv4 address or a host name (letters, digits,
  '-', '_', dots; a name whose last label is all digits must be an IPv4 address, so
  "1.2.3" and "300.1.1.1" are refused rather than handed to inet_aton's shorthands).
* --keepalive: seconds, a decimal number 0..65535 (0: no keepalives).
* --ttl: 0..255; --group: an IPv4 multicast address (224.0.0.0/4).
* the key file's mode: like ssh, any group/others permission bit gives the warning.
"""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from ipaddress import AddressValueError, IPv4Address

from ..getopt_values import glue_values

PROG = "pyvde-cable"

KEY_SIZE = 32
PATH_MTU_MIN, PATH_MTU_MAX = 576, 65535
VNI_MAX = (1 << 24) - 1
VXLAN_PORT, VXVDE_PORT = 4789, 14789
MAX_PEERS = 32                  # --peer VTEPs (each flood is a datagram to every one)
VXVDE_GROUP = "239.0.0.1"
IPV4_UDP = 20 + 8
OVERHEAD = {"plain": 0, "sealed": 13 + 16, "vxlan": 8, "vxvde": 8}

USAGE = f"""\
Usage: {PROG} genkey FILE
       {PROG} [-s SWITCH] --listen [ADDR:]PORT [--connect HOST:PORT] (--key FILE | --plain)
       {PROG} [-s SWITCH] --connect HOST:PORT [--listen [ADDR:]PORT] (--key FILE | --plain)
       {PROG} [-s SWITCH] --vxlan VNI [--peer HOST]... [--group MADDR] [--udp-port N]
       {PROG} [-s SWITCH] --vxvde [VNI] [--group MADDR] [--udp-port N]

A cable from a VDE switch to a UDP peer: sealed (ChaCha20-Poly1305 with a pre-shared
key), plain (one frame per datagram, vdeplug4's udp://), VXLAN or VXVDE.

  genkey FILE             write a new key (32 random bytes, mode 0600; never overwrites)
      --key FILE          sealed mode with the key in FILE (made by genkey)
      --plain             plain mode: no header, no encryption
      --vxlan VNI         VXLAN (RFC 7348), VNI 0..{VNI_MAX}; needs --peer or --group
      --vxvde [VNI]       VXVDE: VXLAN on a multicast group (VNI default 1)
      --listen [ADDR:]PORT  sealed/plain: receive on this UDP port (ADDR: IPv4)
      --connect HOST:PORT sealed/plain: the peer (sealed: this side starts handshakes)
      --peer HOST         vxlan: a VTEP to flood to (repeatable)
      --group MADDR       vxlan/vxvde: multicast group (vxvde default {VXVDE_GROUP})
      --udp-port N        vxlan/vxvde: UDP port (default {VXLAN_PORT}, vxvde {VXVDE_PORT})
      --local ADDR        vxlan/vxvde: local address to bind, multicast interface
      --ttl N             vxlan/vxvde: multicast TTL, 0..255 (default 1)
      --path-mtu N        the underlay's IP MTU, {PATH_MTU_MIN}..{PATH_MTU_MAX} (default 1500)
      --keepalive SECONDS sealed: keepalive interval (default 5; 0: none)
  -s, --sock SWITCH       the switch directory or VNL (default: the default switch)
  -p, --port N            port to ask for on the switch
  -D, --descr TEXT        description the switch shows (default {PROG})
  -d, --daemon            run in the background, log to syslog
  -P, --pidfile FILE      write the process id to FILE
  -q, --quiet             no start-up banner
  -h, --help              this help
"""


class CableUsageError(Exception):
    """str() is one line: the option and what is wrong with it ("help" for -h)."""


@dataclass
class CableOptions:
    mode: str = "sealed"                # sealed | plain | vxlan | vxvde | genkey
    sock: str | None = None             # None: the default switch
    port: int | None = None             # the switch port; None: any
    descr: str = PROG
    listen: tuple[str, int] | None = None   # (addr, port); addr "" = any
    connect: tuple[str, int] | None = None  # (host, port); host not resolved
    key_file: str | None = None
    vni: int | None = None
    peers: list[str] = field(default_factory=list)
    group: str | None = None
    udp_port: int | None = None
    local: str | None = None
    ttl: int = 1
    path_mtu: int = 1500
    keepalive: float = 5.0
    daemon: bool = False
    pidfile: str | None = None
    quiet: bool = False
    genkey: str | None = None           # genkey FILE: the file to write

    def __post_init__(self) -> None:
        if self.genkey is not None:
            self.mode = "genkey"


def max_frame(mode: str, path_mtu: int) -> int:
    """The largest Ethernet frame one IPv4 datagram of path MTU `path_mtu` carries."""
    if mode not in OVERHEAD:
        raise ValueError(f"mode {mode!r} carries no frames")
    return path_mtu - IPV4_UDP - OVERHEAD[mode]


def read_key(data: bytes, mode_bits: int) -> tuple[bytes, str | None]:
    """The key from a key file's bytes and st_mode: (key, a warning or None). ValueError
    (one line) unless the file holds exactly 32 bytes."""
    if len(data) != KEY_SIZE:
        raise ValueError(f"the key file holds {len(data)} bytes, not {KEY_SIZE}"
                         f" (make one with: {PROG} genkey FILE)")
    warning = None
    if mode_bits & 0o077:
        warning = (f"the key file's permissions {mode_bits & 0o777:04o} are too open"
                   " (group/others have access); chmod 600 it")
    return bytes(data), warning


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise CableUsageError(message.replace("argument ", "option ", 1))


def _parser() -> _Parser:
    p = _Parser(prog=PROG, add_help=False, allow_abbrev=False)
    p.add_argument("-s", "--sock")
    p.add_argument("-p", "--port")
    p.add_argument("-D", "--descr")
    p.add_argument("--key")
    p.add_argument("--plain", action="store_true")
    p.add_argument("--vxlan")
    p.add_argument("--vxvde", nargs="?", const="1")
    p.add_argument("--listen")
    p.add_argument("--connect")
    p.add_argument("--peer", action="append", default=[])
    p.add_argument("--group")
    p.add_argument("--udp-port", dest="udp_port")
    p.add_argument("--local")
    p.add_argument("--ttl")
    p.add_argument("--path-mtu", dest="path_mtu")
    p.add_argument("--keepalive")
    p.add_argument("-d", "--daemon", action="store_true")
    p.add_argument("-P", "--pidfile")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("rest", nargs="*")
    return p


_TAKES_VALUE = frozenset((
    "-s", "--sock", "-p", "--port", "-D", "--descr", "--key", "--vxlan", "--listen",
    "--connect", "--peer", "--group", "--udp-port", "--local", "--ttl", "--path-mtu",
    "--keepalive", "-P", "--pidfile"))


def _glue_values(argv: list[str]) -> list[str]:
    """An option's value may start with '-' (`-D -x-`, `-P -odd.pid`), as with getopt."""
    return glue_values(argv, _TAKES_VALUE)


# option -> (its argparse dest, the modes it goes with, the error otherwise)
_ONLY_WITH = {
    "--listen": ("listen", ("sealed", "plain"), "only with --key or --plain"),
    "--connect": ("connect", ("sealed", "plain"), "only with --key or --plain"),
    "--keepalive": ("keepalive", ("sealed",), "only with --key (sealed mode)"),
    "--peer": ("peer", ("vxlan",), "only with --vxlan"),
    "--group": ("group", ("vxlan", "vxvde"), "only with --vxlan or --vxvde"),
    "--udp-port": ("udp_port", ("vxlan", "vxvde"), "only with --vxlan or --vxvde"),
    "--local": ("local", ("vxlan", "vxvde"), "only with --vxlan or --vxvde"),
    "--ttl": ("ttl", ("vxlan", "vxvde"), "only with --vxlan or --vxvde"),
}


def parse_args(argv: list[str]) -> CableOptions:
    if argv[:1] == ["genkey"]:
        return _genkey(argv[1:])
    ns = _parser().parse_intermixed_args(_glue_values(argv))
    if ns.help:
        raise CableUsageError("help")
    if ns.rest:
        raise CableUsageError(_stray(ns.rest[0]))
    mode = _mode(ns)
    for option, (dest, modes, message) in _ONLY_WITH.items():
        if getattr(ns, dest) not in (None, []) and mode not in modes:
            raise CableUsageError(f"option {option}: {message}")
    o = CableOptions(mode=mode, sock=ns.sock, daemon=ns.daemon, pidfile=ns.pidfile,
                     quiet=ns.quiet, key_file=ns.key)
    if ns.descr is not None:
        o.descr = ns.descr
    if ns.port is not None:
        o.port = _number("--port", ns.port, 0, 65535, "a port number")
    if ns.path_mtu is not None:
        o.path_mtu = _number("--path-mtu", ns.path_mtu, PATH_MTU_MIN, PATH_MTU_MAX)
    if mode in ("sealed", "plain"):
        _endpoints(o, ns)
    else:
        _overlay(o, ns)
    return o


def _genkey(args: list[str]) -> CableOptions:
    if args[:1] in (["-h"], ["--help"]):
        raise CableUsageError("help")
    if len(args) != 1 or not args[0]:
        raise CableUsageError(f"genkey: give exactly one FILE to write the key to: {PROG}"
                              " genkey FILE")
    return CableOptions(genkey=args[0])


def _stray(arg: str) -> str:
    if arg == "genkey":
        return f"genkey: comes first and alone: {PROG} genkey FILE"
    return f"unexpected argument '{arg}' (the switch is given with -s)"


def _mode(ns) -> str:
    given = [(option, mode) for option, mode, value in (
        ("--key", "sealed", ns.key), ("--plain", "plain", ns.plain or None),
        ("--vxlan", "vxlan", ns.vxlan), ("--vxvde", "vxvde", ns.vxvde)) if value is not None]
    if not given:
        raise CableUsageError("no mode: give --key FILE, --plain, --vxlan VNI or --vxvde")
    if len(given) > 1:
        raise CableUsageError(f"option {given[1][0]}: only one mode, and {given[0][0]}"
                              " is given too")
    if ns.key == "":
        raise CableUsageError("option --key: the key FILE is empty")
    return given[0][1]


def _endpoints(o: CableOptions, ns) -> None:
    if ns.listen is None and ns.connect is None:
        option = "--key" if o.mode == "sealed" else "--plain"
        raise CableUsageError(f"option {option}: needs --listen or --connect (or both)")
    if ns.listen is not None:
        o.listen = _listen(ns.listen)
    if ns.connect is not None:
        o.connect = _connect(ns.connect)
    if ns.keepalive is not None:
        o.keepalive = _seconds("--keepalive", ns.keepalive)


def _overlay(o: CableOptions, ns) -> None:
    if o.mode == "vxlan":
        o.vni = _number("--vxlan", ns.vxlan, 0, VNI_MAX, "a VNI")
        if not ns.peer and ns.group is None:
            raise CableUsageError("option --vxlan: needs --peer or --group (or both)")
        o.udp_port = VXLAN_PORT
    else:
        o.vni = _number("--vxvde", ns.vxvde, 0, VNI_MAX, "a VNI")
        o.group, o.udp_port = VXVDE_GROUP, VXVDE_PORT
    if len(ns.peer) > MAX_PEERS:
        raise CableUsageError(f"option --peer: at most {MAX_PEERS} peers (use --group for"
                              " more)")
    for peer in ns.peer:
        if peer in o.peers:
            raise CableUsageError(f"option --peer: '{peer}' is given twice")
        o.peers.append(_host("--peer", peer, peer))
    if ns.group is not None:
        o.group = _multicast(ns.group)
    if ns.udp_port is not None:
        o.udp_port = _number("--udp-port", ns.udp_port, 1, 65535)
    if ns.local is not None:
        o.local = _ipv4("--local", ns.local, ns.local)
    if ns.ttl is not None:
        o.ttl = _number("--ttl", ns.ttl, 0, 255)


def _number(option: str, text: str, low: int, high: int, what: str = "") -> int:
    if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
        what = f"{what} ({low}..{high})" if what else f"{low}..{high}"
        raise CableUsageError(f"option {option}: '{text}' is not {what}")
    return int(text)


def _seconds(option: str, text: str) -> float:
    value = float(text) if re.fullmatch(r"[0-9]+(\.[0-9]*)?|\.[0-9]+", text) else -1.0
    if not 0 <= value <= 65535:
        raise CableUsageError(f"option {option}: '{text}' is not a number of seconds"
                              " (0..65535)")
    return value


def _ipv4(option: str, text: str, whole: str) -> str:
    try:
        return str(IPv4Address(text))
    except AddressValueError:
        where = f" in '{whole}'" if whole != text else ""
        raise CableUsageError(f"option {option}: '{text}'{where} is not an IPv4"
                              " address") from None


_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def _host(option: str, text: str, whole: str) -> str:
    """An IPv4 address or a host name (resolved later, by main.py)."""
    labels = text[:-1].split(".") if text.endswith(".") else text.split(".")
    is_name = (len(text) <= 253 and all(_LABEL.fullmatch(label) for label in labels)
               and not labels[-1].isdigit())
    if is_name:
        return text
    try:
        return str(IPv4Address(text))
    except AddressValueError:
        where = f" in '{whole}'" if whole != text else ""
        raise CableUsageError(f"option {option}: '{text}'{where} is not an IPv4 address"
                              " or a host name") from None


def _port_of(option: str, text: str, whole: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 65535:
        raise CableUsageError(f"option {option}: port '{text}' in '{whole}' is not"
                              " 1..65535")
    return int(text)


def _listen(text: str) -> tuple[str, int]:
    addr, sep, port = text.rpartition(":")
    if sep and not addr:
        raise CableUsageError(f"option --listen: '{text}' is not [ADDR:]PORT")
    port_number = _port_of("--listen", port, text)
    return (_ipv4("--listen", addr, text) if sep else ""), port_number


def _connect(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise CableUsageError(f"option --connect: '{text}' is not HOST:PORT")
    port_number = _port_of("--connect", port, text)
    return _host("--connect", host, text), port_number


def _multicast(text: str) -> str:
    try:
        addr = IPv4Address(text)
    except AddressValueError:
        addr = None
    if addr is None or not addr.is_multicast:
        raise CableUsageError(f"option --group: '{text}' is not an IPv4 multicast address"
                              " (224.0.0.0/4)")
    return str(addr)


__all__ = ["PROG", "USAGE", "CableOptions", "CableUsageError", "max_frame", "parse_args",
           "read_key"]
