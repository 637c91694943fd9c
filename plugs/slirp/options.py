"""pyvde-slirp's command line: slirpvde's options (research §1.1, vde-protocol.md §8.1),
pure: argv in, SlirpOptions out, or SlirpUsageError with one line naming the option.

getopt spellings are kept: `-D` takes no argument and `--dhcp[=START]` takes one only
after '='; `-s -` (or `-` as the argument) is the record stream on stdin/stdout. `-P` is
accepted as well as `--port` (slirpvde only had the long form). Ours: --mtu, --resolv-conf,
`-s tap://NAME` (a tap instead of a switch, as vdeplug4 spells it) with --netns and
--userns (the tap is in that namespace: slirp4netns's set-up).
"""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from ipaddress import AddressValueError, IPv4Address

from ..getopt_values import glue_values
from .net import MTU_MAX, MTU_MIN, Network

PROG = "pyvde-slirp"

USAGE = f"""\
Usage: {PROG} [OPTIONS] [SWITCH_DIR | - | tap://TAP]
       {PROG} [-s SWITCH_DIR | -] [-H ADDR[/LEN]] [-N DNS] [-D | --dhcp[=START]]
         [-L hostport:guestaddr:guestport]... [-U hostport:guestaddr:guestport]...
         [-t TFTP_DIR] [-p PIDFILE] [-d] [-q] [--port N] [-g GROUP] [-m MODE]

A user-mode NAT router (IPv4) on a VDE network, like slirpvde.

  -s, --sock, --socket, --vdesock, --unix DIR
                          the switch (default: the default switch); '-' speaks the
                          record stream on stdin/stdout; tap://TAP uses that tap
                          (made if missing) instead of a switch
      --netns PATH        tap://: the tap is in this network namespace
                          (/run/netns/NAME, /proc/PID/ns/net)
      --userns PATH       tap://: enter this user namespace first (the one that owns
                          the network namespace: rootless containers)
  -H, --host ADDR[/LEN]   router address and prefix (default 10.0.2.2/24); a host part
                          of 0 names the network and the router is host 2
  -n, --network ADDR[/LEN]  the same as -H
  -N, --dns, --nameserver ADDR  the DNS address (default host 3)
  -D, --dhcp[=START]      run the DHCP server (16 addresses from host 15 or START)
  -L hostport:guestaddr:guestport  forward a host TCP port to a guest (repeatable)
  -U hostport:guestaddr:guestport  forward a host UDP port to a guest (repeatable)
  -t, --tftp DIR          read-only TFTP server on the router address
  -p, --pidfile FILE      write the process id to FILE
  -d, --daemon            run in the background, log to syslog
  -q, --quiet             no start-up banner
  -P, --port N            port to ask for on the switch
  -g, --group GROUP       group of the data socket
  -m, --mod MODE          mode (octal) of the data socket
      --mtu N             the guests' MTU, {MTU_MIN}..{MTU_MAX} (default 1500)
      --resolv-conf PATH  where the host's resolvers are (default /etc/resolv.conf)
      --no-fast-path      every frame through the Python cores (to compare, to debug)
  -h, --help              this help
"""


class SlirpUsageError(Exception):
    """str() is one line: the option and what is wrong with it ("help" for -h)."""


@dataclass(frozen=True)
class Forward:
    host_port: int
    guest_addr: IPv4Address
    guest_port: int


@dataclass
class SlirpOptions:
    sock: str | None = None             # None: the default switch; "-": stdin/stdout
    host: str = "10.0.2.2/24"           # as given; network() applies the rules
    dns: str | None = None              # None: host 3 of the network
    dhcp: bool = False
    dhcp_start: str | None = None       # None: host 15 of the network
    tcp_forwards: list[Forward] = field(default_factory=list)
    udp_forwards: list[Forward] = field(default_factory=list)
    tftp: str | None = None
    pidfile: str | None = None
    daemon: bool = False
    quiet: bool = False
    port: int | None = None             # None: any port
    group: str | None = None
    mode: int | None = None
    mtu: int = 1500
    resolv_conf: str = "/etc/resolv.conf"
    no_fast_path: bool = False          # established TCP stays in Python too
    tap: str | None = None              # -s tap://NAME: the tap's name
    netns: str | None = None            # the tap's network namespace (a path)
    userns: str | None = None           # the user namespace to enter to open it

    def network(self) -> Network:
        return Network.from_text(self.host, self.dns, self.dhcp_start, self.mtu)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise SlirpUsageError(message.replace("argument ", "option ", 1))


def _parser() -> _Parser:
    p = _Parser(prog=PROG, add_help=False, allow_abbrev=False)
    p.add_argument("-s", "--sock", "--socket", "--vdesock", "--unix", dest="sock")
    p.add_argument("-H", "--host", "-n", "--network", dest="host", action="append")
    p.add_argument("-N", "--dns", "--nameserver", dest="dns")
    p.add_argument("-D", dest="dhcp", action="store_true")
    p.add_argument("--dhcp", dest="dhcp_start")    # only --dhcp=START gets here
    p.add_argument("-L", dest="tcp", action="append", default=[])
    p.add_argument("-U", dest="udp", action="append", default=[])
    p.add_argument("-X", dest="x11")
    p.add_argument("-x", dest="unix_redirect")
    p.add_argument("-t", "--tftp")
    p.add_argument("-p", "--pidfile")
    p.add_argument("-d", "--daemon", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-P", "--port")
    p.add_argument("-g", "--group")
    p.add_argument("-m", "--mod")
    p.add_argument("--mtu")
    p.add_argument("--resolv-conf", dest="resolv_conf")
    p.add_argument("--no-fast-path", dest="no_fast_path", action="store_true")
    p.add_argument("--netns")
    p.add_argument("--userns")
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("switch", nargs="*")
    return p


_TAKES_VALUE = frozenset((
    "-s", "--sock", "--socket", "--vdesock", "--unix", "-H", "--host", "-n", "--network",
    "-N", "--dns", "--nameserver", "-L", "-U", "-X", "-x", "-t", "--tftp", "-p",
    "--pidfile", "-P", "--port", "-g", "--group", "-m", "--mod", "--mtu", "--resolv-conf",
    "--netns", "--userns"))


def _getopt_spellings(argv: list[str]) -> list[str]:
    """getopt's ways that argparse does not have: `--dhcp` alone is -D and `--dhcp=START`
    carries START (an optional argument: `--dhcp START` does not, START is then the
    switch); an option's value may start with '-' (`-L -1:...` is a bad forward, not a
    missing value)."""
    return glue_values(argv, _TAKES_VALUE, alone={"--dhcp": "-D"})


def parse_args(argv: list[str]) -> SlirpOptions:
    ns = _parser().parse_intermixed_args(_getopt_spellings(argv))
    if ns.help:
        raise SlirpUsageError("help")
    if ns.x11 is not None:
        raise SlirpUsageError("option -X: X11 redirection is not supported")
    if ns.unix_redirect is not None:
        raise SlirpUsageError("option -x: redirection to UNIX sockets is not supported")
    o = SlirpOptions(dhcp=ns.dhcp or ns.dhcp_start is not None, tftp=ns.tftp, pidfile=ns.pidfile, daemon=ns.daemon,
                     quiet=ns.quiet, group=ns.group, no_fast_path=ns.no_fast_path)
    if ns.resolv_conf is not None:
        o.resolv_conf = ns.resolv_conf

    if len(ns.switch) > 1:
        raise SlirpUsageError(f"more than one switch given: {' '.join(ns.switch)}")
    if ns.switch and ns.sock is not None:
        raise SlirpUsageError("give the switch either with -s or as an argument, not both")
    o.sock = ns.switch[0] if ns.switch else ns.sock
    _tap(o, ns)

    if ns.port is not None:
        if not ns.port.isdigit() or int(ns.port) > 65535:
            raise SlirpUsageError(f"option --port: '{ns.port}' is not a port number")
        o.port = int(ns.port)
    if ns.mod is not None:
        if not re.fullmatch(r"[0-7]{1,4}", ns.mod):
            raise SlirpUsageError(f"option -m: '{ns.mod}' is not an octal mode like 0660")
        o.mode = int(ns.mod, 8)
    if ns.mtu is not None:
        if not ns.mtu.isdigit() or not MTU_MIN <= int(ns.mtu) <= MTU_MAX:
            raise SlirpUsageError(f"option --mtu: '{ns.mtu}' is not {MTU_MIN}..{MTU_MAX}")
        o.mtu = int(ns.mtu)

    if ns.host:
        o.host = ns.host[-1]
    net = _network("-H", o.host)
    if ns.dns is not None:
        o.dns = ns.dns
        net = _network("-N", o.host, o.dns)
    if ns.dhcp_start is not None:
        o.dhcp_start = ns.dhcp_start
        net = _network("--dhcp", o.host, o.dns, o.dhcp_start)
    elif o.dhcp and not net.is_guest_range(net.dhcp_start):
        raise SlirpUsageError(f"option -D: the DHCP pool would start at {net.dhcp_start},"
                              f" outside {net.network}; give --dhcp=START")

    o.tcp_forwards = _forwards("-L", ns.tcp, net)
    o.udp_forwards = _forwards("-U", ns.udp, net)
    return o


def _tap(o: SlirpOptions, ns) -> None:
    """-s tap://NAME, and the options that go only with it or only with a switch."""
    if o.sock is not None and o.sock.startswith("tap://"):
        name = o.sock[len("tap://"):]
        if not 1 <= len(name.encode()) <= 15 or "/" in name or name.strip() != name:
            raise SlirpUsageError(f"option -s: '{name}' is not a tap name (1..15 bytes,"
                                  " no '/' or spaces)")
        o.tap = name
        for opt, value in (("--port", ns.port), ("-g", ns.group), ("-m", ns.mod)):
            if value is not None:
                raise SlirpUsageError(f"option {opt}: only for a switch, not a tap")
    elif ns.netns is not None or ns.userns is not None:
        raise SlirpUsageError(f"option {'--netns' if ns.netns is not None else '--userns'}:"
                              " only with -s tap://NAME")
    if ns.userns is not None and ns.netns is None:
        raise SlirpUsageError("option --userns: only with --netns")
    o.netns, o.userns = ns.netns, ns.userns


def _network(option: str, host: str, dns: str | None = None,
             dhcp_start: str | None = None) -> Network:
    try:
        return Network.from_text(host, dns, dhcp_start)
    except ValueError as e:
        raise SlirpUsageError(f"option {option}: {e}") from None


def _forwards(option: str, texts: list[str], net: Network) -> list[Forward]:
    out: list[Forward] = []
    seen: set[int] = set()
    for text in texts:
        parts = text.split(":")
        if len(parts) != 3 or not parts[0].isdigit() or not parts[2].isdigit():
            raise SlirpUsageError(f"option {option}: '{text}' is not"
                                  " hostport:guestaddr:guestport")
        try:
            addr = IPv4Address(parts[1])
        except AddressValueError:
            raise SlirpUsageError(f"option {option}: '{text}' is not"
                                  " hostport:guestaddr:guestport") from None
        host_port, guest_port = int(parts[0]), int(parts[2])
        for port in (host_port, guest_port):
            if not 1 <= port <= 65535:
                raise SlirpUsageError(f"option {option}: port {port} in '{text}'"
                                      " is not 1..65535")
        if not net.is_guest_range(addr) or net.is_ours(addr):
            raise SlirpUsageError(f"option {option}: {addr} in '{text}' is not a guest"
                                  f" address in {net.network}")
        if host_port in seen:
            raise SlirpUsageError(f"option {option}: host port {host_port} is forwarded"
                                  " twice")
        seen.add(host_port)
        out.append(Forward(host_port, addr, guest_port))
    return out


__all__ = ["USAGE", "Forward", "SlirpOptions", "SlirpUsageError", "parse_args"]
