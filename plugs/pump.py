"""Python's handle on the frame pump (cffi_build/pump.c): set up two ends, run, see why
it stopped. Frames never come up to Python."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from ._pump import ffi, lib

DGRAM, TAP, STREAM, NULL = lib.PUMP_DGRAM, lib.PUMP_TAP, lib.PUMP_STREAM, lib.PUMP_NULL
END_A, END_B = lib.PUMP_END_A, lib.PUMP_END_B
WATCHED, STOPPED, BAD_STREAM = lib.PUMP_WATCHED, lib.PUMP_STOPPED, lib.PUMP_BAD_STREAM
MAX_FRAME = lib.PUMP_MAX_FRAME


@dataclass
class End:
    kind: int
    rfd: int
    wfd: int
    watch: list[int] = field(default_factory=list)   # fds that end the pump when readable
    peer: bytes = b""          # DGRAM: a sockaddr to send to (unconnected socket)
    name: str = ""             # for messages
    vnet: bool = False         # TAP: opened with IFF_VNET_HDR (tap.open_tap's default)


@dataclass(frozen=True)
class Result:
    reason: int                # END_A, END_B, WATCHED, STOPPED, BAD_STREAM
    a_to_b: dict
    b_to_a: dict
    bad_len: int = 0
    bad_end: int = 0


def _c_end(e: End):
    c = ffi.new("struct pump_end *")
    c.kind, c.rfd, c.wfd = e.kind, e.rfd, e.wfd
    if len(e.watch) > lib.PUMP_MAX_WATCH:
        raise ValueError("too many watched fds")
    for i in range(lib.PUMP_MAX_WATCH):
        c.watch[i] = e.watch[i] if i < len(e.watch) else -1
    c.vnet = int(e.vnet)
    if e.peer:
        ffi.memmove(c.peer, e.peer, len(e.peer))
        c.peer_len = len(e.peer)
    return c


def _dir(st) -> dict:
    return {k: getattr(st, k)
            for k in ("frames", "bytes", "runts", "oversize", "send_errors", "merged")}


class Pump:
    """A pump with buffers that outlive one run: what is half-read or not yet written
    when a switch goes away is still there when the plug has reconnected."""

    def __init__(self, maxframe: int):
        self._p = lib.pump_new(maxframe)
        if self._p == ffi.NULL:
            raise OSError(22, f"maximum frame size must be 14..{MAX_FRAME}, not {maxframe}")

    def run(self, a: End, b: End, stop_fd: int) -> Result:
        """Blocks (without the GIL) until an end closes, a watched fd fires or stop_fd is
        readable. Raises OSError for a system error."""
        ca, cb = _c_end(a), _c_end(b)
        st = ffi.new("struct pump_stats *")
        r = lib.pump_run(self._p, ca, cb, stop_fd, st)
        if r < 0:
            raise OSError(-r, os.strerror(-r))
        return Result(r, _dir(st.a_to_b), _dir(st.b_to_a), st.bad_len, st.bad_end)

    def close(self) -> None:
        if self._p != ffi.NULL:
            lib.pump_free(self._p)
            self._p = ffi.NULL

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run(a: End, b: End, stop_fd: int, maxframe: int) -> Result:
    """One run with a pump of its own."""
    with Pump(maxframe) as p:
        return p.run(a, b, stop_fd)
