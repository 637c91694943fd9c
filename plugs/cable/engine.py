"""Python's handle on pyvde-cable's engine (cffi_build/cable.c): configure, start, take
its events, install sessions, read counters. Frames never come up to Python."""
from __future__ import annotations

import ipaddress
import os
import sys
from dataclasses import dataclass

from .._cable import ffi, lib

PLAIN, SEALED, VXLAN, VXVDE = lib.CABLE_PLAIN, lib.CABLE_SEALED, lib.CABLE_VXLAN, lib.CABLE_VXVDE
MODES = {"plain": PLAIN, "sealed": SEALED, "vxlan": VXLAN, "vxvde": VXVDE}
CURRENT, PENDING = lib.CABLE_CURRENT, lib.CABLE_PENDING
EV_CONTROL, EV_UNKNOWN = lib.CABLE_EV_CONTROL, lib.CABLE_EV_UNKNOWN
EV_PROMOTED, EV_ENDED = lib.CABLE_EV_PROMOTED, lib.CABLE_EV_ENDED
RUNNING, END_SWITCH, STOPPED, FAILED = (lib.CABLE_RUNNING, lib.CABLE_END_SWITCH,
                                        lib.CABLE_STOPPED, lib.CABLE_FAILED)
OVERHEAD = {"plain": 0, "sealed": lib.CABLE_HEADER + lib.CABLE_TAG,
            "vxlan": lib.CABLE_VX_HEADER, "vxvde": lib.CABLE_VX_HEADER}
COUNTERS = ("to_net_frames", "to_net_bytes", "from_net_frames", "from_net_bytes",
            "oversize", "runts", "send_errors", "no_session", "truncated", "bad_tag",
            "replayed", "unknown_index", "bad_header", "own", "control", "control_dropped",
            "keepalives_in",
            "keepalives_out", "learned", "last_auth_rx_ms", "last_tx_ms", "error")


def _addr(a: str) -> int:
    """An IPv4 address as the engine wants it: network byte order in a uint32."""
    return int.from_bytes(ipaddress.IPv4Address(a).packed, sys.byteorder)


def _text(a: int) -> str:
    return str(ipaddress.IPv4Address(a.to_bytes(4, sys.byteorder)))


@dataclass(frozen=True)
class Event:
    kind: int
    addr: tuple[str, int]
    index: int = 0
    data: bytes = b""


class Engine:
    def __init__(self, mode: str, switch_fd: int, udp_fd: int, max_frame: int, *,
                 watch_fd: int = -1, mcast_fd: int = -1, peer: tuple[str, int] | None = None,
                 vni: int = 0, group: str | None = None, udp_port: int = 0,
                 peers: tuple[str, ...] = (), expire_ms: int = 128000):
        c = ffi.new("struct cable_config *")
        c.mode = MODES[mode]
        c.switch_fd, c.watch_fd, c.udp_fd, c.mcast_fd = switch_fd, watch_fd, udp_fd, mcast_fd
        c.max_frame = max_frame
        if peer is not None:
            c.peer_addr, c.peer_port = _addr(peer[0]), peer[1]
        c.vni = vni
        c.group_addr = _addr(group) if group else 0
        c.udp_port = udp_port
        if len(peers) > lib.CABLE_MAX_PEERS:
            raise ValueError(f"at most {lib.CABLE_MAX_PEERS} peers")
        for i, p in enumerate(peers):
            c.peers[i] = _addr(p)
        c.n_peers = len(peers)
        c.expire_ms = expire_ms
        e = lib.cable_new(c)
        if e == ffi.NULL:
            raise OSError(22, "the cable engine could not be made (bad configuration or"
                              " no memory, or libsodium failed to start)")
        self._e = ffi.gc(e, lib.cable_free)
        self._ev = ffi.new("struct cable_event *")

    def start(self) -> None:
        r = lib.cable_start(self._e)
        if r < 0:
            raise OSError(-r, os.strerror(-r))

    def stop(self) -> None:
        lib.cable_stop(self._e)

    @property
    def event_fd(self) -> int:
        return lib.cable_event_fd(self._e)

    def ended(self) -> int:
        return lib.cable_ended(self._e)

    def events(self) -> list[Event]:
        out = []
        while lib.cable_next_event(self._e, self._ev):
            ev = self._ev
            out.append(Event(ev.kind, (_text(ev.addr), ev.port), ev.index,
                             ffi.buffer(ev.data, ev.len)[:]))
        return out

    def install(self, slot: int, my_index: int, peer_index: int, send_key: bytes,
                recv_key: bytes, addr: tuple[str, int]) -> None:
        if lib.cable_install(self._e, slot, my_index, peer_index, send_key, recv_key,
                             _addr(addr[0]), addr[1]) < 0:
            raise ValueError("cannot install a session here")

    def keepalive(self) -> bool:
        return lib.cable_keepalive(self._e) == 0

    def send_raw(self, data: bytes, addr: tuple[str, int]) -> int:
        """0, or an errno (the datagram did not leave)."""
        return -lib.cable_send_raw(self._e, data, len(data), _addr(addr[0]), addr[1])

    def stats(self) -> dict:
        s = ffi.new("struct cable_stats *")
        lib.cable_get_stats(self._e, s)
        d = {k: getattr(s, k) for k in COUNTERS}
        d["peer"] = (_text(s.peer_addr), s.peer_port) if s.peer_port else None
        return d
