"""port/capture (pcap files of a port's traffic) and port/mirror (a SPAN-like copy port),
end to end: a real pyvde-switch, raw VDE clients on fixed ports, and the files read back
with our own strict pcap parser, tshark and tcpdump."""
from __future__ import annotations

import os
import re
import signal
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from vdetest import (
    PYVDE_SWITCH,
    RawClient,
    frame,
    need,
    need_root,
    need_tool,
    run,
    wait_for,
)

A, B, C, D = ("02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c",
              "02:00:00:00:00:0d")
BCAST = "ff:ff:ff:ff:ff:ff"
VLAN10_TAG = bytes.fromhex("8100000a")      # 802.1Q, priority 0, VID 10

PCAP_HEADER = struct.Struct("=IHHiIII")
RECORD_HEADER = struct.Struct("=IIII")


# ------------------------------------------------------------------ helpers

@dataclass
class Record:
    ts: float
    data: bytes


def read_pcap(path) -> tuple[int, list[Record]]:
    """(snaplen, records) of a whole pcap file; any cut record or odd header fails."""
    data = Path(path).read_bytes()
    assert len(data) >= PCAP_HEADER.size, f"{path}: {len(data)} bytes, no pcap header"
    magic, major, minor, zone, sigfigs, snaplen, linktype = PCAP_HEADER.unpack_from(data)
    assert (magic, major, minor, zone, sigfigs, linktype) == (0xA1B2C3D4, 2, 4, 0, 0, 1)
    records, off = [], PCAP_HEADER.size
    while off < len(data):
        assert off + RECORD_HEADER.size <= len(data), f"cut record header at {off}"
        sec, usec, caplen, origlen = RECORD_HEADER.unpack_from(data, off)
        assert caplen == origlen and usec < 1_000_000, (off, caplen, origlen, usec)
        body = data[off + RECORD_HEADER.size: off + RECORD_HEADER.size + caplen]
        assert len(body) == caplen, f"cut record at {off}"
        records.append(Record(sec + usec / 1e6, body))
        off += RECORD_HEADER.size + caplen
    return snaplen, records


def frames_in(path) -> list[bytes]:
    return [r.data for r in read_pcap(path)[1]]


def file_size(records: list[bytes]) -> int:
    return PCAP_HEADER.size + sum(RECORD_HEADER.size + len(f) for f in records)


def tshark(path, *fields: str) -> list[list[str]]:
    """One row of the given fields per frame; the file must read without complaint."""
    need_tool("tshark")
    cmd = ["tshark", "-r", str(path), "-T", "fields"]
    for f in fields:
        cmd += ["-e", f]
    r = run(*cmd, check=False, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "cut short" not in r.stderr and "appears to be damaged" not in r.stderr, r.stderr
    return [line.split("\t") for line in r.stdout.splitlines()]


def tagged(f: bytes, tag: bytes = VLAN10_TAG) -> bytes:
    return f[:12] + tag + f[12:]


def drain(client: RawClient, wait: float = 0.25) -> list[bytes]:
    """Every frame that arrives until `wait` seconds pass without one."""
    got = []
    client.data.settimeout(wait)
    while True:
        try:
            got.append(client.data.recv(70000))
        except TimeoutError:
            return got


class Net:
    """Steps of traffic: each step waits until its first recipient has the frame (so the
    switch has finished that round), and remembers what every client must end up with;
    check() then compares everything each client received with that, exactly."""

    def __init__(self, **clients: RawClient):
        self.clients = clients
        self.expected = {name: [] for name in clients}
        self.received = {name: [] for name in clients}

    def step(self, sender: str, f: bytes, *recipients: str | tuple[str, bytes]) -> None:
        """Sends f; each recipient is a client name (gets f) or (name, the bytes it gets)."""
        self.clients[sender].send(f)
        wanted = [(r, f) if isinstance(r, str) else r for r in recipients]
        for name, g in wanted:
            self.expected[name].append(g)
        if wanted:                  # what the first recipient had queued, up to this frame
            name, g = wanted[0]
            while not self.received[name] or self.received[name][-1] != g:
                self.received[name].append(self.clients[name].recv())

    def check(self) -> None:
        for name, client in self.clients.items():
            self.received[name] += drain(client)
        for name in self.clients:
            assert self.received[name] == self.expected[name], (
                f"client {name}: got {len(self.received[name])} frames "
                f"{[x[:16].hex() for x in self.received[name]]}, expected "
                f"{len(self.expected[name])} {[x[:16].hex() for x in self.expected[name]]}")
        for name in self.clients:
            self.expected[name].clear()
            self.received[name].clear()


@pytest.fixture
def raw(sockdir):
    """raw(sw, N): a RawClient plugged into port N of switch sw."""
    made: list[RawClient] = []

    def connect(sw, port: int) -> RawClient:
        c = RawClient(sw.dir, sockdir, f"p{port}")
        c.data.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        c.handshake(port=port)
        made.append(c)
        return c

    yield connect
    for c in made:
        c.close()


@pytest.fixture
def tiny_fs(sockdir):
    """tiny_fs(size): a tmpfs of that size mounted under sockdir (unmounted at the end;
    list this fixture before `switches` so the switch is stopped first)."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        need_root()
        need_tool("mount", "umount")
        mnt = sockdir / f"tiny{len(mounted)}"
        mnt.mkdir()
        r = run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mnt),
                check=False)
        need(r.returncode == 0, f"mounting a tmpfs ({r.stderr.strip()})")
        mounted.append(mnt)
        return mnt

    yield mount
    for mnt in mounted:
        if run("umount", str(mnt), check=False).returncode != 0:
            run("umount", "-l", str(mnt), check=False)


def switch_logged(sw, pattern: str) -> bool:
    return re.search(pattern, sw.log_text()) is not None


def written_or_stopped(sw, path: Path, size: int, stop_line: str) -> bool:
    """Waits until the file has grown to size (True) or the capture was stopped (False)."""
    wait_for(lambda: os.path.getsize(path) == size or switch_logged(sw, stop_line),
             what=f"{path} to reach {size} bytes, or {stop_line!r}")
    return not switch_logged(sw, stop_line)


def status(sw, line: str) -> str:
    return sw.try_command(line)[1]


# ------------------------------------------------------------------ capture

def test_capture_records_both_directions_exact_bytes_in_order(switch, raw, sockdir):
    a, b, c = raw(switch, 1), raw(switch, 2), raw(switch, 3)
    cap = sockdir / "port1.pcap"
    t0 = time.time()
    switch.command(f"port/capture 1 {cap}")
    net = Net(a=a, b=b, c=c)
    f1 = frame(BCAST, B, b"broadcast from 2 " + bytes(range(40)))       # egress to 1
    f2 = frame(BCAST, A, b"broadcast from 1 " + bytes(range(200)))      # ingress of 1
    f3 = frame(B, A, b"unicast 1->2 " + os.urandom(1000))               # ingress of 1
    f4 = frame(A, B, b"unicast 2->1 " + os.urandom(77))                 # egress to 1
    f5 = frame(B, C, b"unicast 3->2, not port 1's business")            # not on port 1
    f6 = frame(BCAST, C, b"broadcast from 3")                           # egress to 1
    f7 = frame(A, C)                                                    # 14 bytes, to 1
    net.step("b", f1, "a", "c")
    net.step("a", f2, "b", "c")
    net.step("a", f3, "b")
    net.step("b", f4, "a")
    net.step("c", f5, "b")
    net.step("c", f6, "a", "b")
    net.step("c", f7, "a")
    net.check()
    want = [f1, f2, f3, f4, f6, f7]
    (line,) = switch.command("port/capture 1")
    assert line == (f"Port 0001 capture {cap} frames {len(want)}"
                    f" bytes {sum(map(len, want))} dropped 0")
    assert switch.command("port/capture") == [line]
    switch.command("port/capture 1 off")
    t1 = time.time()

    snaplen, records = read_pcap(cap)
    assert snaplen >= 9234 + 4
    assert [r.data for r in records] == want
    assert all(t0 - 1 <= r.ts <= t1 + 1 for r in records), [r.ts for r in records]
    assert [r.ts for r in records] == sorted(r.ts for r in records)
    assert tshark(cap, "frame.len", "eth.src", "eth.dst") == [
        [str(len(f1)), B, BCAST], [str(len(f2)), A, BCAST], [str(len(f3)), A, B],
        [str(len(f4)), B, A], [str(len(f6)), C, BCAST], [str(len(f7)), C, A]]
    need_tool("tcpdump")
    r = run("tcpdump", "-nn", "-e", "-r", str(cap), check=False, timeout=30)
    assert r.returncode == 0, r.stderr
    summaries = [x for x in r.stdout.splitlines() if not x.startswith("\t")]   # no hex dumps
    assert len(summaries) == len(want), r.stdout

    a.send(frame(B, A, b"after off"))                  # stopped: the file stays as it is
    assert b.recv() == frame(B, A, b"after off")
    assert frames_in(cap) == want
    assert status(switch, "port/capture 1") == "1002 No such file or directory"
    assert status(switch, "port/capture 1 off") == "1002 No such file or directory"
    assert switch.command("port/capture") == []


def test_readers_see_frames_while_the_capture_runs(switch, raw, sockdir):
    a, b = raw(switch, 1), raw(switch, 2)
    cap = sockdir / "live.pcap"
    switch.command(f"port/capture 2 {cap}")
    sent = []
    for i in range(3):
        f = frame(BCAST, A, bytes([i]) * (100 + i))
        a.send(f)
        assert b.recv() == f
        sent.append(f)
        wait_for(lambda: os.path.getsize(cap) == file_size(sent), timeout=3,
                 what=f"record {i} in the live file")
        assert frames_in(cap) == sent
        rows = wait_for(lambda: tshark(cap, "frame.len", "eth.src"), timeout=10,
                        what="tshark to read the live file")
        assert rows == [[str(len(x)), A] for x in sent]
    (line,) = switch.command("port/capture 2")          # still running
    assert line == f"Port 0002 capture {cap} frames 3 bytes {sum(map(len, sent))} dropped 0"


def test_capture_shows_each_frame_in_the_form_it_crosses_the_port(switch, raw, sockdir):
    """Port 2: access port of VLAN 10; port 3: trunk (untagged 0, tagged 10); port 4
    mirrors the trunk. The same frame is untagged on 2 and tagged on 3 and 4."""
    a, b, c, d = raw(switch, 1), raw(switch, 2), raw(switch, 3), raw(switch, 4)
    for line in ("vlan/create 10", "port/setvlan 2 10", "vlan/addport 10 3", "port/mirror 3 4"):
        switch.command(line)
    caps = {n: sockdir / f"port{n}.pcap" for n in (2, 3, 4)}
    for n, path in caps.items():
        switch.command(f"port/capture {n} {path}")
    net = Net(a=a, b=b, c=c, d=d)
    f = frame(BCAST, B, b"from the access port")
    net.step("b", f, ("c", tagged(f)), ("d", tagged(f)))     # tagged towards the trunk
    g = frame(B, C, b"tagged unicast from the trunk")
    net.step("c", tagged(g), ("b", g), ("d", tagged(g)))     # stripped for the access port
    h = frame(BCAST, C, b"untagged broadcast on VLAN 0")
    net.step("c", h, "a", "d")
    net.check()
    for n in (2, 3, 4):
        switch.command(f"port/capture {n} off")

    assert frames_in(caps[2]) == [f, g]
    assert frames_in(caps[3]) == [tagged(f), tagged(g), h]
    assert frames_in(caps[4]) == [tagged(f), tagged(g), h]
    assert tshark(caps[2], "vlan.id", "eth.src") == [["", B], ["", C]]
    assert tshark(caps[3], "vlan.id", "eth.src") == [["10", B], ["10", C], ["", C]]
    assert tshark(caps[4], "vlan.id", "eth.src") == [["10", B], ["10", C], ["", C]]


def test_tagged_jumbo_at_maxframe_is_captured_whole(switches, raw, sockdir):
    """A maxframe-sized frame gets 4 bytes longer when it is tagged for a trunk: the pcap
    snaplen must cover that, or libpcap readers (tcpdump) cut the record."""
    need_tool("tcpdump")
    sw = switches("--maxframe", "65550")
    b, c = raw(sw, 2), raw(sw, 3)
    for line in ("vlan/create 10", "port/setvlan 2 10", "vlan/addport 10 3"):
        sw.command(line)
    cap = sockdir / "trunk.pcap"
    sw.command(f"port/capture 3 {cap}")
    big = frame(BCAST, B, os.urandom(65550 - 14))
    b.send(big)
    assert c.recv() == tagged(big)
    sw.command("port/capture 3 off")
    snaplen, records = read_pcap(cap)
    assert [r.data for r in records] == [tagged(big)]
    assert snaplen >= 65554
    copy = sockdir / "copy.pcap"                      # what libpcap reads, written back out
    r = run("tcpdump", "-r", str(cap), "-w", str(copy), check=False, timeout=30)
    assert r.returncode == 0, r.stderr
    assert frames_in(copy) == [tagged(big)]


def test_capture_command_errors(switch, raw, sockdir):
    raw(switch, 1)
    cap = sockdir / "one.pcap"
    switch.command(f"port/capture 1 {cap}")
    assert status(switch, f"port/capture 1 {sockdir / 'other.pcap'}") == \
        "1016 Device or resource busy"
    assert not (sockdir / "other.pcap").exists()
    assert status(switch, f"port/capture 2 {sockdir / 'missing' / 'x.pcap'}") == \
        "1002 No such file or directory"
    assert status(switch, f"port/capture 2 {sockdir}") == "1021 Is a directory"
    assert status(switch, f"port/capture 99 {sockdir / 'x.pcap'}") == "1022 Invalid argument"
    assert status(switch, f"port/capture x {sockdir / 'x.pcap'}") == "1022 Invalid argument"
    assert status(switch, "port/capture 2") == "1002 No such file or directory"
    assert status(switch, "port/capture 2 off") == "1002 No such file or directory"
    assert status(switch, "port/capture 3 /dev/full") == "1028 No space left on device"
    assert switch.command("port/capture") == [f"Port 0001 capture {cap} frames 0 bytes 0 dropped 0"]
    assert not list(sockdir.glob("x.pcap"))


def test_capture_to_a_fifo_is_refused_without_hanging_the_switch(switch, raw, sockdir):
    """pcap records are written with pwrite() at known offsets, so a FIFO cannot work; the
    switch must say so at once instead of blocking in open() until someone reads."""
    a, b = raw(switch, 1), raw(switch, 2)
    fifo = sockdir / "fifo"
    os.mkfifo(fifo)
    try:
        assert status(switch, f"port/capture 1 {fifo}") == "1029 Illegal seek"
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)    # someone reads: still no
        try:
            assert status(switch, f"port/capture 1 {fifo}") == "1029 Illegal seek"
        finally:
            os.close(reader)
        assert switch.command("port/capture") == []
        a.send(frame(BCAST, A, b"still forwarding"))
        assert b.recv() == frame(BCAST, A, b"still forwarding")
    finally:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)        # frees a switch stuck in open()
        time.sleep(0.2)
        os.close(fd)


def test_full_disk_stops_the_capture_keeps_whole_records_and_forwarding(
        tiny_fs, switches, raw, sockdir):
    mnt = tiny_fs("64k")
    sw = switches()
    a, b, c = raw(sw, 1), raw(sw, 2), raw(sw, 3)
    cap = mnt / "port1.pcap"
    sw.command(f"port/capture 1 {cap}")
    hello = frame(BCAST, B, b"hello")
    b.send(hello)
    assert a.recv() == hello and c.recv() == hello
    written = [hello]
    wait_for(lambda: os.path.getsize(cap) == file_size(written), what="first record")
    stop_line = rf"port 1: capture to {re.escape(str(cap))} stopped: No space left on device"
    for i in range(100):                    # 64 KiB hold 64 records of 1000-byte frames
        f = frame(B, A, bytes([i]) * 986)
        a.send(f)
        assert b.recv() == f
        # one record per write: wait until this one is on disk (or the capture stopped)
        if not written_or_stopped(sw, cap, file_size(written + [f]), stop_line):
            break
        written.append(f)
    else:
        raise AssertionError("the capture never hit the end of the 64k file system")
    fits = 0
    while file_size([hello] + [bytes(1000)] * (fits + 1)) <= 64 * 1024:
        fits += 1
    assert len(written) == 1 + fits == 65

    assert sw.alive()
    assert status(sw, "port/capture 1") == "1002 No such file or directory"
    assert status(sw, "port/capture 1 off") == "1002 No such file or directory"
    assert sw.command("port/capture") == []
    assert os.path.getsize(cap) == file_size(written)
    assert frames_in(cap) == written
    assert [row[0] for row in tshark(cap, "frame.len")] == [str(len(x)) for x in written]

    f = frame(C, B, b"2 to 3 after the failure")   # forwarding goes on
    c.send(frame(BCAST, C, b"3 is here"))
    assert a.recv() == frame(BCAST, C, b"3 is here") and b.recv() == frame(BCAST, C, b"3 is here")
    b.send(f)
    assert c.recv() == f
    a.send(frame(B, A, b"1 to 2 after the failure"))
    assert b.recv() == frame(B, A, b"1 to 2 after the failure")

    again = sockdir / "again.pcap"                 # and port 1 can be captured again
    sw.command(f"port/capture 1 {again}")
    a.send(frame(B, A, b"captured again"))
    assert b.recv() == frame(B, A, b"captured again")
    sw.command("port/capture 1 off")
    assert frames_in(again) == [frame(B, A, b"captured again")]


def test_full_disk_keeps_every_whole_record_of_the_last_batch(tiny_fs, switches, raw, sockdir):
    """Ports 1 and 2 both mirror to port 3, so one frame from 1 to 2 gives port 3 two
    records in the same round (one batch). 16 KiB hold the header and 13 records of
    1216 bytes: the 7th frame's first record fits, its second does not."""
    mnt = tiny_fs("16k")
    sw = switches()
    sw.command("port/mirror 1 3")
    sw.command("port/mirror 2 3")
    a, b, _c = raw(sw, 1), raw(sw, 2), raw(sw, 3)
    cap = mnt / "port3.pcap"
    sw.command(f"port/capture 3 {cap}")
    stop_line = rf"port 3: capture to {re.escape(str(cap))} stopped: No space left on device"
    sent = []
    for i in range(10):
        f = frame(B, A, bytes([i]) * 1186)
        a.send(f)
        assert b.recv() == f
        sent.append(f)
        if not written_or_stopped(sw, cap, file_size([x for x in sent for _ in (0, 1)]),
                                  stop_line):
            break
    assert len(sent) == 7
    records = frames_in(cap)
    assert records == [x for x in sent[:6] for _ in (0, 1)] + [sent[6]]
    assert file_size(records) <= 16 * 1024 < file_size(records + [sent[6]])


# ------------------------------------------------------------------ --capture option

def test_capture_option_records_from_the_start_and_exit_closes_the_files(switches, raw, sockdir):
    cap1, cap2 = sockdir / "one.pcap", sockdir / "two.pcap"
    sw = switches("--capture", f"1:{cap1}", "--capture", f"2:{cap2}")
    assert sw.command("port/capture") == [
        f"Port 0001 capture {cap1} frames 0 bytes 0 dropped 0",
        f"Port 0002 capture {cap2} frames 0 bytes 0 dropped 0"]
    assert read_pcap(cap1)[1] == [] and read_pcap(cap2)[1] == []
    a, b = raw(sw, 1), raw(sw, 2)
    f1, f2 = frame(BCAST, A, b"first"), frame(A, B, b"second")
    a.send(f1)
    assert b.recv() == f1
    b.send(f2)
    assert a.recv() == f2
    assert sw.stop() == 0                             # SIGTERM: captures end whole
    assert frames_in(cap1) == [f1, f2] and frames_in(cap2) == [f1, f2]
    log = sw.log_text()
    assert f"port 1: capture to {cap1} stopped after 2 frames (0 dropped: disk too slow)" in log
    assert f"port 2: capture to {cap2} stopped after 2 frames (0 dropped: disk too slow)" in log
    assert not sw.dir.exists() and not os.path.exists(sw.mgmt_path)


@pytest.mark.parametrize("value,message", [
    ("1:{dir}/missing/x.pcap", "No such file or directory"),
    ("99:{dir}/x.pcap", "port 99 out of range"),
    ("{dir}/x.pcap", "is not PORT:FILE"),
])
def test_capture_option_errors_stop_the_start(sockdir, value, message):
    d = sockdir / "sw"
    value = value.format(dir=sockdir)
    r = run(PYVDE_SWITCH, "-s", str(d), "--nostdin", "--capture", value, check=False,
            timeout=10)
    assert r.returncode == 1
    assert message in r.stderr.splitlines()[0], r.stderr
    assert len(r.stderr.strip().splitlines()) == (2 if "PORT:FILE" in message else 1)
    assert not d.exists()
    assert not (sockdir / "x.pcap").exists()


def test_daemon_reports_a_failing_capture_option(sockdir):
    d, pid = sockdir / "daemon", sockdir / "d.pid"
    r = run(PYVDE_SWITCH, "-d", "-s", str(d), "-p", str(pid),
            "--capture", f"1:{sockdir}/missing/x.pcap", check=False, timeout=10)
    try:
        assert r.returncode == 1 and "No such file or directory" in r.stderr, (r.returncode,
                                                                              r.stderr)
    finally:
        if pid.exists():
            try:
                os.kill(int(pid.read_text()), signal.SIGTERM)
            except (ValueError, ProcessLookupError):
                pass
        wait_for(lambda: not d.exists() and not pid.exists(), what="daemon gone")


# ------------------------------------------------------------------ mirror

def test_mirror_copies_both_directions_and_nothing_else(switch, raw):
    a, b, c, d = raw(switch, 1), raw(switch, 2), raw(switch, 3), raw(switch, 4)
    switch.command("port/mirror 1 3")
    assert switch.command("port/mirror") == ["Port 0001 mirrored to port 0003"]
    assert switch.command("vlan/print 0")[1:] == [
        " -- Port 0001 tagged=0 active=1 status=Forwarding",
        " -- Port 0002 tagged=0 active=1 status=Forwarding",
        " -- Port 0003 tagged=0 active=1 status=Discarding",
        " -- Port 0004 tagged=0 active=1 status=Forwarding"]
    net = Net(a=a, b=b, c=c, d=d)
    f1 = frame(BCAST, B, b"broadcast from 2")
    net.step("b", f1, "a", "d", "c")        # port 3: once, as the copy of 1's egress
    f2 = frame(BCAST, A, b"broadcast from 1")
    net.step("a", f2, "b", "d", "c")        # the copy of 1's ingress
    f3 = frame(B, A, b"unicast 1->2" + os.urandom(500))
    net.step("a", f3, "b", "c")
    f4 = frame(A, B, b"unicast 2->1" + os.urandom(60))
    net.step("b", f4, "a", "c")
    f5 = frame(BCAST, D, b"broadcast from 4")
    net.step("d", f5, "a", "b", "c")
    net.step("b", frame(D, B, b"2->4, port 1 not involved"), "d")
    f7 = frame(C, D, b"to an unknown MAC: flooded")
    net.step("d", f7, "a", "b", "c")        # once: port 3 itself is not flooded to
    net.step("b", frame(D, B, b"short"), "d")
    net.step("c", frame(BCAST, C, b"a mirror port only listens"))   # dropped: nobody gets it
    net.step("c", frame(A, C, b"not even unicast"))
    net.step("b", frame(D, B, b"after port 3 spoke"), "d")
    net.check()
    assert switch.command("port/counters 3")[0].endswith(" tx 0 mirror 2")
    assert C not in "\n".join(switch.command("hash/print"))      # nor learned

    switch.command("port/mirror 1 off")
    assert switch.command("port/mirror") == []
    assert " -- Port 0003 tagged=0 active=1 status=Forwarding" in switch.command("vlan/print 0")
    net.step("b", frame(BCAST, B, b"after off"), "a", "c", "d")    # a normal port again
    net.step("a", frame(B, A, b"unicast after off"), "b")
    net.step("c", frame(BCAST, C, b"port 3 speaks"), "a", "b", "d")
    net.step("a", frame(C, A, b"to port 3"), "c")
    net.check()


def test_two_sources_mirrored_to_one_port_give_a_copy_each(switch, raw):
    a, b, c, d = raw(switch, 1), raw(switch, 2), raw(switch, 3), raw(switch, 4)
    switch.command("port/mirror 1 3")
    switch.command("port/mirror 2 3")
    assert switch.command("port/mirror") == ["Port 0001 mirrored to port 0003",
                                             "Port 0002 mirrored to port 0003"]
    net = Net(a=a, b=b, c=c, d=d)
    f = frame(BCAST, A, b"from 1")
    net.step("a", f, "b", "d", "c", "c")    # 1's ingress and 2's egress
    g = frame(BCAST, D, b"from 4")
    net.step("d", g, "a", "b", "c", "c")    # 1's egress and 2's egress
    net.check()


def test_capture_on_a_mirror_destination_records_the_copies(switch, raw, sockdir):
    a, b, c, d = raw(switch, 1), raw(switch, 2), raw(switch, 3), raw(switch, 4)
    switch.command("port/mirror 1 3")
    cap = sockdir / "mirror.pcap"
    switch.command(f"port/capture 3 {cap}")
    net = Net(a=a, b=b, c=c, d=d)
    copies = [frame(BCAST, B, b"one"), frame(BCAST, A, b"two"), frame(B, A, b"three"),
              frame(A, B, b"four" * 100)]
    net.step("b", copies[0], "a", "d", "c")
    net.step("a", copies[1], "b", "d", "c")
    net.step("a", copies[2], "b", "c")
    net.step("b", copies[3], "a", "c")
    net.step("d", frame(B, D, b"not port 1's"), "b")
    net.check()
    switch.command("port/capture 3 off")
    assert frames_in(cap) == copies
    assert tshark(cap, "eth.src", "eth.dst") == [[B, BCAST], [A, BCAST], [A, B], [B, A]]


def test_mirror_command_errors(switch, raw):
    raw(switch, 1), raw(switch, 2), raw(switch, 3)
    switch.command("port/mirror 1 3")
    assert status(switch, "port/mirror 1 1") == "1022 Invalid argument"     # itself
    assert status(switch, "port/mirror 2 1") == "1022 Invalid argument"     # 1 mirrors
    assert status(switch, "port/mirror 3 2") == "1022 Invalid argument"     # 3 is a copy port
    assert status(switch, "port/mirror 2 99") == "1022 Invalid argument"
    assert status(switch, "port/mirror 99 2") == "1022 Invalid argument"
    assert status(switch, "port/mirror x 2") == "1022 Invalid argument"
    assert status(switch, "port/mirror 2") == "1022 Invalid argument"
    assert status(switch, "port/mirror 2 off") == "1002 No such file or directory"
    assert switch.command("port/mirror") == ["Port 0001 mirrored to port 0003"]
    switch.command("port/mirror 1 off")
    assert status(switch, "port/mirror 1 off") == "1002 No such file or directory"
    switch.command("port/mirror 3 2")                   # no longer a copy port: fine now
    assert switch.command("port/mirror") == ["Port 0003 mirrored to port 0002"]
