"""pyvde-wirefilter between real switches: what the traffic gets is what was asked for."""
from __future__ import annotations

import math
import select
import socket
import subprocess
import time
from pathlib import Path

import pytest
from vdetest import Console, RawClient, UnixTerm, frame, need_tool, wait_for

PYVDE_WIREFILTER = str(Path(__import__("sys").executable).parent / "pyvde-wirefilter")
A, B = "02:00:00:00:0a:01", "02:00:00:00:0b:01"
WF = b"\nVDEwf$ "


@pytest.fixture
def wf(sockdir):
    made = []

    def start(left, right, *args, mgmt=True):
        cmd = [PYVDE_WIREFILTER, "-v", f"{left}:{right}", *args]
        path = None
        if mgmt:
            path = str(sockdir / f"wf{len(made)}.mgmt")
            cmd += ["-M", path]
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        made.append(p)
        if mgmt:
            wait_for(lambda: Path(path).exists() or p.poll() is not None, what="wirefilter")
            assert p.poll() is None, p.stderr.read()
        p.mgmt = path
        return p

    yield start
    for p in made:
        if p.poll() is None:
            p.terminate()
            assert p.wait(10) == 0


@pytest.fixture
def two(switches, sockdir):
    """Two pyvde-switches with a raw client on port 1 of each."""
    s1, s2 = switches(name="s1"), switches(name="s2")
    clients = []

    def client(sw, name):
        c = RawClient(sw.dir, sockdir, name)
        c.data.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        c.handshake(port=1)
        clients.append(c)
        return c
    yield s1, s2, client(s1, "a"), client(s2, "b")
    for c in clients:
        c.close()


def wait_cable(*sws):
    for sw in sws:
        wait_for(lambda sw=sw: any("vde_crosscable" in ln for ln in sw.command("port/print")),
                 what="the wirefilter's port")


def exchange(tx, rx, n, size=100, batch=100, settle=0.3):
    """Sends n distinct frames in batches, returns how many arrived (each exactly)."""
    got = 0
    for start in range(0, n, batch):
        for i in range(start, min(n, start + batch)):
            tx.send(frame(B, A, i.to_bytes(4, "big") + bytes(size - 18)))
        got += len(drain(rx, settle / 10))
    return got + len(drain(rx, settle))


def drain(c, idle):
    out = []
    while True:
        try:
            c.data.settimeout(idle)
            out.append(c.data.recv(65536))
        except (TimeoutError, BlockingIOError):
            return out


def test_a_clean_wire_carries_frames_both_ways_exactly(two, wf):
    s1, s2, a, b = two
    wf(s1.dir, s2.dir)
    wait_cable(s1, s2)
    for i in range(3):
        f = frame("ff:ff:ff:ff:ff:ff", A, bytes([i]) * 50)
        a.send(f)
        assert b.recv() == f
        g = frame(A, B, bytes([i]) * 70)
        b.send(g)
        assert a.recv() == g


def test_loss_rate_within_the_binomial_interval(two, wf):
    s1, s2, a, b = two
    wf(s1.dir, s2.dir, "--loss", "LR20", "--seed", "7")
    wait_cable(s1, s2)
    b.send(frame("ff:ff:ff:ff:ff:ff", B, b"hello"))    # s2 learns B; RL is lossless
    assert a.recv().startswith(bytes.fromhex("ffffffffffff"))
    n = 4000
    got = exchange(a, b, n)
    sd = math.sqrt(n * 0.2 * 0.8)
    assert n * 0.8 - 3.3 * sd <= got <= n * 0.8 + 3.3 * sd


def test_delay_is_added(two, wf):
    s1, s2, a, b = two
    w = wf(s1.dir, s2.dir, "--delay", "LR150")
    wait_cable(s1, s2)
    t0 = time.monotonic()
    a.send(frame(B, A, b"slow"))
    assert b.recv(5) == frame(B, A, b"slow")
    assert 0.14 <= time.monotonic() - t0 < 0.5
    c = Console(w.mgmt, prompt=WF)          # a live change: no delay from now on
    assert b"1000 Success" in c.raw("delay 0")
    t0 = time.monotonic()
    a.send(frame(B, A, b"fast"))
    assert b.recv(5) == frame(B, A, b"fast")
    assert time.monotonic() - t0 < 0.1


def test_mtu_drops_exactly_the_long_frames(two, wf):
    s1, s2, a, b = two
    w = wf(s1.dir, s2.dir, "--mtu", "500")
    wait_cable(s1, s2)
    for size in (500, 501, 100, 1500):
        a.send(frame(B, A, bytes(size - 14)))
    got = drain(b, 0.5)
    assert [len(f) for f in got] == [500, 100]
    counters = Console(w.mgmt, prompt=WF).ok("counters")
    assert "drop loss 0 mtu 2 " in counters[0]


def test_console_showinfo_and_errors(two, wf):
    s1, s2, _a, _b = two
    w = wf(s1.dir, s2.dir, "-l", "LR20.5", "-l", "RL10", "-d", "100+20N", "-b", "128K",
           "-m", "1500")
    c = Console(w.mgmt, prompt=WF)
    assert c.banner.endswith(b"\nVDEwf$ ")
    info = c.ok("showinfo")
    assert info[:6] == ["WireFilter: bidirectional", "Loss   L->R 20.5+0U   R->L 10+0U",
                        "Lburst L->R 0+0U   R->L 0+0U", "Delay  L->R 100+20N   R->L 100+20N",
                        "Dup    L->R 0+0U   R->L 0+0U",
                        "Bandw  L->R 131072+0U   R->L 131072+0U"]
    assert "Fifoness TRUE" in info
    assert c.raw("loss x") == b"1022 Invalid argument\n\nVDEwf$ "
    assert c.raw("bogus") == b"1038 Function not implemented\n\nVDEwf$ "
    assert c.raw("loss RL3") == b"1000 Success\n\nVDEwf$ "
    assert c.ok("showinfo")[1] == "Loss   L->R 20.5+0U   R->L 3+0U"
    c.sock.sendall(b"shutdown\n")
    assert w.wait(5) == 0


def test_between_debian_vde_switch_and_pyvde_switch(debian_switch, switches, sockdir, wf):
    need_tool("vde_switch")
    deb, py = debian_switch(), switches(name="py")
    a = RawClient(deb.dir, sockdir, "a")
    a.handshake(port=1)
    b = RawClient(py.dir, sockdir, "b")
    b.handshake(port=1)
    try:
        wf(deb.dir, py.dir, "--dup", "LR100")     # every frame twice, then once more...
        wait_cable(py)
        time.sleep(0.3)
        f = frame("ff:ff:ff:ff:ff:ff", A, b"across")
        a.send(f)
        got = drain(b, 0.5)
        assert got and all(x == f for x in got) and len(got) >= 2
        g = frame(A, B, b"back")
        b.send(g)
        assert a.recv() == g
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("argv,message", [
    (["-l", "x", "a", "b"], "option --loss: 'x' is not a value"),
    (["-v", "nocolon"], "option -v: 'nocolon' is not LEFT:RIGHT"),
    (["--mtu", "1.5", "a", "b"], "option --mtu"),
])
def test_bad_options_one_line(argv, message):
    r = subprocess.run([PYVDE_WIREFILTER, *argv], capture_output=True, text=True, timeout=10,
                       check=False)
    assert r.returncode == 2 and message in r.stderr.splitlines()[0]


def test_missing_switch_is_one_line(sockdir):
    r = subprocess.run([PYVDE_WIREFILTER, "-v", f"{sockdir}/no1:{sockdir}/no2"],
                       capture_output=True, text=True, timeout=10, check=False)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no switch at" in r.stderr


def test_daemon_and_pidfile(two, sockdir):
    s1, s2, a, b = two
    pid = sockdir / "wf.pid"
    r = subprocess.run([PYVDE_WIREFILTER, "--daemon", "--pidfile", "wf.pid", "-v",
                        f"{s1.dir}:{s2.dir}", "-M", "wf.mgmt"], capture_output=True, text=True,
                       timeout=10, check=False, cwd=sockdir)     # relative paths
    assert r.returncode == 0, r.stderr
    wait_for(pid.exists, what="pid file")
    try:
        assert Console(str(sockdir / "wf.mgmt"), prompt=WF).ok("showinfo")   # relative -M
        wait_cable(s1, s2)
        f = frame("ff:ff:ff:ff:ff:ff", A, b"via the daemon")
        a.send(f)
        assert b.recv() == f
    finally:
        import os
        import signal
        os.kill(int(pid.read_text()), signal.SIGTERM)
    wait_for(lambda: not pid.exists(), what="pid file removed at exit")


def test_daemon_with_a_bad_mgmt_path_fails_before_detaching(two, sockdir):
    s1, s2, _a, _b = two
    (sockdir / "notasocket").touch()
    r = subprocess.run([PYVDE_WIREFILTER, "--daemon", "-M", str(sockdir / "notasocket"), "-v",
                        f"{s1.dir}:{s2.dir}"], capture_output=True, text=True, timeout=10,
                       check=False)
    assert r.returncode == 1 and "notasocket exists and is not a socket" in r.stderr


def test_in_a_dpipe_chain_with_debian_vde_plug(two, sockdir):
    """dpipe vde_plug S1 = pyvde-wirefilter ... = vde_plug S2: the middle of a chain gets
    the second direction on ALTERNATE_STDIN/ALTERNATE_STDOUT."""
    need_tool("dpipe", "vde_plug")
    s1, s2, a, b = two
    p = subprocess.Popen(["dpipe", "vde_plug", str(s1.dir), "=", PYVDE_WIREFILTER, "--delay",
                          "LR30", "=", "vde_plug", str(s2.dir)],
                         stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for sw in (s1, s2):
            wait_for(lambda sw=sw: len(sw.command("port/print")) >= 10, what="the chain's port")
        time.sleep(0.3)
        f = frame("ff:ff:ff:ff:ff:ff", A, b"left to right")
        t0 = time.monotonic()
        a.send(f)
        assert b.recv() == f
        assert time.monotonic() - t0 >= 0.029           # the delay applies L->R
        g = frame(A, B, b"right to left" + bytes(1400))
        b.send(g)
        assert a.recv() == g
    finally:
        p.terminate()
        p.wait(10)


def test_one_side_on_stdin_stdout(two):
    """pyvde-plug S1 = pyvde-wirefilter -v -:S2 (the stream form as a command)."""
    s1, s2, a, b = two
    plug = str(Path(PYVDE_WIREFILTER).parent / "pyvde-plug")
    p = subprocess.Popen([plug, str(s1.dir), "=", PYVDE_WIREFILTER, "-v", f"-:{s2.dir}"],
                         stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for sw in (s1, s2):
            wait_for(lambda sw=sw: len(sw.command("port/print")) >= 10, what="a port")
        time.sleep(0.3)
        for i in range(20):
            f = frame("ff:ff:ff:ff:ff:ff", A, bytes([i]) * (60 + 50 * i))
            a.send(f)
            assert b.recv() == f
        g = frame(A, B, b"back")
        b.send(g)
        assert a.recv() == g
    finally:
        p.terminate()
        assert p.wait(10) == 0


# ------------------------------------------------------------------ the consoles

def showinfo_block(loss: str = "0+0U") -> bytes:
    """showinfo's reply on a wire with nothing set but loss (both directions)."""
    lines = ["WireFilter: bidirectional", f"Loss   L->R {loss}   R->L {loss}",
             "Lburst L->R 0+0U   R->L 0+0U", "Delay  L->R 0+0U   R->L 0+0U",
             "Dup    L->R 0+0U   R->L 0+0U", "Bandw  L->R 0+0U   R->L 0+0U",
             "Speed  L->R 0+0U   R->L 0+0U", "Noise  L->R 0+0U   R->L 0+0U",
             # wirefilter's printf formats, trailing spaces included
             "MTU    L->R 0     R->L 0   ", "Cap.   L->R 0+0U   R->L 0+0U",
             "Current Delay Queue size:   L->R 0      R->L 0   ", "Fifoness TRUE",
             "Waiting packets in delay queues 0"]
    return ("0000 DATA END WITH '.'\n" + "".join(f"{ln}\n" for ln in lines)
            + ".\n1000 Success\n").encode()


def read_until(pipe, end: bytes, timeout: float = 5.0) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while not out.endswith(end):
        left = deadline - time.monotonic()
        assert left > 0 and select.select([pipe], [], [], left)[0], f"no {end!r} in {out!r}"
        chunk = pipe.read1(4096)
        assert chunk, f"end of output before {end!r}: {out!r}"
        out += chunk
    return out


def test_console_through_unixterm(two, wf):
    """A whole unixterm session, byte for byte: banner, showinfo, a live setting, logout."""
    need_tool("unixterm")
    s1, s2, _a, _b = two
    w = wf(s1.dir, s2.dir)
    term = UnixTerm(w.mgmt, prompt=WF)
    term.wait_for(WF)
    for line in ["showinfo", "loss 5", "showinfo"]:
        term.type(line)
    assert term.logout() == 0
    assert term.out == (b"\nVDE wirefilter (pyvde-wirefilter 0.1.0)\n"
                        b"(C) the pyvde developers - MIT licence\n" + WF
                        + showinfo_block() + WF
                        + b"1000 Success\n" + WF
                        + showinfo_block("5+0U") + WF
                        + b"9999 END OF SESSION")


def test_a_fourth_mgmt_session_is_refused(two, wf):
    """As wirefilter: three sessions at once; a fourth client is told why and closed."""
    s1, s2, _a, _b = two
    w = wf(s1.dir, s2.dir)
    open_ = [Console(w.mgmt, prompt=WF) for _ in range(3)]
    extra = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    extra.settimeout(5)
    extra.connect(w.mgmt)
    got = b""
    while chunk := extra.recv(4096):
        got += chunk
    extra.close()
    assert got == b"too many mgmt connections\n"
    for c in open_:                             # the three go on unharmed
        assert c.ok("showinfo")[0] == "WireFilter: bidirectional"
    open_.pop().close()                         # one leaves: a new client gets its place

    def admitted():
        try:
            open_.append(Console(w.mgmt, prompt=WF))
            return True
        except EOFError:
            return False
    wait_for(admitted, what="a session after one of three closed")
    open_[-1].sock.sendall(b"shutdown\n")
    assert w.wait(5) == 0
    assert "too many mgmt connections" in w.stderr.read()


def test_stdin_console_between_two_switches(two):
    """Switches on both sides and no --daemon: stdin/stdout are a console (no prompt on a
    pipe), and `shutdown` there stops the wirefilter."""
    s1, s2, _a, _b = two
    p = subprocess.Popen([PYVDE_WIREFILTER, "-v", f"{s1.dir}:{s2.dir}", "-l", "5"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_cable(s1, s2)
        p.stdin.write(b"showinfo\n")
        p.stdin.flush()
        assert read_until(p.stdout, b"1000 Success\n") == showinfo_block("5+0U")
        p.stdin.write(b"shutdown\n")
        p.stdin.flush()
        assert p.wait(5) == 0
        assert p.stdout.read() == b"9999 END OF SESSION"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_end_of_a_stdin_pipe_only_closes_that_console(two):
    """Commands piped in are run; at the end of the pipe the wirefilter keeps going."""
    s1, s2, a, b = two
    p = subprocess.Popen([PYVDE_WIREFILTER, "-v", f"{s1.dir}:{s2.dir}"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        p.stdin.write(b"loss RL100\n")
        p.stdin.close()
        assert read_until(p.stdout, b"1000 Success\n") == b"1000 Success\n"
        wait_cable(s1, s2)
        time.sleep(0.3)
        assert p.poll() is None
        f = frame("ff:ff:ff:ff:ff:ff", A, b"still carried")
        a.send(f)
        assert b.recv() == f
        b.send(frame(A, B, b"lost"))
        a.recv_none()
    finally:
        p.terminate()
        assert p.wait(10) == 0
