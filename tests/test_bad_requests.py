"""Bad control requests: each is refused with one log line naming the reason, never hangs
its client, and never disturbs the clients already connected (vde-protocol.md §1.7, §1.12)."""
import os
import re
import socket
import struct
import subprocess
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vdetest import (
    RawClient,
    frame,
    need,
    need_root,
    need_tool,
    wait_data_sockets,
    wait_for,
)

from switchd import control_request as cr

BCAST = "ff:ff:ff:ff:ff:ff"
A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


def sockaddr(path: bytes) -> bytes:
    return struct.pack("<H108s", socket.AF_UNIX, path)


def refused(sw, data: bytes | None, timeout: float = 3.0, eof: bool = False) -> str:
    """Sends data (None: nothing) on a new control connection, then end of stream if eof;
    returns the log line the switch wrote when it closed the connection without a reply."""
    before = sw.log_text().count("; closed")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(sw.dir / "ctl"))
    if data:
        s.sendall(data)
    if eof:
        s.shutdown(socket.SHUT_WR)
    start = time.monotonic()
    assert s.recv(200) == b"", "the switch replied to a bad request"
    assert time.monotonic() - start < timeout
    s.close()
    wait_for(lambda: sw.log_text().count("; closed") == before + 1, what="one log line")
    return [line for line in sw.log_text().splitlines() if line.endswith("; closed")][-1]


def assert_still_serving(a, b):
    f = frame(BCAST, A, os.urandom(40))
    a.send(f)
    assert b.recv() == f
    g = frame(A, B, os.urandom(40))
    b.send(g)
    assert a.recv() == g


@pytest.fixture
def busy_switch(switches, plugs):
    """A 3-port switch with two vde_plug clients already exchanging frames."""
    sw = switches("-n", "3", "--handshake-timeout", "1")
    a, b = plugs(str(sw.dir)), plugs(str(sw.dir))
    wait_data_sockets(sw.dir, 2)
    assert_still_serving(a, b)
    return sw, a, b


def test_each_bad_request_is_named(busy_switch, sockdir):
    sw, a, b = busy_switch
    good = cr.build(str(sockdir / "nobody-here"), None, "x")
    cases = [
        (b"GET / HTTP/1.0\r\n\r\n", r"bad magic 0x20544547 .*not supported"),
        (struct.pack("<II", cr.MAGIC, 2) + bytes(140), r"unsupported request version 2 "),
        (struct.pack("<II", cr.MAGIC, 4) + bytes(140), r"unsupported request version 4 "),
        (struct.pack("<III", cr.MAGIC, 3, 0x0302) + sockaddr(b"/tmp/x"), r"bad request type 2 "),
        (good[:100], r"truncated request: connection closed after 100 bytes", True),
        (None, r"connection closed before any request was sent", True),
        (good + b"d" * 200, r"oversize request: \d+ bytes \(at most 256\)"),
        (good, r"client socket .*/nobody-here is unreachable: No such file or directory"),
        (struct.pack("<III", cr.MAGIC, 3, 0) + sockaddr(b""), r"empty client socket path"),
        (None, r"no complete request within 1 s"),
        (good[:60], r"no complete request within 1 s"),
    ]
    for data, reason, *eof in cases:
        line = refused(sw, data, eof=bool(eof))
        assert re.search(r"control connection \d+ \(pid \d+, uid 0\): " + reason, line), line
        assert_still_serving(a, b)


def test_port_out_of_range_and_no_free_port(busy_switch, sockdir):
    sw, a, b = busy_switch
    c = RawClient(sw.dir, sockdir, "c")
    line = refused(sw, cr.build(c.path, 4, "too far"))
    assert line.endswith("port 4 out of range (0..3); closed")
    c.handshake(3, "third")                      # port 3 is still free and works
    a.send(frame(BCAST, A, b"to three"))
    assert c.recv() == frame(BCAST, A, b"to three") == b.recv()
    d = RawClient(sw.dir, sockdir, "d")
    line = refused(sw, cr.build(d.path, None, "fourth"))
    assert line.endswith("no free port (all 3 ports are in use or reserved); closed")
    assert_still_serving(a, b)
    c.close(), d.close()


def test_silent_connections_do_not_block_anyone(busy_switch, plugs):
    sw, a, b = busy_switch
    silent = []
    for _ in range(60):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(sw.dir / "ctl"))
        silent.append(s)
    c = plugs(str(sw.dir))                       # served at once, not after the silent ones
    wait_data_sockets(sw.dir, 3, timeout=0.9)
    a.send(frame(BCAST, A, b"all"))
    assert c.recv() == frame(BCAST, A, b"all") == b.recv()
    for s in silent:                             # each silent one is closed by the timeout
        s.settimeout(3)
        assert s.recv(10) == b""
        s.close()
    assert_still_serving(a, b)


def test_bytes_after_the_handshake_are_ignored(busy_switch, sockdir):
    sw, a, b = busy_switch
    c = RawClient(sw.dir, sockdir)
    c.handshake(None, "chatty")
    c.ctl.sendall(b"more bytes on the control stream")
    sw.wait_log(r"32 unexpected bytes after the handshake; ignored")
    a.send(frame(BCAST, A, b"still here"))
    assert c.recv() == frame(BCAST, A, b"still here") == b.recv()
    c.close()


def test_unprivileged_client_cannot_point_at_someone_elses_socket(switches, sockdir):
    need_root()
    need_tool("runuser")
    sw = switches("-m", "0666")
    victim = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    victim.bind(str(sockdir / "victim"))          # root's socket
    os.chmod(sockdir / "victim", 0o666)
    request = cr.build(str(sockdir / "victim"), None, "sneaky")
    script = ("import socket,sys; s=socket.socket(socket.AF_UNIX); s.settimeout(5);"
              f"s.connect({str(sw.dir / 'ctl')!r}); s.sendall(bytes.fromhex({request.hex()!r}));"
              "sys.stdout.write(repr(s.recv(200)))")
    need(os.path.exists("/usr/bin/python3"), "/usr/bin/python3 (Debian's python3)")
    r = subprocess.run(["runuser", "-u", "nobody", "--", "/usr/bin/python3", "-c", script],
                       capture_output=True, text=True, timeout=20)
    assert r.stdout == "b''", r.stderr
    sw.wait_log(r"uid 65534\): client socket .*/victim belongs to uid 0, not to the connecting"
                r" uid 65534; closed")
    victim.settimeout(0.3)
    with pytest.raises(socket.timeout):
        victim.recv(100)
    victim.close()


def malformed_requests():
    """Valid requests with one thing broken, and plain garbage."""
    good = cr.build("/tmp/pyvde-no-such-client", None, "fuzz")
    magic = st.integers(0, 2**32 - 1).filter(lambda m: m != cr.MAGIC)
    return st.one_of(
        st.binary(min_size=1, max_size=300),
        magic.map(lambda m: struct.pack("<I", m) + good[4:]),
        st.integers(0, 2**32 - 1).filter(lambda v: v not in (0, 1, 3)).map(
            lambda v: good[:4] + struct.pack("<I", v) + good[8:]),
        st.integers(2, 255).map(lambda t: good[:8] + struct.pack("<I", t) + good[12:]),
        st.integers(1, 121).map(lambda n: good[:n]),
        st.binary(min_size=135, max_size=400).map(lambda extra: good + extra),
        st.integers(0, 0xFFFF).map(lambda fam: good[:12] + struct.pack("<H", fam) + good[14:]),
    )


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=malformed_requests())
def test_malformed_requests_never_hang_or_disturb(busy_switch, data):
    sw, a, b = busy_switch
    line = refused(sw, data, timeout=3.0)
    assert re.search(r"control connection \d+ \(pid \d+, uid 0\): .+; closed$", line)
    assert sw.alive()
    assert_still_serving(a, b)
