"""Listening Unix stream sockets, as the control socket and the management console use them.

A path is claimed only if nobody answers on it (a stale socket is replaced, a live one
refused), and an accept loop keeps serving its existing clients whatever accept() does.
"""
from __future__ import annotations

import logging
import os
import socket
import stat

import trio

log = logging.getLogger("pyvde-switch")


class StartupError(Exception):
    """The switch cannot start; the message says why, for one line on stderr."""


def claim_socket_path(path: str, what: str) -> None:
    """Makes path free for a listening socket: a stale socket is removed, a live one is refused."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise StartupError(f"{path} exists and is not a socket; remove it or choose another {what}")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)       # nobody listens: left over from a switch that died
        log.info("removed stale socket %s", path)
        return
    except OSError as e:
        raise StartupError(f"cannot check whether {path} is in use: {e.strerror}") from None
    finally:
        probe.close()
    raise StartupError(f"{path} is in use: another switch is already running there")


def listen_unix(path: str, mode: int, gid: int) -> socket.socket:
    claim_socket_path(path, "socket path")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        s.bind(path)
        os.chmod(path, mode)
        if gid >= 0:
            os.chown(path, -1, gid)
        s.listen(128)
    except OSError as e:
        s.close()
        raise StartupError(f"cannot listen on {path}: {e.strerror}") from None
    return s


def close_listener(listener: socket.socket | None, path: str) -> None:
    """Closes a listener made by listen_unix and removes its path; returns None."""
    if listener is not None:
        listener.close()
        try:
            os.unlink(path)
        except OSError:
            pass


async def accept_loop(listener: socket.socket, path: str, handle, admit=None) -> None:
    """Runs handle(conn) in its own task for every connection that admit(conn) accepts."""
    sock = trio.socket.from_stdlib_socket(listener.dup())
    async with trio.open_nursery() as nursery:
        with sock:
            while True:
                try:
                    conn, _ = await sock.accept()
                except OSError as e:
                    # EMFILE and friends: keep serving the clients we have.
                    log.error("accept on %s failed: %s", path, e.strerror)
                    await trio.sleep(0.1)
                    continue
                if admit is None or admit(conn):
                    nursery.start_soon(handle, conn)
                else:
                    conn.close()
