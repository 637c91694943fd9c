"""The client side of the VDE control protocol: what libvdeplug does in vde_open()
(vde-protocol.md §1, §1.9, §1.15), for any VDE switch (pyvde-switch, vde_switch,
vdeplug4's switch://).

connect() binds the client's data socket as `<dir>/.PPPPP-NNNNN` (falling back to
/var/run, /var/tmp, /tmp as `vde.PPPPP-NNNNN`), sends the v3 request over `<dir>/ctl`,
reads the 110-byte reply, connects the data socket to the switch's socket and removes
its own file at once, as vdeplug4 does. A switch that refuses (it closes the control
connection without a reply) is reported as a PlugError naming the likely reasons.
"""
from __future__ import annotations

import errno
import fcntl
import grp
import os
import pwd
import socket
import struct
import time
from dataclasses import dataclass, field
from itertools import count

from switchd import control_request

from .vnl import Vde, default_switch

REPLY_TIMEOUT = 10.0
DATA_BUFFER = 4 << 20       # socket buffers: room for bursts of jumbo frames
FALLBACK_DIRS = ("/var/run", "/var/tmp", "/tmp")
SIOCOUTQ = 0x5411           # bytes we sent that the peer has not read yet
DRAIN_TIMEOUT = 1.0
_sequence = count()


class PlugError(Exception):
    """Cannot connect; str() is one line saying why."""


@dataclass
class Connection:
    directory: str
    ctl: socket.socket
    data: socket.socket
    switch_socket: str
    port_requested: int | None = None
    description: str = ""
    group: str | None = None
    mode: int | None = None
    files: list[str] = field(default_factory=list)   # our own files still to remove

    def reopen(self) -> Connection:
        """A new connection made as this one was (for --reconnect); raises PlugError."""
        return connect(Vde(self.directory, self.port_requested), self.description,
                       self.group, self.mode)

    def drain(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """Waits (up to timeout) until the switch has read every frame we sent: a switch
        drops what is still queued on its data socket when the control connection closes,
        so closing at once would lose the last frames of a stream that just ended."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                queued = struct.unpack("i", fcntl.ioctl(self.data.fileno(), SIOCOUTQ,
                                                        bytes(4)))[0]
            except OSError:
                return
            if queued <= 0 or time.monotonic() > deadline:
                return
            time.sleep(0.002)

    def close(self) -> None:
        """Like vde_close(): a zero-length datagram says goodbye, then both sockets close."""
        self.drain()
        try:
            self.data.send(b"", socket.MSG_DONTWAIT)
        except OSError:
            pass
        self.data.close()
        self.ctl.close()
        for path in self.files:
            try:
                os.unlink(path)
            except OSError:
                pass
        self.files.clear()


def describe(text: str) -> str:
    """The description the switch shows in port/print: TEXT user=NAME pid=PID (vdeplug4)."""
    uid = os.geteuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    return f"{text} user={user} pid={os.getpid()}"


def _bind_client(data: socket.socket, directory: str) -> str:
    pid = os.getpid() % 100000
    candidates = [(directory, ".")] + [(d, "vde.") for d in FALLBACK_DIRS]
    last = None
    for d, prefix in candidates:
        while True:
            path = os.path.join(d, f"{prefix}{pid:05d}-{next(_sequence) % 100000:05d}")
            try:
                data.bind(path)
                return path
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    continue
                last = e
                break
    raise PlugError(f"cannot create a data socket in {directory} or {', '.join(FALLBACK_DIRS)}:"
                    f" {last.strerror if last else 'unknown error'}")


def _recv_reply(ctl: socket.socket, directory: str, vnl: Vde) -> bytes:
    ctl.settimeout(REPLY_TIMEOUT)
    reply = b""
    try:
        while len(reply) < control_request.REPLY_SIZE:
            chunk = ctl.recv(control_request.REPLY_SIZE - len(reply))
            if not chunk:
                break
            reply += chunk
    except TimeoutError:
        raise PlugError(f"switch at {directory} did not answer within {REPLY_TIMEOUT:g} s") from None
    if len(reply) < control_request.REPLY_SIZE:
        what = ("port 0" if vnl.port == 0 else f"port {vnl.port}" if vnl.port is not None
                else "a free port")
        raise PlugError(f"switch at {directory} refused the request for {what} (out of range,"
                        " in use, reserved for another user, or no free port; its log says why)")
    return reply


def connect(vnl: Vde, description: str = "vdeplug:", group: str | None = None,
            mode: int | None = None) -> Connection:
    """Connects to the switch vnl names; raises PlugError."""
    path = vnl.path or default_switch()
    try:
        directory = os.path.realpath(path, strict=True)
    except OSError:
        raise PlugError(f"no switch at {path}: no such directory") from None
    if not os.path.isdir(directory):
        raise PlugError(f"no switch at {path}: not a directory")
    group = group or vnl.group
    mode = mode if mode is not None else (vnl.mode if vnl.mode is not None else 0o700)
    gid = None
    if group is not None:
        try:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            raise PlugError(f"group '{group}' does not exist") from None

    ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    data = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    conn = Connection(directory, ctl, data, "", vnl.port, description, group, mode)
    try:
        try:
            ctl.connect(os.path.join(directory, "ctl"))
        except FileNotFoundError:
            raise PlugError(f"no switch at {directory}: {directory}/ctl does not exist") from None
        except ConnectionRefusedError:
            raise PlugError(f"no switch at {directory}: nobody listens on its ctl socket"
                            " (the switch is not running)") from None
        except PermissionError:
            raise PlugError(f"switch at {directory}: permission denied on {directory}/ctl") from None
        own = _bind_client(data, directory)
        conn.files.append(own)
        os.chmod(own, mode)
        if gid is not None:
            os.chown(own, -1, gid)
        for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            data.setsockopt(socket.SOL_SOCKET, opt, DATA_BUFFER)
        ctl.sendall(control_request.build(own, vnl.port, description))
        reply = _recv_reply(ctl, directory, vnl)
        conn.switch_socket = control_request.parse_reply(reply)
        data.connect(conn.switch_socket)
        try:
            os.chmod(conn.switch_socket, mode)   # works when the switch gave us the file
        except OSError:
            pass
        os.unlink(own)                           # connected sockets need no file (vdeplug4)
        conn.files.remove(own)
        ctl.settimeout(None)
        return conn
    except PlugError:
        conn.close()
        raise
    except (OSError, control_request.RequestError) as e:
        conn.close()
        raise PlugError(f"switch at {directory}: {getattr(e, 'strerror', None) or e}") from None
