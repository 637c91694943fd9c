"""The C data path of established TCP connections (cffi_build/tcp_fast.c): handing a
connection's state to C and taking it back.

With a switch link (a datagram socket) or a tap, frames from the guests are received in C
(`receive`): those of connections in the C table are carried out there (payload to the
host socket, acknowledged bytes discarded, ACKs and new host data back to the guest);
the others come back as bytes for the router, in order. A connection whose state needs
a decision of tcp.py leaves the table first, and its shell takes the state back before
the router sees the frame. The router promotes a connection again once tcp.py says it
is `steady()`.
"""
from __future__ import annotations

from .._slirp import ffi, lib

EJECT_ERROR = lib.FAST_EJECT_ERROR
EJECT_PYTHON = lib.FAST_EJECT_PYTHON


class FastPath:
    """The C table of a router on a switch link or a tap, and the shells of its
    connections."""

    def __init__(self, link_fd: int, link_kind: int, router_mac: bytes):
        table = lib.fast_table_new(link_fd, link_kind, router_mac)
        if table == ffi.NULL:
            raise MemoryError("the TCP fast path's buffers")
        self.table = ffi.gc(table, lib.fast_table_free)
        self.shells: dict[int, object] = {}     # id -> TcpShell, while in C
        self._next_id = 0
        self.promoted = 0                       # counters for the report
        self.taken_back = 0
        self._fresh = False

    def __len__(self) -> int:
        return len(self.shells)

    # ---- frames -------------------------------------------------------------------------
    def receive(self, now: float) -> int:
        """One batch from the switch; see fast_batch. -1: the link is gone."""
        self._fresh = True
        return lib.fast_batch(self.table, now)

    def for_python(self) -> list[bytes]:
        t = self.table
        return [ffi.buffer(lib.fast_py_frame(t, i), lib.fast_py_len(t, i))[:]
                for i in range(lib.fast_py_count(t))]

    def unsent(self) -> list[bytes]:
        """Once after each receive or pump: what the switch did not take."""
        if not self._fresh:
            return []
        self._fresh = False
        t = self.table
        lens = [lib.fast_unsent_len(t, i) for i in range(lib.fast_unsent_count(t))]
        if not lens:
            return []
        data = ffi.buffer(lib.fast_unsent(t), sum(lens))[:]
        out, off = [], 0
        for n in lens:
            out.append(data[off:off + n])
            off += n
        return out

    def changed(self) -> list:
        """The shells whose connection left C, or now wants readability (after receive
        or pump)."""
        t = self.table
        out = []
        for i in range(lib.fast_changed_count(t)):
            shell = self.shells.get(lib.fast_changed_id(t, i))
            if shell is not None and shell not in out:
                out.append(shell)
        return out

    def pump(self, shell, now: float) -> None:
        self._fresh = True
        lib.fast_pump(self.table, shell.fast, now)

    # ---- connections ----------------------------------------------------------------------
    def promote(self, shell, guest_mac: bytes) -> bool:
        """Hands the connection of `shell` to C (its state from tcp.py)."""
        key = shell.key
        c = ffi.new("struct fast_conn *")
        self._next_id += 1
        c.id = self._next_id
        c.fd = shell.sock.fileno()
        c.guest_mac = guest_mac
        c.guest_ip = key[0].packed
        c.guest_port = key[1]
        c.remote_ip = key[2].packed
        c.remote_port = key[3]
        for name, value in shell.conn.handed_state().items():
            setattr(c, name, value)
        if lib.fast_add(self.table, c) < 0:
            return False
        shell.fast = c
        self.shells[c.id] = shell
        self.promoted += 1
        return True

    def _leave(self, shell):
        """The connection of `shell` out of C's table (if C has not taken it out): its
        struct, whose `eject` says why it left."""
        c = shell.fast
        if c.in_table:
            lib.fast_remove(self.table, c, EJECT_PYTHON)
        shell.fast = None
        self.shells.pop(c.id, None)
        return c

    def take_back(self, shell, now: float) -> list:
        """Takes the connection out of C and gives its state back to tcp.py: the effects
        the core answers with. Returns [] if it was not in C."""
        if shell.fast is None:
            return []
        c = self._leave(shell)
        self.taken_back += 1
        shell.sent_unconsumed = c.snd_nxt - c.snd_una
        effects = shell.conn.taken_back(
            c.snd_una, c.snd_nxt, c.snd_max, c.snd_wnd, c.cwnd, c.rcv_nxt, c.rto, c.rto_at,
            c.last_activity, c.last_guest, now)
        if c.eject == EJECT_ERROR:
            effects += shell.conn.host_error(now)
        return effects

    def forget(self, shell) -> None:
        """Out of C without a word to tcp.py (the connection is being closed)."""
        if shell.fast is not None:
            self._leave(shell)
