"""The control directory, its `ctl` socket and the data sockets (vde-protocol.md §1.1-1.16).

Owns every file the switch makes in the control directory: creates the directory and
`ctl`, runs the handshake on each control connection, creates each endpoint's `NNN.F`
data socket (connected to the client *before* the reply, as vdeplug4 requires), and
removes them all. A bad, slow or silent client loses only its own connection, with one
log line naming the reason; it never blocks the accept loop or anyone's traffic.
"""
from __future__ import annotations

import logging
import os
import socket
import stat
import struct

import trio

from .control_request import Request, RequestError, RequestReader, build_reply
from .listeners import StartupError, accept_loop, close_listener, listen_unix
from .ports import PortError

log = logging.getLogger("pyvde-switch")

MAX_DIR_LEN = 100          # room for "/NNN.F" in a 108-byte sun_path
MAX_PENDING = 128          # control connections still in their handshake
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)      # Linux values, missing from
SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)    # some Python builds
DATA_SNDBUF = 1 << 20       # per data socket: absorbs bursts towards a busy client


def peer_credentials(sock) -> tuple[int, int, frozenset[int]]:
    """(pid, uid, groups) of the process on the other end of a Unix stream socket."""
    pid, uid, gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                        struct.calcsize("3i")))
    groups = {gid}
    try:
        # 1024 bytes (256 groups) is the most CPython's getsockopt() will ask for.
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 1024)
        groups.update(struct.unpack(f"{len(raw) // 4}I", raw))
    except OSError:      # ERANGE (more groups) or an old kernel: ask /proc instead
        groups.update(_proc_groups(pid))
    return pid, uid, frozenset(groups)


def _proc_groups(pid: int) -> set[int]:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Groups:"):
                    return {int(g) for g in line.split()[1:]}
    except (OSError, ValueError):
        pass
    return set()


def check_client_socket(path: bytes, uid: int) -> None:
    """The client's data socket must exist, be a socket, and belong to the connecting user
    (a root switch must not be steered into sending frames to somebody else's socket)."""
    shown = path.decode(errors="replace")
    try:
        st = os.stat(path)
    except OSError as e:
        raise RequestError(f"client socket {shown} is unreachable: {e.strerror}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise RequestError(f"client socket {shown} is not a socket")
    if uid != 0 and st.st_uid != uid:
        raise RequestError(f"client socket {shown} belongs to uid {st.st_uid}, not to the"
                           f" connecting uid {uid}")
    if not os.access(path, os.R_OK | os.W_OK):
        raise RequestError(f"client socket {shown} is not readable and writable by the switch")


def open_data_socket(client_path: bytes) -> socket.socket:
    """A non-blocking datagram socket connected to the client's socket."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    try:
        try:
            s.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, DATA_SNDBUF)
        except OSError:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, DATA_SNDBUF)
        s.connect(client_path)
    except OSError as e:
        s.close()
        raise RequestError(f"cannot connect to client socket {client_path.decode(errors='replace')}:"
                           f" {e.strerror}") from None
    return s


def bind_data_socket(s: socket.socket, path: str, mode: int, uid: int, gid: int) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    s.bind(path)
    os.chmod(path, mode)
    if uid >= 0 or gid >= 0:
        os.chown(path, uid, gid)


class ControlSocket:
    def __init__(self, switch, directory: str, perms, handshake_timeout: float):
        self.switch = switch
        self.directory = directory
        self.perms = perms
        self.timeout = handshake_timeout
        self.ctl_path = os.path.join(directory, "ctl")
        self.created_dir = False
        self.listener: socket.socket | None = None
        self.pending = 0
        self.connections: dict[int, trio.CancelScope] = {}   # endpoint id -> its connection

    # --- files
    def open(self) -> None:
        if len(self.directory.encode()) > MAX_DIR_LEN:
            raise StartupError(f"control directory path is too long ({len(self.directory)} bytes;"
                               f" at most {MAX_DIR_LEN})")
        if os.path.lexists(self.directory) and not os.path.isdir(self.directory):
            raise StartupError(f"{self.directory} exists and is not a directory")
        if not os.path.isdir(self.directory):
            try:
                os.mkdir(self.directory, 0o777)
            except OSError as e:
                raise StartupError(f"cannot create control directory {self.directory}:"
                                   f" {e.strerror}") from None
            self.created_dir = True
        try:
            os.chmod(self.directory, self.perms.dir_mode)
            if self.perms.gid >= 0:
                os.chown(self.directory, -1, self.perms.gid)
        except OSError as e:
            self.close()
            raise StartupError(f"cannot set mode/group of {self.directory}: {e.strerror}") from None
        try:
            self.listener = listen_unix(self.ctl_path, self.perms.sock_mode, self.perms.gid)
        except StartupError:
            self.close()
            raise

    def close(self) -> None:
        self.listener = close_listener(self.listener, self.ctl_path)
        if self.created_dir:
            try:
                os.rmdir(self.directory)
            except OSError as e:
                log.warning("control directory %s not removed: %s", self.directory, e.strerror)
            self.created_dir = False

    def data_path(self, port: int, fd: int) -> str:
        return f"{self.directory}/{port:03d}.{fd}"

    # --- serving
    async def serve(self) -> None:
        await accept_loop(self.listener, self.ctl_path, self._connection, self._admit)

    def _admit(self, conn) -> bool:
        if self.pending < MAX_PENDING:
            return True
        log.warning("control connection %d refused: %d handshakes already in progress",
                    conn.fileno(), self.pending)
        return False

    async def _read_request(self, conn, who: str) -> Request | None:
        reader = RequestReader()
        self.pending += 1
        try:
            with trio.fail_after(self.timeout):
                while True:
                    data = await conn.recv(4096)
                    if not data:
                        raise reader.eof()
                    request = reader.feed(data)
                    if request is not None:
                        return request
        except trio.TooSlowError:
            log.warning("%s: no complete request within %g s; closed", who, self.timeout)
        except RequestError as e:
            log.warning("%s: %s; closed", who, e)
        except OSError as e:
            log.warning("%s: %s; closed", who, e.strerror)
        finally:
            self.pending -= 1
        return None

    async def _connection(self, conn) -> None:
        try:
            await self._handshake_and_watch(conn)
        except Exception:
            # A bug must cost one connection, never the switch.
            log.exception("control connection: internal error; connection closed")

    async def _handshake_and_watch(self, conn) -> None:
        with conn:
            fd = conn.fileno()
            try:
                pid, uid, groups = peer_credentials(conn)
            except OSError:
                pid, uid, groups = 0, -1, frozenset()
            who = f"control connection {fd} (pid {pid}, uid {uid})"
            request = await self._read_request(conn, who)
            if request is None:
                return
            try:
                ep = self.switch.plug(request, fd, uid, groups)
            except (RequestError, PortError) as e:
                log.warning("%s: %s; closed", who, e)
                return
            except OSError as e:
                log.warning("%s: cannot set up the data socket: %s; closed", who, e.strerror)
                return
            try:
                with trio.CancelScope() as scope:   # port/epclose cancels it
                    self.connections[ep.id] = scope
                    await trio.SocketStream(conn).send_all(build_reply(ep.data_path))
                    log.info("port %d: endpoint %d plugged in (%s, pid %d, uid %d)",
                             ep.port, ep.id, ep.description or "no description", pid, uid)
                    await self._watch(conn, who)
            except OSError as e:
                log.warning("%s: %s", who, e.strerror)
            finally:
                self.connections.pop(ep.id, None)
                self.switch.unplug(ep)

    @staticmethod
    async def _watch(conn, who: str) -> None:
        """After the handshake the control stream only signals the end (EOF)."""
        warned = False
        while True:
            data = await conn.recv(4096)
            if not data:
                return
            if not warned:
                log.warning("%s: %d unexpected bytes after the handshake; ignored", who, len(data))
                warned = True

    def close_connection(self, endpoint_id: int) -> bool:
        scope = self.connections.get(endpoint_id)
        if scope is None:
            return False
        scope.cancel()
        return True


def register_commands(table, control: ControlSocket) -> None:
    table.menu("ds", "DATA SOCKET MENU")

    @table.command("ds/showinfo", "", "show ds info", data=True)
    def showinfo(ctx) -> None:
        ctx.out += [f"ctl dir {control.directory}", f"std mode 0{control.perms.sock_mode:03o}"]

