"""pyvde-slirp's C data path for established TCP (cffi_build/tcp_fast.c) with real guests:
bulk data both ways arrives intact, over a clean link, a lossy one (the connection leaves
C for loss recovery and comes back) and to a host reader too slow for it (the socket fills,
the window shuts and reopens); the same with --no-fast-path, which never uses C."""
from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_slirp import dhcp_in, slirp, tap_in  # noqa: F401  (slirp is a fixture)
from vdetest import wait_for

PYVDE_WIREFILTER = str(Path(sys.executable).parent / "pyvde-wirefilter")
UP = 8 << 20                    # bytes the namespace sends
DOWN = 8 << 20                  # bytes the host sends back


class HashServer:
    """On the host's loopback: reads everything the client sends (after `delay` seconds,
    slowly if `slow`), answers with the sha256 of it and then DOWN bytes, then closes."""

    def __init__(self, delay: float = 0.0, slow: bool = False):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.reply = os.urandom(DOWN)
        self.got: list[bytes] = []
        self.delay, self.slow = delay, slow
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        c, _ = self.sock.accept()
        with c:
            time.sleep(self.delay)
            data = bytearray()
            while len(data) < UP:
                chunk = c.recv(4096 if self.slow else 1 << 16)
                if not chunk:
                    break
                data += chunk
                if self.slow:
                    time.sleep(0.0005)
            self.got.append(bytes(data))
            c.sendall(hashlib.sha256(data).digest() + self.reply)

    def close(self) -> None:
        self.sock.close()


CLIENT = """
import hashlib, os, socket, sys
up = os.urandom({up})
s = socket.create_connection(("10.0.2.2", {port}), timeout=60)
s.sendall(up)
got = bytearray()
while chunk := s.recv(1 << 16):
    got += chunk
ok = got[:32] == hashlib.sha256(up).digest()
print("UP-OK" if ok else "UP-BAD", len(got) - 32, hashlib.sha256(got[32:]).hexdigest())
"""


def transfer(ns, server: HashServer) -> None:
    r = ns.exec(sys.executable, "-c", CLIENT.format(up=UP, port=server.port), check=False,
                timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    server.thread.join(30)
    assert server.got and len(server.got[0]) == UP, "the host did not get all the upload"
    words = r.stdout.split()
    assert words[:2] == ["UP-OK", str(DOWN)], r.stdout
    assert words[2] == hashlib.sha256(server.reply).hexdigest(), "the download was damaged"


def report(s) -> str:
    """The router's report line (SIGUSR1), as it logs it."""
    before = s.log.read_text().count(" UDP, ")
    s.proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: s.log.read_text().count(" UDP, ") > before, what="the report")
    return [ln for ln in s.log.read_text().splitlines() if " UDP, " in ln][-1]


def handed_and_taken_back(s) -> tuple[int, int]:
    """How many times a connection was handed to C, and taken back from it."""
    line = report(s)
    m = re.search(r"handed to C (\d+) times, taken back (\d+)", line)
    assert m, line
    return int(m[1]), int(m[2])


def setup(slirp, netns, sockdir, *args):  # noqa: F811
    s = slirp("-D", *args)
    ns = netns()
    tap = tap_in(ns, slirp.switch.dir)
    dhcp_in(ns, sockdir)
    return s, ns, tap


@pytest.mark.parametrize("mode", ["C", "--no-fast-path"])
def test_bulk_both_ways_intact(mode, slirp, netns, sockdir):  # noqa: F811
    s, ns, tap = setup(slirp, netns, sockdir, *([] if mode == "C" else [mode]))
    server = HashServer()
    try:
        transfer(ns, server)
        if mode == "C":
            handed, _ = handed_and_taken_back(s)
            assert handed >= 1
        else:
            assert "handed to C" not in report(s)
    finally:
        server.close()
        tap.terminate(), tap.wait()


def test_host_reader_slower_than_the_guest(slirp, netns, sockdir):  # noqa: F811
    """The host socket fills: C gives the connection back, the window to the guest shuts
    and reopens when the socket drains; nothing is lost."""
    s, ns, tap = setup(slirp, netns, sockdir)
    server = HashServer(delay=1.0, slow=True)
    try:
        transfer(ns, server)
        handed, back = handed_and_taken_back(s)
        assert handed >= 2 and back >= 1, (handed, back)
    finally:
        server.close()
        tap.terminate(), tap.wait()


@pytest.mark.parametrize("mode", ["C", "--no-fast-path"])
def test_lossy_link(mode, switches, slirp, netns, sockdir):  # noqa: F811
    """The namespace reaches the router's switch through pyvde-wirefilter --loss 1:
    duplicate ACKs and timeouts take the connection out of C; once recovered it goes
    back; both directions arrive intact."""
    s = slirp("-D", *([] if mode == "C" else [mode]))
    guest_sw = switches(name="guestsw")
    wire = subprocess.Popen([PYVDE_WIREFILTER, "-v", f"{guest_sw.dir}:{slirp.switch.dir}",
                             "--loss", "1"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ns = netns()
    tap = tap_in(ns, guest_sw.dir)
    server = HashServer()
    try:
        dhcp_in(ns, sockdir)
        transfer(ns, server)
        if mode == "C":
            handed, back = handed_and_taken_back(s)
            assert handed >= 2 and back >= 1, (handed, back)
    finally:
        server.close()
        tap.terminate(), tap.wait()
        wire.terminate(), wire.wait()
