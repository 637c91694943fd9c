"""Virtual network locators (VNLs), as vdeplug4 4.0.1 spells them (vde-protocol.md §1.15, §7).

Pure: text in, a description of the link out, or VnlError naming what is wrong.

    /tmp/sw, vde:///tmp/sw, /tmp/sw[5], vde:///tmp/sw[port=5/group=vde/mode=0660]
    tap://tap0
    udp://[src_addr:]src_port->dst_addr:dst_port
    ptp:///tmp/link
    null://
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass


class VnlError(ValueError):
    """A locator that cannot be used; str() says why."""


@dataclass(frozen=True)
class Vde:
    path: str                   # the switch's control directory ("" = the default switch)
    port: int | None = None     # None: any port; 0: port 0
    group: str | None = None    # group of the client's data socket
    mode: int | None = None     # mode of the client's data socket


@dataclass(frozen=True)
class Tap:
    ifname: str


@dataclass(frozen=True)
class Udp:
    src_addr: str
    src_port: int
    dst_addr: str
    dst_port: int


@dataclass(frozen=True)
class Ptp:
    path: str


@dataclass(frozen=True)
class Null:
    pass


Vnl = Vde | Tap | Udp | Ptp | Null

IFNAMSIZ = 16
_KEYS = ("port", "portgroup", "group", "mode")


def _parse_args(text: str, vnl: str) -> dict[str, str]:
    """The `/`-separated items of vde://DIR[ITEMS]: a bare item is the port; keys may be
    abbreviated to any prefix (port, portgroup, group, mode, in that order)."""
    out: dict[str, str] = {}
    for item in filter(None, text.split("/")):
        key, eq, value = item.partition("=")
        if not eq:
            key, value = "port", item
        else:
            match = next((k for k in _KEYS if k.startswith(key)), None) if key else None
            if match is None:
                raise VnlError(f"{vnl}: unknown parameter '{key}' (port, group, mode)")
            key = "port" if match == "portgroup" else match
        out[key] = value.strip("'\"")
    return out


def _vde(rest: str, vnl: str) -> Vde:
    args: dict[str, str] = {}
    m = re.fullmatch(r"(.*)\[([^\[\]]*)\]", rest)
    if m:
        rest, args = m.group(1), _parse_args(m.group(2), vnl)
    port = None
    if "port" in args:
        if not re.fullmatch(r"[0-9]{1,6}", args["port"]):
            raise VnlError(f"{vnl}: port '{args['port']}' is not a number")
        port = int(args["port"])
        if port > 65535:
            raise VnlError(f"{vnl}: port {port} is out of range")
    mode = None
    if "mode" in args:
        if not re.fullmatch(r"[0-7]{1,4}", args["mode"]):
            raise VnlError(f"{vnl}: mode '{args['mode']}' is not an octal mode like 0660")
        mode = int(args["mode"], 8)
    return Vde(rest, port, args.get("group") or None, mode)


def _udp(rest: str, vnl: str) -> Udp:
    m = re.fullmatch(r"(?:(\[[^\]]*\]|[^:\[\]]*):)?([0-9]{1,6})->(\[[^\]]*\]|[^:\[\]]+):([0-9]{1,6})",
                     rest)
    if not m:
        raise VnlError(f"{vnl}: expected udp://[src_addr:]src_port->dst_addr:dst_port")
    src, sport, dst, dport = m.groups()
    ports = int(sport), int(dport)
    if not all(0 < p < 65536 for p in ports):
        raise VnlError(f"{vnl}: UDP ports are 1..65535")
    return Udp((src or "").strip("[]"), ports[0], dst.strip("[]"), ports[1])


def parse(vnl: str) -> Vnl:
    scheme, sep, rest = vnl.partition("://")
    if not sep:
        return _vde(vnl, vnl)
    if scheme == "vde":
        return _vde(rest, vnl)
    if scheme == "tap":
        try:
            size = len(rest.encode())
        except UnicodeEncodeError:
            raise VnlError(f"{vnl}: the tap interface name is not valid UTF-8") from None
        if not rest or size >= IFNAMSIZ or "/" in rest or rest in (".", ".."):
            raise VnlError(f"{vnl}: a tap interface name of 1..{IFNAMSIZ - 1} bytes is needed")
        return Tap(rest)
    if scheme == "udp":
        return _udp(rest, vnl)
    if scheme == "ptp":
        if not rest:
            raise VnlError(f"{vnl}: ptp:// needs a path")
        return Ptp(rest)
    if scheme == "null":
        return Null()
    raise VnlError(f"{vnl}: unknown scheme '{scheme}://' (vde, tap, udp, ptp, null)")


def default_switch() -> str:
    """The switch an empty VNL means: ~/.vdeplug/default, ~/.vde2/default.switch (a symlink
    to the switch directory, or a file holding a VNL), else /var/run/vde.ctl, /tmp/vde.ctl."""
    home = os.path.expanduser("~")
    for candidate in (os.path.join(home, ".vdeplug", "default"),
                      os.path.join(home, ".vde2", "default.switch")):
        if os.path.lexists(candidate):
            if os.path.isfile(candidate):
                with open(candidate, encoding="utf-8", errors="replace") as f:
                    line = f.readline().strip()
                if line:
                    return line
            return candidate
    for d in ("/var/run/vde.ctl", "/tmp/vde.ctl"):
        if os.path.exists(os.path.join(d, "ctl")):
            return d
    return "/var/run/vde.ctl" if os.geteuid() == 0 else "/tmp/vde.ctl"
