"""Per-port packet capture to pcap files (port/capture, --capture): pyvde's addition.

Python opens the file and writes the pcap file header; the C data plane then owns the
file and appends one record per frame the port receives or is sent (in the form it
crosses that port: with or without its 802.1Q tag). Records are handed to a writer
thread at the end of every forwarding round, so `tcpdump -r` or Wireshark see frames
while the capture runs; a disk slower than the port loses records (counted as
`dropped`), never forwarding speed. A write error (a full disk) makes the writer
truncate the file to its last whole record and stop the capture; the switch logs it and
keeps forwarding.
"""
from __future__ import annotations

import errno
import logging
import os
import stat
import struct
from dataclasses import dataclass

from .console import CommandError, Context

log = logging.getLogger("pyvde-switch")

PCAP_MAGIC = 0xA1B2C3D4          # microsecond timestamps, host byte order
LINKTYPE_ETHERNET = 1
VLAN_TAG_LEN = 4


def pcap_header(snaplen: int) -> bytes:
    """The 24-byte pcap global header (version 2.4, Ethernet)."""
    return struct.pack("=IHHiIII", PCAP_MAGIC, 2, 4, 0, 0, max(snaplen, 65535), LINKTYPE_ETHERNET)


def _open_seekable(path: str) -> int:
    """Opens (creates, truncates) a capture file without ever blocking the control plane.

    Records are written with pwrite() at known offsets, so the file must be seekable: a
    FIFO or socket is refused with ESPIPE (a blocking open of a FIFO nobody reads would
    freeze the whole console until someone did)."""
    try:
        st = os.stat(path)
    except OSError:
        st = None
    if st is not None and (stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode)):
        raise CommandError(errno.ESPIPE, f"{path}: not a seekable file")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NONBLOCK,
                     0o640)
    except OSError as e:
        raise CommandError(e.errno or errno.EIO, f"{path}: {e.strerror}") from None
    try:
        os.lseek(fd, 0, os.SEEK_CUR)       # a FIFO swapped in after the stat fails here
        os.set_blocking(fd, True)
    except OSError as e:
        os.close(fd)
        raise CommandError(e.errno or errno.EIO, f"{path}: {e.strerror}") from None
    return fd


@dataclass
class Capture:
    port: int
    path: str


class Captures:
    def __init__(self, switch):
        self.switch = switch
        self.running: dict[int, Capture] = {}

    @property
    def dp(self):
        return self.switch.dataplane

    def start(self, port: int, path: str) -> None:
        if not self.switch.ports.in_range(port):
            raise CommandError(errno.EINVAL, f"port {port} out of range")
        if port in self.running:
            raise CommandError(errno.EBUSY, f"port {port} is already captured to "
                                            f"{self.running[port].path}")
        fd = _open_seekable(path)
        try:
            # the longest record: a maxframe frame that gets an 802.1Q tag on the way out
            header = pcap_header(self.dp.maxframe + VLAN_TAG_LEN)
            if os.write(fd, header) != len(header):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.dp.capture_start(port, fd, len(header))
        except OSError as e:
            os.close(fd)
            raise CommandError(e.errno or errno.EIO, f"{path}: {e.strerror}") from None
        self.running[port] = Capture(port, path)
        log.info("port %d: capturing to %s", port, path)

    def stop(self, port: int) -> None:
        cap = self.running.pop(port, None)
        if cap is None:
            raise CommandError(errno.ENOENT, f"port {port} is not being captured")
        err = 0
        try:
            self.dp.capture_stop(port)
        except OSError as e:
            # ENOENT: the data plane closed it after a failed write, just now (its event
            # will find nothing left to report); otherwise a write failed on the way out.
            err = e.errno if e.errno != errno.ENOENT else self.dp.capture_info(port).err
        info = self.dp.capture_info(port)
        if err:
            self._log_failure(port, cap.path, err)
        else:
            log.info("port %d: capture to %s stopped after %d frames (%d dropped: disk too slow)",
                     port, cap.path, info.frames, info.dropped)

    def stop_all(self) -> None:
        for port in list(self.running):
            self.stop(port)

    def failed(self, port: int, err: int) -> None:
        """The data plane stopped a capture because a write failed."""
        cap = self.running.pop(port, None)
        if cap is not None:       # else port/capture N off got there first and logged it
            self._log_failure(port, cap.path, err)

    @staticmethod
    def _log_failure(port: int, path: str, err: int) -> None:
        log.error("port %d: capture to %s stopped: %s (the file keeps every whole frame "
                  "written before)", port, path, os.strerror(err))

    def ports_resized(self, numports: int) -> None:
        for port in [p for p in self.running if p > numports]:
            self.running.pop(port)     # the data plane closed it with the port

    def status_lines(self, ports: list[int]) -> list[str]:
        lines = []
        for port in ports:
            cap = self.running.get(port)
            if cap is None:
                continue
            info = self.dp.capture_info(port)
            lines.append(f"Port {port:04d} capture {cap.path} frames {info.frames}"
                         f" bytes {info.bytes} dropped {info.dropped}")
        return lines


def register_commands(table, captures: Captures) -> None:
    @table.command("port/capture", "[N [FILE|off]]",
                   "write port N's frames to a pcap FILE (no FILE: show; no N: list)", data=True)
    def capture(ctx: Context) -> None:
        words = ctx.arg.split(maxsplit=1)
        if not words:
            ctx.out += captures.status_lines(sorted(captures.running))
            return
        try:
            port = int(words[0], 10)
        except ValueError:
            raise CommandError(errno.EINVAL, f"'{words[0]}' is not a port number") from None
        if len(words) == 1:
            if port not in captures.running:
                raise CommandError(errno.ENOENT)
            ctx.out += captures.status_lines([port])
        elif words[1] == "off":
            captures.stop(port)
        else:
            captures.start(port, words[1])
