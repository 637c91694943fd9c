"""pyvde-switch with Debian's real clients: vde_plug (vdeplug4), the console, the files it makes."""
import grp
import os
import signal
import socket
import stat
import subprocess
import time

import pytest
from vdetest import (
    PYVDE_SWITCH,
    RawClient,
    frame,
    need_root,
    need_tool,
    wait_data_sockets,
    wait_for,
)

A, B, C = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"
BCAST = "ff:ff:ff:ff:ff:ff"


def port_lines(sw, port: int | None = None) -> list[str]:
    return sw.command("port/print" + (f" {port}" if port is not None else ""))


def active_ports(sw) -> list[int]:
    return [int(line.split()[1]) for line in port_lines(sw) if line.startswith("Port ")]


def wait_ports(sw, count: int) -> list[int]:
    return wait_for(lambda: len(active_ports(sw)) == count and active_ports(sw), what=f"{count} ports")


def test_frames_between_two_vde_plugs_exact_bytes_both_ways(switch, plugs):
    a = plugs(str(switch.dir))
    b = plugs(str(switch.dir))
    wait_ports(switch, 2)
    f1 = frame(BCAST, A, bytes(range(256)) * 5)
    a.send(f1)
    assert b.recv() == f1
    f2 = frame(A, B, b"reply " + bytes(range(100)))
    b.send(f2)
    assert a.recv() == f2
    short = frame(B, A)                    # a bare 14-byte header is a frame too
    a.send(short)
    assert b.recv() == short
    jumbo = frame(B, A, os.urandom(9000))  # vdeplug4 carries up to 9234 bytes
    a.send(jumbo)
    assert b.recv() == jumbo


def test_64k_frames_pass_intact_and_oversize_is_dropped_and_counted(switches, sockdir):
    sw = switches("--maxframe", "65550")
    a, b = RawClient(sw.dir, sockdir, "a"), RawClient(sw.dir, sockdir, "b")
    for c in (a, b):
        c.data.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        c.handshake()
    big = frame(BCAST, A, os.urandom(65550 - 14))
    a.send(big)
    assert b.recv() == big
    a.send(big + b"!")                           # one byte too many: dropped whole
    a.send(bytes(13))                            # too short
    b.recv_none()
    (line,) = sw.command("port/counters 1")
    assert line == f"Port 0001 in 1 {len(big)} out 0 0 drop runt 1 oversize 1 vlan 0 tx 0 mirror 0"
    a.close(), b.close()


def test_learning_keeps_unicast_off_third_port(switch, plugs):
    a, b, c = plugs(str(switch.dir)), plugs(str(switch.dir)), plugs(str(switch.dir))
    wait_ports(switch, 3)
    b.send(frame(BCAST, B))
    assert a.recv() == frame(BCAST, B) and c.recv() == frame(BCAST, B)
    a.send(frame(B, A, b"private"))
    assert b.recv() == frame(B, A, b"private")
    assert c.recv_all() == []
    a.send(frame(C, A, b"unknown"))        # unknown destination: flooded
    assert c.recv() == frame(C, A, b"unknown") and b.recv() == frame(C, A, b"unknown")
    table = switch.command("hash/print")
    assert any("Addr: 02:00:00:00:00:0b VLAN 0000 to port:" in line for line in table)


def test_hub_mode_delivers_unicast_everywhere(switches, plugs):
    sw = switches("-x")
    a, b, c = plugs(str(sw.dir)), plugs(str(sw.dir)), plugs(str(sw.dir))
    wait_ports(sw, 3)
    b.send(frame(BCAST, B))
    a.recv(), c.recv()
    a.send(frame(B, A, b"hub"))
    assert b.recv() == frame(B, A, b"hub") and c.recv() == frame(B, A, b"hub")
    assert a.recv_all() == []
    assert sw.command("port/showinfo")[1] == "HUB=true"
    assert sw.command("hash/print") == []


def test_port_requests_port0_and_descriptions(switch, plugs):
    d = str(switch.dir)
    plugs(d + "[5]", "-D", "five")
    plugs(f"vde://{d}[port=7/mode=0660]", "-D", "seven")
    plugs(d + "[0]", "-D", "zero")
    plugs(d, "-D", "any")
    assert wait_ports(switch, 4) == [0, 1, 5, 7]
    five = port_lines(switch, 5)
    assert five[0] == "Port 0005 untagged_vlan=0000 ACTIVE - Unnamed Allocatable"
    assert five[1] == " Current User: root Access Control: (User: NONE - Group: NONE)"
    assert five[4].startswith("  -- endpoint ID ") and " module unix prog   : five user=root pid=" in five[4]
    zero = [f for f in os.listdir(d) if f.startswith("000.")]
    assert len(zero) == 1
    assert stat.S_IMODE(os.stat(os.path.join(d, zero[0])).st_mode) in (0o600, 0o700)


def test_several_endpoints_on_one_port(switch, plugs):
    d = str(switch.dir)
    first = plugs(d + "[7]", "-D", "first")
    wait_ports(switch, 1)
    second = plugs(d + "[7]", "-D", "second")
    other = plugs(d)
    wait_for(lambda: len(port_lines(switch, 7)) == 6, what="two endpoints on port 7")
    lines = port_lines(switch, 7)
    assert "second user=" in lines[4] and "first user=" in lines[5]   # newest first
    other.send(frame(BCAST, A))
    assert first.recv() == frame(BCAST, A) and second.recv() == frame(BCAST, A)


def port_of(sw, description: str) -> int:
    """The port whose endpoint has this description (clients started together race for ports)."""
    number = None
    for line in port_lines(sw):
        if line.startswith("Port "):
            number = int(line.split()[1])
        elif f": {description} user=" in line:
            return number
    raise AssertionError(f"no endpoint described {description!r}")


def test_client_leaving_deactivates_port_flushes_macs_removes_socket(switch, plugs):
    d = str(switch.dir)
    a, b = plugs(d, "-D", "stays"), plugs(d, "-D", "leaves")
    wait_ports(switch, 2)
    leaving = port_of(switch, "leaves")
    b.send(frame(BCAST, B))
    a.recv()
    assert len(switch.command("hash/print")) == 1
    assert len(os.listdir(d)) == 3            # ctl + two data sockets
    b.proc.kill()                               # the kernel closes its control stream
    wait_for(lambda: len(active_ports(switch)) == 1, what="port to go inactive")
    assert switch.command("hash/print") == []
    assert sorted(os.listdir(d))[-1] == "ctl" and len(os.listdir(d)) == 2
    allprint = switch.command("port/allprint")
    assert f"Port {leaving:04d} untagged_vlan=0000 INACTIVE - Unnamed Allocatable" in allprint
    assert switch.try_command(f"port/print {leaving}")[1] == "1006 No such device or address"


def test_numports_limits_ports(switches, plugs):
    sw = switches("-n", "3")
    d = str(sw.dir)
    for _ in range(3):
        plugs(d)
    assert wait_ports(sw, 3) == [1, 2, 3]
    extra = subprocess.run(["vde_plug", d], stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=10)
    assert extra.returncode != 0
    sw.wait_log(r"no free port \(all 3 ports")
    beyond = subprocess.run(["vde_plug", d + "[4]"], stdin=subprocess.DEVNULL,
                            capture_output=True, timeout=10)
    assert beyond.returncode != 0
    sw.wait_log(r"port 4 out of range \(0\.\.3\)")
    assert sw.command("port/showinfo")[0] == "Numports=3"


def test_v1_request_gets_a_port(switch, plugs, sockdir):
    a = plugs(str(switch.dir))
    raw = RawClient(switch.dir, sockdir)
    raw.handshake(version=1, description="v1client")
    wait_ports(switch, 2)
    raw.send(frame(BCAST, C, b"from v1"))
    assert a.recv() == frame(BCAST, C, b"from v1")
    a.send(frame(C, A, b"to v1"))
    assert raw.recv() == frame(C, A, b"to v1")
    assert any("v1client" in line for line in port_lines(switch))
    raw.close()


def test_stale_ctl_is_reclaimed(sockdir, switches, plugs):
    d = sockdir / "stale"
    d.mkdir()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(d / "ctl"))
    s.close()                                   # left behind, nobody listening
    sw = switches(name="stale")
    sw.wait_log("removed stale socket .*/stale/ctl")
    a, b = plugs(str(d)), plugs(str(d))
    wait_ports(sw, 2)
    a.send(frame(BCAST, A))
    assert b.recv() == frame(BCAST, A)


def test_live_switch_is_not_replaced(switch, plugs):
    second = subprocess.run([PYVDE_SWITCH, "-s", str(switch.dir), "--nostdin"],
                            capture_output=True, text=True, timeout=10)
    assert second.returncode == 1
    assert second.stderr.strip().endswith("is in use: another switch is already running there")
    assert len(second.stderr.strip().splitlines()) == 1
    a, b = plugs(str(switch.dir)), plugs(str(switch.dir))
    wait_ports(switch, 2)
    a.send(frame(BCAST, A))
    assert b.recv() == frame(BCAST, A)


def test_startup_errors_are_one_line(sockdir):
    f = sockdir / "file"
    f.write_text("x")
    r = subprocess.run([PYVDE_SWITCH, "-s", str(f), "--nostdin"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 1 and r.stderr == f"pyvde-switch: {f} exists and is not a directory\n"
    r = subprocess.run([PYVDE_SWITCH, "-n", "many"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1 and r.stderr.startswith("pyvde-switch: option -n: 'many' is not a number")
    r = subprocess.run([PYVDE_SWITCH, "-s", str(sockdir / "g"), "-g", "no-such-group-x"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1 and "group 'no-such-group-x' does not exist" in r.stderr
    assert not (sockdir / "g").exists()


def test_default_permissions(switch):
    assert stat.S_IMODE(os.stat(switch.dir).st_mode) == 0o2700
    assert stat.S_IMODE(os.stat(switch.dir / "ctl").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(switch.mgmt_path).st_mode) == 0o600


def test_mode_group_and_unprivileged_client(switches, plugs, sockdir):
    need_root()
    need_tool("runuser")
    group = grp.getgrnam("nogroup")
    sw = switches("-m", "0666", "-g", "nogroup", "--mgmtmode", "0640", "--mgmtgroup", "nogroup")
    st = os.stat(sw.dir)
    assert stat.S_IMODE(st.st_mode) == 0o2777 and st.st_gid == group.gr_gid
    ctl = os.stat(sw.dir / "ctl")
    assert stat.S_IMODE(ctl.st_mode) == 0o666 and ctl.st_gid == group.gr_gid
    mg = os.stat(sw.mgmt_path)
    assert stat.S_IMODE(mg.st_mode) == 0o640 and mg.st_gid == group.gr_gid
    os.chmod(sockdir, 0o755)
    root_plug = plugs(str(sw.dir))
    nobody = subprocess.Popen(["runuser", "-u", "nobody", "--", "vde_plug", str(sw.dir)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        wait_ports(sw, 2)
        lines = sw.command("port/print")
        assert any("Current User: nobody" in line for line in lines)
        owners = {os.stat(sw.dir / f).st_uid for f in os.listdir(sw.dir) if f != "ctl"}
        assert owners == {0, 65534}           # the user's data socket was handed to the user
        f = frame(BCAST, A, b"to nobody")
        root_plug.send(f)
        got = nobody.stdout.read(2 + len(f))
        assert got == len(f).to_bytes(2, "big") + f
    finally:
        nobody.kill()
        nobody.wait()


def test_dirmode_only(switches):
    sw = switches("--dirmode", "02750")
    assert stat.S_IMODE(os.stat(sw.dir).st_mode) == 0o2750
    assert stat.S_IMODE(os.stat(sw.dir / "ctl").st_mode) == 0o640


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_exit_removes_every_file(switches, plugs, sockdir, sig):
    pid = sockdir / "sw.pid"
    sw = switches("-p", str(pid))
    plugs(str(sw.dir)), plugs(str(sw.dir) + "[3]")
    wait_ports(sw, 2)
    assert int(pid.read_text()) == sw.proc.pid
    assert sw.stop(sig) == 0
    assert not sw.dir.exists() and not os.path.exists(sw.mgmt_path) and not pid.exists()


def test_sighup_does_not_stop_the_switch(switch):
    switch.proc.send_signal(signal.SIGHUP)
    switch.wait_log("SIGHUP received and ignored")
    assert switch.alive()


def test_daemon_mode_and_pidfile(sockdir, plugs):
    pid = sockdir / "d.pid"
    d = sockdir / "daemon"
    r = subprocess.run([PYVDE_SWITCH, "-d", "-s", str(d), "-p", str(pid), "-M", str(sockdir / "d.mgmt")],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    assert (d / "ctl").exists() and pid.exists()     # ready when the command returns
    daemon_pid = int(pid.read_text())
    try:
        a, b = plugs(str(d)), plugs(str(d))
        wait_data_sockets(d, 2)
        a.send(frame(BCAST, A))
        assert b.recv() == frame(BCAST, A)
    finally:
        os.kill(daemon_pid, signal.SIGTERM)
    wait_for(lambda: not d.exists() and not pid.exists(), what="daemon cleanup")


def test_pidfile_is_whole_when_daemon_mode_returns(sockdir):
    """The command returns only once the daemon's pid is in the file (it used to return
    first, and a reader could find the file empty: seen once in CI-like runs)."""
    for i in range(10):
        pid, d = sockdir / f"r{i}.pid", sockdir / f"r{i}"
        r = subprocess.run([PYVDE_SWITCH, "-d", "-s", str(d), "-p", str(pid)],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r.stderr
        daemon_pid = int(pid.read_text())
        os.kill(daemon_pid, signal.SIGTERM)
        wait_for(lambda: not d.exists() and not pid.exists(), what="daemon cleanup")


def test_an_existing_pidfile_is_refused(sockdir):
    pid = sockdir / "taken.pid"
    pid.write_text("1\n")
    for daemon in ([], ["-d"]):
        r = subprocess.run([PYVDE_SWITCH, *daemon, "-s", str(sockdir / "sw"), "-p", str(pid)],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10)
        assert r.returncode == 1
        assert f"cannot write pid file {pid}: File exists" in r.stderr, r.stderr
        assert pid.read_text() == "1\n" and not (sockdir / "sw").exists()
        assert [p.name for p in sockdir.iterdir()] == ["taken.pid"]


def test_mgmt_console_formats(switch, plugs):
    a, b = plugs(str(switch.dir), "-D", "vm1"), plugs(str(switch.dir) + "[4]", "-D", "vm2")
    wait_ports(switch, 2)
    a.send(frame(BCAST, "52:54:00:12:34:01", bytes(46)))
    b.recv()
    c = switch.console()
    assert c.banner.endswith(b"\n\nvde$ ")
    help_lines = c.ok("help")
    assert help_lines[0] == "COMMAND PATH       SYNTAX          HELP"
    assert help_lines[1] == "------------       --------------  ------------"
    assert "port/print         [N]             print the port/endpoint table" in help_lines
    assert "hash               ============    HASH TABLE MENU" in help_lines
    assert c.ok("help hash/") == help_lines[:2] + [l for l in help_lines if l.startswith("hash/")]
    info = c.ok("showinfo")
    assert info[2] == "" and info[3].startswith(f"pid {switch.proc.pid} MAC 00:ff:")
    assert info[4] == f"mgmt {switch.mgmt_path} perm 0600"
    lines = c.ok("port/print 1")
    assert lines[:4] == ["Port 0001 untagged_vlan=0000 ACTIVE - Unnamed Allocatable",
                         " Current User: root Access Control: (User: NONE - Group: NONE)",
                         " IN:  pkts          1          bytes                   60",
                         " OUT: pkts          0          bytes                    0"]
    (entry,) = c.ok("hash/print")
    assert entry.startswith("Hash: ") and entry[10:] .startswith(
        " Addr: 52:54:00:12:34:01 VLAN 0000 to port: 001  age ")
    assert c.ok("hash/showinfo") == ["Hash size 128", "GC interval 2 secs", "GC expire 100 secs",
                                     "Min persistence 3 secs"]
    assert c.ok("ds/showinfo") == [f"ctl dir {switch.dir}", "std mode 0600"]
    assert c.raw("nonexistent") == b"1038 Function not implemented\n\nvde$ "
    assert c.raw("") == b"\nvde$ "
    assert c.raw("# a comment") == b"\nvde$ "
    assert c.raw("port/print 9") == b"0000 DATA END WITH '.'\n.\n1006 No such device or address\n\nvde$ "
    assert c.raw("port/print x") == b"0000 DATA END WITH '.'\n.\n1022 Invalid argument\n\nvde$ "
    assert c.raw("x" * 5000) == b"1007 Argument list too long\n\nvde$ "
    assert c.raw("port/showinfo").startswith(b"0000 DATA END WITH '.'\nNumports=32\n")
    c.sock.sendall(b"logout\n")
    assert c.sock.recv(100) == b"9999 END OF SESSION"
    assert c.sock.recv(100) == b""
    c.close()


def test_unixterm_and_port_epclose(switch, plugs):
    need_tool("unixterm")
    a = plugs(str(switch.dir), "-D", "victim")
    wait_ports(switch, 1)
    ep_id = int(port_lines(switch, 1)[4].split()[3])
    # unixterm relays stdin to the socket and quits at end of stdin, so type like a person
    term = subprocess.Popen(["unixterm", switch.mgmt_path], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    out = b""
    term.stdin.write(f"port/epclose 1 {ep_id}\n".encode())
    term.stdin.flush()
    while b"1000 Success" not in out:
        out += term.stdout.read1(4096)
    term.stdin.write(b"logout\n")
    term.stdin.flush()
    out += term.stdout.read()
    assert out.endswith(b"1000 Success\n\nvde$ 9999 END OF SESSION")
    assert term.wait(5) == 0
    wait_for(lambda: a.proc.poll() is not None, what="vde_plug to exit after epclose")
    assert active_ports(switch) == []


def test_console_shutdown_cleans_up(switches, plugs):
    sw = switches()
    plugs(str(sw.dir))
    wait_ports(sw, 1)
    c = sw.console()
    c.sock.sendall(b"shutdown\n")
    assert c.sock.recv(100) == b"9999 END OF SESSION"
    assert sw.proc.wait(10) == 0
    assert not sw.dir.exists() and not os.path.exists(sw.mgmt_path)


def test_rc_file_and_load(switches, sockdir):
    rc = sockdir / "sw.rc"
    rc.write_text("# set-up\nhash/setexpire 50\nport/sethub 1\nbogus\n")
    sw = switches("-f", str(rc))
    sw.wait_log(r"rc file .*: bogus: 1038 Function not implemented")
    assert sw.command("hash/showinfo")[2] == "GC expire 50 secs"
    assert sw.command("port/showinfo")[1] == "HUB=true"
    script = sockdir / "small.rc"
    script.write_text("hash/setexpire 60\nbogus\n")
    c = sw.console()
    assert c.raw(f"load {script}") == (f"vde[{script}]: hash/setexpire 60\n1000 Success\n"
                                       f"vde[{script}]: bogus\n1038 Function not implemented\n"
                                       "1000 Success\n\nvde$ ").encode()
    assert c.raw(f"load {sockdir}/missing") == b"1002 No such file or directory\n\nvde$ "
    c.close()


def test_stdin_console_and_eof_on_a_pipe(sockdir):
    d = sockdir / "stdin"
    p = subprocess.Popen([PYVDE_SWITCH, "-s", str(d)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (d / "ctl").exists(), what="ctl")
        p.stdin.write(b"ds/showinfo\n")
        p.stdin.close()                           # end of a pipe: the switch keeps running
        out = p.stdout.read1(4096)
        assert out == f"0000 DATA END WITH '.'\nctl dir {d}\nstd mode 0600\n.\n1000 Success\n".encode()
        time.sleep(0.5)
        assert p.poll() is None
    finally:
        p.terminate()
        assert p.wait(10) == 0
    assert not d.exists()


def test_debian_vde_switch_reference_interop(debian_switch, plugs):
    """The same two-client exchange on Debian's vde_switch, so the helpers are known good."""
    sw = debian_switch()
    a, b = plugs(str(sw.dir)), plugs(str(sw.dir))
    wait_data_sockets(sw.dir, 2)
    a.send(frame(BCAST, A, b"x" * 50))
    assert b.recv() == frame(BCAST, A, b"x" * 50)
