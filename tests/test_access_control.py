"""Port access control (vde-protocol.md §1.10-1.11) with clients running as other users.

The switch runs as root with `-m 0777`, so everybody can reach `ctl` and create a socket in
the control directory: vdeplug4 binds its own datagram socket there first
(`DIR/.PPPPP-SSSSS`, falling back to /var/run, /var/tmp and /tmp) and unlinks it once
connected. Clients are started with setpriv as Debian's `nobody` (65534) and `daemon` (1),
with exactly the groups a test gives them. Who a client is comes from SO_PEERCRED and
SO_PEERGROUPS of its control connection, never from the owner of the socket it names.
"""
from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import stat
import subprocess

import pytest
from vdetest import VdePlug, frame, need, need_root, need_tool, wait_for

from switchd import control_request

A, B, C = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"
BCAST = "ff:ff:ff:ff:ff:ff"
NOBODY, DAEMON = 65534, 1
NOGROUP = 65534
PYTHON = "/usr/bin/python3"


def as_user(uid: int, gid: int, groups: tuple[int, ...] = ()) -> list[str]:
    """A command prefix running the rest as uid/gid with exactly these supplementary groups."""
    cmd = ["setpriv", f"--reuid={uid}", f"--regid={gid}"]
    cmd += [f"--groups={','.join(map(str, groups))}"] if groups else ["--clear-groups"]
    return cmd


class UserPlug(VdePlug):
    """Debian's vde_plug run as another user (setpriv execs it: same pid)."""

    def __init__(self, prefix: list[str], vnl: str, *args: str):
        self.proc = subprocess.Popen([*prefix, "vde_plug", *args, vnl], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        os.set_blocking(self.proc.stdout.fileno(), False)
        self._buf = b""
        self._frames: list[bytes] = []

    def refused(self) -> bool:
        """The plug gave up (its request was refused): non-zero exit within 10 s."""
        try:
            return self.proc.wait(10) != 0
        except subprocess.TimeoutExpired:
            return False


@pytest.fixture
def acl_switch(switches, sockdir):
    need_root()
    need_tool("setpriv", "vde_plug")
    for uid in (NOBODY, DAEMON):
        try:
            pwd.getpwuid(uid)
        except KeyError:
            need(False, f"user with uid {uid}")
    os.chmod(sockdir, 0o755)
    sw = switches("-m", "0777")
    assert stat.S_IMODE(os.stat(sw.dir).st_mode) == 0o2777
    return sw


@pytest.fixture
def userplugs():
    made: list[VdePlug] = []

    def plug(prefix: list[str] | None, vnl: str, *args: str) -> VdePlug:
        p = UserPlug(prefix, vnl, *args) if prefix else VdePlug(vnl, *args)
        made.append(p)
        return p

    yield plug
    for p in made:
        p.close()


def port_print(sw, port: int) -> list[str]:
    data, status = sw.try_command(f"port/print {port}")
    return data if status == "1000 Success" else []


def wait_endpoints(sw, port: int, count: int) -> list[str]:
    return wait_for(lambda: len(port_print(sw, port)) == 4 + count and port_print(sw, port),
                    what=f"{count} endpoint(s) on port {port}")


def refusal(sw, pid: int, uid: int) -> str:
    """The one log line about the refused control connection of process pid."""
    sw.wait_log(rf"\(pid {pid}, uid {uid}\): .*; closed")
    lines = [ln for ln in sw.log_text().splitlines() if f"(pid {pid}, uid {uid})" in ln]
    assert len(lines) == 1, lines
    m = re.fullmatch(rf"\d\d:\d\d:\d\d pyvde-switch: control connection \d+ \(pid {pid}, uid"
                     rf" {uid}\): (.*); closed", lines[0])
    assert m, lines[0]
    return m.group(1)


def exchange(a: VdePlug, b: VdePlug, tag: bytes) -> None:
    """A frame each way between two plugs (broadcast first, so the switch learns)."""
    f = frame(BCAST, A, tag + b" from a")
    a.send(f)
    assert b.recv() == f
    g = frame(A, B, tag + b" from b")
    b.send(g)
    assert a.recv() == g


def test_setuser_admits_that_user_and_refuses_others(acl_switch, userplugs):
    sw = acl_switch
    c = sw.console()
    assert c.ok("port/create 5") == []
    assert c.ok("port/allocatable 5 1") == []
    assert c.ok("port/setuser 5 nobody") == []
    assert c.ok("port/allprint 5")[1] == \
        " Current User: NONE Access Control: (User: nobody - Group: NONE)"
    early = userplugs(as_user(DAEMON, DAEMON), f"{sw.dir}[5]")
    assert early.refused()
    assert refusal(sw, early.proc.pid, DAEMON) == "port 5 is reserved for user nobody / group NONE"
    nobody = userplugs(as_user(NOBODY, NOGROUP), f"{sw.dir}[5]", "-D", "nb")
    lines = wait_endpoints(sw, 5, 1)
    assert lines[1] == " Current User: nobody Access Control: (User: nobody - Group: NONE)"
    assert lines[4].endswith(f": nb user=nobody pid={nobody.proc.pid}")
    root = userplugs(None, f"{sw.dir}[1]")
    wait_endpoints(sw, 1, 1)
    exchange(root, nobody, b"setuser")
    late = userplugs(as_user(DAEMON, DAEMON), f"{sw.dir}[5]")
    assert late.refused()
    assert refusal(sw, late.proc.pid, DAEMON) == "port 5 is in use by user nobody"
    assert len(port_print(sw, 5)) == 5                   # still nobody's endpoint alone
    exchange(root, nobody, b"still")


def test_any_port_request_skips_ports_reserved_for_others(acl_switch, userplugs):
    sw = acl_switch
    c = sw.console()
    for line in ("port/create 1", "port/allocatable 1 1", "port/setuser 1 nobody"):
        c.ok(line)
    d = userplugs(as_user(DAEMON, DAEMON), str(sw.dir))
    wait_endpoints(sw, 2, 1)                        # port 1 is nobody's: daemon gets 2
    n = userplugs(as_user(NOBODY, NOGROUP), str(sw.dir))
    lines = wait_endpoints(sw, 1, 1)
    assert lines[1] == " Current User: nobody Access Control: (User: nobody - Group: NONE)"
    exchange(d, n, b"any")


def test_setgroup_admits_the_primary_group(acl_switch, userplugs):
    sw = acl_switch
    c = sw.console()
    c.ok("port/create 5")
    c.ok("port/setgroup 5 4243")               # a number that is no group prints as such
    assert c.ok("port/allprint 5")[1] == \
        " Current User: NONE Access Control: (User: NONE - Group: 4243)"
    outsider = userplugs(as_user(NOBODY, NOGROUP), f"{sw.dir}[5]")
    assert outsider.refused()
    assert refusal(sw, outsider.proc.pid, NOBODY) == "port 5 is reserved for user NONE / group 4243"
    member = userplugs(as_user(NOBODY, 4243), f"{sw.dir}[5]")
    lines = wait_endpoints(sw, 5, 1)
    assert lines[1] == " Current User: nobody Access Control: (User: NONE - Group: 4243)"
    root = userplugs(None, f"{sw.dir}[1]")
    wait_endpoints(sw, 1, 1)
    exchange(root, member, b"group")




@pytest.mark.parametrize("group", ["4242", "daemon"])
def test_setgroup_admits_supplementary_group_members(acl_switch, userplugs, group):
    sw = acl_switch
    gid = 4242 if group == "4242" else 1
    sw.command("port/create 5")
    sw.command(f"port/setgroup 5 {group}")
    member = userplugs(as_user(NOBODY, NOGROUP, (4000, gid)), f"{sw.dir}[5]")
    assert not member.refused()
    lines = wait_endpoints(sw, 5, 1)
    assert lines[1] == f" Current User: nobody Access Control: (User: NONE - Group: {group})"


def test_user_or_group_either_admits(acl_switch, userplugs):
    sw = acl_switch
    c = sw.console()
    for line in ("port/create 5", "port/setuser 5 daemon", "port/setgroup 5 4242"):
        c.ok(line)
    by_group = userplugs(as_user(NOBODY, 4242), f"{sw.dir}[5]")
    assert wait_endpoints(sw, 5, 1)[1] == \
        " Current User: nobody Access Control: (User: daemon - Group: 4242)"
    by_group.close()
    wait_for(lambda: port_print(sw, 5) == [], what="port 5 inactive")
    userplugs(as_user(DAEMON, DAEMON), f"{sw.dir}[5]")
    assert wait_endpoints(sw, 5, 1)[1] == \
        " Current User: daemon Access Control: (User: daemon - Group: 4242)"
    neither = userplugs(as_user(NOBODY, NOGROUP), f"{sw.dir}[5]")
    assert neither.refused()
    assert refusal(sw, neither.proc.pid, NOBODY) == "port 5 is in use by user daemon"


def test_active_port_belongs_to_its_user_but_root_may_join(acl_switch, userplugs):
    sw = acl_switch
    nobody = userplugs(as_user(NOBODY, NOGROUP), f"{sw.dir}[3]", "-D", "first")
    assert wait_endpoints(sw, 3, 1)[1] == \
        " Current User: nobody Access Control: (User: NONE - Group: NONE)"
    other = userplugs(as_user(DAEMON, DAEMON), f"{sw.dir}[3]")
    assert other.refused()
    assert refusal(sw, other.proc.pid, DAEMON) == "port 3 is in use by user nobody"
    root = userplugs(None, f"{sw.dir}[3]", "-D", "root-too")
    lines = wait_endpoints(sw, 3, 2)
    assert lines[1] == " Current User: nobody Access Control: (User: NONE - Group: NONE)"
    assert "root-too user=root" in lines[4] and "first user=nobody" in lines[5]
    sender = userplugs(None, f"{sw.dir}[9]")
    wait_endpoints(sw, 9, 1)
    f = frame(BCAST, C, b"to port 3")
    sender.send(f)
    assert nobody.recv() == f and root.recv() == f
    nobody.close()
    root.close()
    wait_for(lambda: port_print(sw, 3) == [], what="port 3 inactive")
    again = userplugs(as_user(DAEMON, DAEMON), f"{sw.dir}[3]")      # free again: anyone
    assert wait_endpoints(sw, 3, 1)[1] == \
        " Current User: daemon Access Control: (User: NONE - Group: NONE)"
    exchange(sender, again, b"daemon now")


def test_unrestricted_ports_admit_anyone(acl_switch, userplugs):
    sw = acl_switch
    d = userplugs(as_user(DAEMON, DAEMON), f"{sw.dir}[7]")
    n = userplugs(as_user(NOBODY, NOGROUP), str(sw.dir))
    assert wait_endpoints(sw, 7, 1)[1] == \
        " Current User: daemon Access Control: (User: NONE - Group: NONE)"
    assert wait_endpoints(sw, 1, 1)[1] == \
        " Current User: nobody Access Control: (User: NONE - Group: NONE)"
    exchange(d, n, b"open")
    owners = {os.stat(sw.dir / f).st_uid for f in os.listdir(sw.dir) if f != "ctl"}
    assert owners == {DAEMON, NOBODY}       # each data socket handed to its user


# ------------------------------------------------------------------ SO_PEERCRED, not the file

HELPER = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall(bytes.fromhex(sys.argv[2]))
sys.stdout.write(s.recv(200).hex() + "\n")
sys.stdout.flush()
sys.stdin.read()          # keeps the control connection open until stdin closes
"""


class Requester:
    """A control connection made by a process running as another user, asking for a port
    for a data socket that the test (root) made and reads."""

    def __init__(self, prefix: list[str], ctl, client_path: str, port: int):
        need(os.access(PYTHON, os.X_OK), PYTHON)
        request = control_request.build(client_path, port, "requester")
        self.proc = subprocess.Popen([*prefix, PYTHON, "-c", HELPER, str(ctl), request.hex()],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.reply = bytes.fromhex(self.proc.stdout.readline().strip())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(10)


@pytest.fixture
def client_socket(sockdir):
    """A datagram socket made by root: (socket, path)."""
    path = str(sockdir / "client.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(3)
    yield s, path
    s.close()


def test_peer_credentials_decide_not_the_socket_owner(acl_switch, client_socket, userplugs):
    need_tool("setpriv")
    sw = acl_switch
    sock, path = client_socket
    c = sw.console()
    c.ok("port/create 5")
    c.ok("port/setuser 5 nobody")
    # 1. nobody names root's socket: nobody is who the switch sees, and it is refused
    req = Requester(as_user(NOBODY, NOGROUP), sw.dir / "ctl", path, 5)
    assert req.reply == b""
    assert refusal(sw, req.proc.pid, NOBODY) == (
        f"client socket {path} belongs to uid 0, not to the connecting uid {NOBODY}")
    req.close()
    # 2. the socket now belongs to nobody, but daemon asks: refused (vde_switch 2.3.2 would
    #    take the file's owner and let daemon in as nobody)
    os.chown(path, NOBODY, NOGROUP)
    req = Requester(as_user(DAEMON, DAEMON), sw.dir / "ctl", path, 5)
    assert req.reply == b""
    assert refusal(sw, req.proc.pid, DAEMON) == (
        f"client socket {path} belongs to uid {NOBODY}, not to the connecting uid {DAEMON}")
    req.close()
    assert port_print(sw, 5) == []
    # 3. nobody asking with nobody's socket is admitted, as nobody
    req = Requester(as_user(NOBODY, NOGROUP), sw.dir / "ctl", path, 5)
    data_path = control_request.parse_reply(req.reply)
    assert data_path.startswith(f"{sw.dir}/005.")
    lines = wait_endpoints(sw, 5, 1)
    assert lines[1] == " Current User: nobody Access Control: (User: nobody - Group: NONE)"
    assert lines[4].endswith(": requester")
    sock.connect(data_path)
    root = userplugs(None, f"{sw.dir}[1]")
    wait_endpoints(sw, 1, 1)
    f = frame(BCAST, A, b"to the requester")
    root.send(f)
    assert sock.recv(2000) == f
    g = frame(A, B, b"from the requester")
    sock.send(g)
    assert root.recv() == g
    req.close()
    wait_for(lambda: port_print(sw, 5) == [], what="port 5 inactive")


def test_root_peer_is_root_whoever_owns_the_socket(acl_switch, client_socket):
    """Root may use a socket owned by nobody, and is then root, not nobody."""
    sw = acl_switch
    _, path = client_socket
    os.chown(path, NOBODY, NOGROUP)
    sw.command("port/create 6")
    sw.command("port/setuser 6 daemon")              # root passes every restriction
    ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ctl.connect(str(sw.dir / "ctl"))
    ctl.sendall(control_request.build(path, 6, "root-req"))
    data_path = control_request.parse_reply(ctl.recv(200))
    lines = wait_endpoints(sw, 6, 1)
    assert lines[1] == " Current User: root Access Control: (User: daemon - Group: NONE)"
    assert os.stat(data_path).st_uid == 0
    ctl.close()
    wait_for(lambda: port_print(sw, 6) == [], what="port 6 inactive")


def test_setpriv_gives_exactly_the_groups_asked(sockdir):
    """The helper itself: a process started by as_user() has those ids and groups only."""
    need_root()
    need_tool("setpriv")
    out = subprocess.run([*as_user(NOBODY, NOGROUP, (4242, 1)), "id", "-u"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == str(NOBODY)
    out = subprocess.run([*as_user(NOBODY, NOGROUP, (4242, 1)), "id", "-G"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert sorted(map(int, out)) == [1, 4242, NOGROUP]
    assert shutil.which("vde_plug")
