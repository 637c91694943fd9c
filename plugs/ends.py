"""Opening the two ends a plug joins: a VNL (vde://, tap://, udp://, ptp://, null://) or
a byte stream (stdin/stdout, a command). Each opener returns an Opened: the pump's End
plus what to close afterwards. Errors are PlugError with one line."""
from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass, field

from . import pump, tap, vnl
from .vdeclient import Connection, PlugError, connect


@dataclass
class Opened:
    end: pump.End
    conn: Connection | None = None       # vde:// ends: the switch connection
    tap_mtu: int | None = None
    closers: list = field(default_factory=list)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        for fn in reversed(self.closers):
            try:
                fn()
            except OSError:
                pass
        self.closers.clear()


def vde_end(conn: Connection) -> pump.End:
    """The pump's end for a switch connection: its data socket, watching its control one."""
    fd = conn.data.fileno()
    return pump.End(pump.DGRAM, fd, fd, [conn.ctl.fileno()], name=conn.directory)


def open_vde(v: vnl.Vde, description: str, group=None, mode=None) -> Opened:
    conn = connect(v, description, group, mode)
    return Opened(vde_end(conn), conn)


def open_tap(t: vnl.Tap, mtu: int | None = None, up: bool = False) -> Opened:
    try:
        fd = tap.open_tap(t.ifname)
        if mtu is not None:
            tap.set_mtu(t.ifname, mtu)
        if up:
            tap.set_up(t.ifname)
        actual = tap.get_mtu(t.ifname)
    except tap.TapError as e:
        raise PlugError(str(e)) from None
    except OSError as e:
        raise PlugError(f"tap {t.ifname}: {e.strerror}") from None
    return Opened(pump.End(pump.TAP, fd, fd, name=f"tap {t.ifname}", vnet=True), tap_mtu=actual,
                  closers=[lambda: os.close(fd)])


def open_udp(u: vnl.Udp) -> Opened:
    try:
        dst = socket.getaddrinfo(u.dst_addr, u.dst_port, type=socket.SOCK_DGRAM)[0]
        family = dst[0]
        s = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        s.bind((u.src_addr or ("::" if family == socket.AF_INET6 else "0.0.0.0"), u.src_port))
        s.connect(dst[4])
        for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            s.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
    except socket.gaierror as e:
        raise PlugError(f"udp://: {u.dst_addr}: {e.strerror}") from None
    except OSError as e:
        raise PlugError(f"udp://: port {u.src_port}: {e.strerror}") from None
    return Opened(pump.End(pump.DGRAM, s.fileno(), s.fileno(), name="udp"), closers=[s.close])


def _sockaddr_un(path: str) -> bytes:
    return struct.pack("H", socket.AF_UNIX) + path.encode()


def open_ptp(p: vnl.Ptp) -> Opened:
    """vdeplug4 4.0.1's datagram ptp://: the first end binds PATH and sends to PATH+; the
    second finds PATH alive, binds PATH+ and sends to PATH."""
    path = os.path.abspath(p.path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        alive = True
        try:
            s.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            alive = False
        if alive:
            mine, peer = path + "+", path
            if os.path.exists(mine):
                os.unlink(mine)                # a stale second end
        else:
            mine, peer = path, path + "+"
            if os.path.exists(mine):
                os.unlink(mine)                # a stale first end
        s.close()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        s.bind(mine)
        os.chmod(mine, 0o700)
        for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            s.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
    except OSError as e:
        s.close()
        raise PlugError(f"ptp://{p.path}: {e.strerror}") from None

    def unlink() -> None:
        try:
            os.unlink(mine)
        except FileNotFoundError:
            pass
    end = pump.End(pump.DGRAM, s.fileno(), s.fileno(), peer=_sockaddr_un(peer), name="ptp")
    return Opened(end, closers=[s.close, unlink])


def open_null() -> Opened:
    return Opened(pump.End(pump.NULL, -1, -1, name="null"))


def parse_vnl(text: str, port: int | None = None) -> vnl.Vnl:
    """The VNL `text` names (PlugError if it names none), with `port` (-p) applied to a
    switch's."""
    try:
        v = vnl.parse(text)
    except vnl.VnlError as e:
        raise PlugError(str(e)) from None
    if isinstance(v, vnl.Vde) and port is not None:
        v = vnl.Vde(v.path, port, v.group, v.mode)
    return v


def switch_vnl(text: str, port: int | None = None) -> vnl.Vde:
    """parse_vnl() for a program that joins only switches."""
    v = parse_vnl(text, port)
    if not isinstance(v, vnl.Vde):
        raise PlugError(f"'{text}' is not a switch")
    return v


def open_vnl(text: str, description: str, group=None, mode=None, port=None,
             mtu: int | None = None, up: bool = False) -> Opened:
    v = parse_vnl(text, port)
    if isinstance(v, vnl.Vde):
        return open_vde(v, description, group, mode)
    if isinstance(v, vnl.Tap):
        return open_tap(v, mtu, up)
    if isinstance(v, vnl.Udp):
        return open_udp(v)
    if isinstance(v, vnl.Ptp):
        return open_ptp(v)
    return open_null()


def open_stdio() -> Opened:
    return Opened(pump.End(pump.STREAM, 0, 1, name="stdin"))
