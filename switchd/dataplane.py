"""Python's handle on the C forwarding engine (cffi_build/dataplane.c).

It configures the engine and reads its state; it never moves a frame. Every method
is a short locked call into C (the GIL is released by cffi meanwhile).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from ._dataplane import ffi, lib

NOVLAN = lib.DP_NOVLAN
MIN_FRAME = lib.DP_MIN_FRAME
MAX_FRAME = lib.DP_MAX_FRAME


def _check(r: int) -> int:
    if r < 0:
        raise OSError(-r, os.strerror(-r))
    return r


@dataclass(frozen=True)
class PortStats:
    in_frames: int
    in_bytes: int
    out_frames: int
    out_bytes: int
    drop_runt: int
    drop_oversize: int
    drop_vlan: int
    drop_tx: int
    drop_mirror: int = 0


@dataclass(frozen=True)
class MacEntry:
    mac: bytes
    vlan: int
    port: int
    bucket: int
    age: float  # seconds since last seen


EV_HASH_ADD = lib.DP_EV_HASH_ADD
EV_HASH_DEL = lib.DP_EV_HASH_DEL
EV_CAPTURE_ERROR = lib.DP_EV_CAPTURE_ERROR


@dataclass(frozen=True)
class Event:
    kind: int       # EV_*
    port: int
    err: int        # EV_CAPTURE_ERROR: errno
    vlan: int
    mac: bytes


@dataclass(frozen=True)
class CaptureInfo:
    active: bool
    err: int        # errno that stopped the last capture, 0
    frames: int
    bytes: int
    dropped: int    # records lost because the disk was slower than the port


def _entry(e) -> MacEntry:
    return MacEntry(bytes(ffi.buffer(e.mac, 6)), e.vlan, e.port, e.bucket, e.age_ms / 1000.0)


class DataPlane:
    """One forwarding engine with port slots 0 .. nslots-1."""

    def __init__(self, nslots: int, maxframe: int = 9234, hashsize: int = 128):
        if not MIN_FRAME <= maxframe <= MAX_FRAME:
            raise ValueError(f"maximum frame size must be {MIN_FRAME}..{MAX_FRAME}, not {maxframe}")
        self._dp = lib.dp_new(nslots, maxframe, hashsize)
        if self._dp == ffi.NULL:
            raise MemoryError("cannot create the data plane")

    # lifecycle
    def start(self) -> None:
        _check(lib.dp_start(self._dp))

    def stop(self) -> None:
        lib.dp_stop(self._dp)

    def close(self) -> None:
        if self._dp != ffi.NULL:
            lib.dp_free(self._dp)
            self._dp = ffi.NULL

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # endpoints
    def add_endpoint(self, port: int, fd: int) -> int:
        """Hands fd over to the engine (it closes it later); returns the endpoint id."""
        return _check(lib.dp_add_endpoint(self._dp, port, fd))

    def remove_endpoint(self, endpoint_id: int) -> None:
        _check(lib.dp_remove_endpoint(self._dp, endpoint_id))

    def endpoint_alive(self, endpoint_id: int) -> bool:
        return bool(_check(lib.dp_endpoint_alive(self._dp, endpoint_id)))

    # ports
    @property
    def nslots(self) -> int:
        return lib.dp_get_nslots(self._dp)

    def set_nslots(self, n: int) -> None:
        _check(lib.dp_set_nslots(self._dp, n))

    @property
    def maxframe(self) -> int:
        return lib.dp_get_maxframe(self._dp)

    @property
    def hub(self) -> bool:
        return bool(lib.dp_get_hub(self._dp))

    @hub.setter
    def hub(self, on: bool) -> None:
        lib.dp_set_hub(self._dp, 1 if on else 0)

    def port_active(self, port: int) -> bool:
        return bool(_check(lib.dp_port_active(self._dp, port)))

    def port_stats(self, port: int) -> PortStats:
        st = ffi.new("struct dp_port_stats *")
        _check(lib.dp_port_stats(self._dp, port, st))
        return PortStats(st.in_frames, st.in_bytes, st.out_frames, st.out_bytes,
                         st.drop_runt, st.drop_oversize, st.drop_vlan, st.drop_tx,
                         st.drop_mirror)

    def reset_stats(self, port: int | None = None) -> None:
        lib.dp_reset_stats(self._dp, -1 if port is None else port)

    def stats(self) -> dict[str, int]:
        st = ffi.new("struct dp_stats *")
        lib.dp_get_stats(self._dp, st)
        return {name: getattr(st, name) for name, _ in ffi.typeof("struct dp_stats").fields}

    # MAC table
    def table_config(self, expire: float, minpers: float, gcint: float) -> None:
        lib.dp_table_config(self._dp, int(expire * 1000), int(minpers * 1000), int(gcint * 1000))

    def table_resize(self, buckets: int) -> None:
        _check(lib.dp_table_resize(self._dp, buckets))

    @property
    def table_buckets(self) -> int:
        return lib.dp_table_buckets(self._dp)

    @property
    def table_count(self) -> int:
        return lib.dp_table_count(self._dp)

    def table_entries(self) -> list[MacEntry]:
        n = self.table_count + 64
        buf = ffi.new("struct mt_entry[]", n)
        got = _check(lib.dp_table_dump(self._dp, buf, n))
        return [_entry(buf[i]) for i in range(got)]

    def table_find(self, mac: bytes, vlan: int = 0) -> MacEntry | None:
        out = ffi.new("struct mt_entry *")
        if lib.dp_table_find(self._dp, mac, vlan, out) < 0:
            return None
        return _entry(out)

    def table_flush(self) -> None:
        lib.dp_table_flush(self._dp)

    # clock (tests move a manual clock to walk through aging)
    def use_manual_clock(self, now: float) -> None:
        lib.dp_clock_manual(self._dp, int(now * 1000))

    def use_real_clock(self) -> None:
        lib.dp_clock_real(self._dp)

    def now(self) -> float:
        return lib.dp_clock_now(self._dp) / 1000.0

    # VLANs
    def vlan_create(self, vlan: int) -> None:
        _check(lib.dp_vlan_create(self._dp, vlan))

    def vlan_remove(self, vlan: int) -> None:
        _check(lib.dp_vlan_remove(self._dp, vlan))

    def vlan_exists(self, vlan: int) -> bool:
        return bool(lib.dp_vlan_exists(self._dp, vlan))

    def set_untagged(self, port: int, vlan: int) -> None:
        _check(lib.dp_port_set_untagged(self._dp, port, vlan))

    def untagged(self, port: int) -> int:
        return _check(lib.dp_port_get_untagged(self._dp, port))

    def add_tagged(self, vlan: int, port: int) -> None:
        _check(lib.dp_vlan_add_tagged(self._dp, vlan, port))

    def del_tagged(self, vlan: int, port: int) -> None:
        _check(lib.dp_vlan_del_tagged(self._dp, vlan, port))

    def is_tagged(self, vlan: int, port: int) -> bool:
        return bool(lib.dp_vlan_is_tagged(self._dp, vlan, port))

    # events (learned/forgotten MACs, capture failures)
    @property
    def event_fd(self) -> int:
        return lib.dp_event_fd(self._dp)

    def set_hash_events(self, on: bool) -> None:
        lib.dp_set_hash_events(self._dp, 1 if on else 0)

    def read_events(self, maximum: int = 256) -> list[Event]:
        buf = ffi.new("struct dp_event[]", maximum)
        n = lib.dp_events_read(self._dp, buf, maximum)
        return [Event(buf[i].kind, buf[i].port, buf[i].err, buf[i].vlan,
                      bytes(ffi.buffer(buf[i].mac, 6))) for i in range(n)]

    # capture and mirroring
    def capture_start(self, port: int, fd: int, offset: int) -> None:
        """Hands fd (a file with its pcap header written up to offset) to the engine."""
        _check(lib.dp_capture_start(self._dp, port, fd, offset))

    def capture_stop(self, port: int) -> None:
        _check(lib.dp_capture_stop(self._dp, port))

    def capture_info(self, port: int) -> CaptureInfo:
        out = ffi.new("struct dp_capture_info *")
        _check(lib.dp_capture_info(self._dp, port, out))
        return CaptureInfo(bool(out.active), out.err, out.frames, out.bytes, out.dropped)

    def set_mirror(self, src: int, dst: int | None) -> None:
        _check(lib.dp_mirror_set(self._dp, src, -1 if dst is None else dst))

    def mirror(self, src: int) -> int | None:
        r = lib.dp_mirror_get(self._dp, src)
        if r == -1:
            return None
        return _check(r)

    def mirror_destination(self, port: int) -> bool:
        return _check(lib.dp_mirror_sources(self._dp, port)) > 0

    def vlan_stats(self, vlan: int) -> tuple[int, int]:
        out = ffi.new("struct dp_vlan_stats *")
        _check(lib.dp_vlan_stats(self._dp, vlan, out))
        return out.in_frames, out.in_bytes
