"""Opening a tap inside another network namespace (and the user namespace that owns it),
the way slirp4netns does for rootless containers.

A forked child enters the namespaces (setns: a single-threaded process may enter a user
namespace, and never needs to come back), makes or attaches the tap, sets its MTU,
brings it up and passes the open fd back over a socket pair (SCM_RIGHTS). A tap fd
keeps working in the process that holds it, whatever namespace that process is in, so
the caller keeps its own namespaces for its host sockets. Set-up only.
"""
from __future__ import annotations

import ctypes
import os
import socket

from . import tap

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000


class NetnsError(Exception):
    """str() is one line: which namespace or tap, and what failed."""


def _setns(path: str, nstype: int, what: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise NetnsError(f"{what} {path}: {e.strerror}") from None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, nstype) != 0:
            err = ctypes.get_errno()
            raise NetnsError(f"cannot enter {what} {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


def _open_here(name: str, mtu: int | None) -> int:
    fd = tap.open_tap(name)
    try:
        if mtu is not None:
            tap.set_mtu(name, mtu)
        tap.set_up(name)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_tap(name: str, mtu: int | None = None, netns: str | None = None,
             userns: str | None = None) -> int:
    """The fd of tap `name` (IFF_VNET_HDR, up, with `mtu` if given), in network
    namespace `netns` (a path; None: this one), entered through user namespace
    `userns` if given. Raises NetnsError or tap.TapError."""
    if netns is None:
        return _open_here(name, mtu)
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:                                    # the child: never returns
        code = 0
        try:
            parent.close()
            if userns is not None:
                _setns(userns, CLONE_NEWUSER, "user namespace")
            _setns(netns, CLONE_NEWNET, "network namespace")
            fd = _open_here(name, mtu)
            socket.send_fds(child, [b"ok"], [fd])
        except (NetnsError, tap.TapError, OSError) as e:
            try:
                child.send(str(e).encode()[:4000])
            except OSError:
                code = 1
        finally:
            os._exit(code)
    child.close()
    try:
        msg, fds, _, _ = socket.recv_fds(parent, 4096, 1)
    finally:
        parent.close()
        os.waitpid(pid, 0)
    if msg == b"ok" and len(fds) == 1:
        return fds[0]
    for fd in fds:
        os.close(fd)
    raise NetnsError(msg.decode(errors="replace") or "the tap could not be opened")
