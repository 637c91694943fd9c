"""pyvde-ctl: the pure console framing and output parsers, then the installed command
against real pyvde-switch and Debian vde_switch processes with vde_plug clients."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vdetest import BIN, frame, wait_data_sockets, wait_for

from switchd import console_parse as cp
from switchd.ctl import ConsoleClient

PYVDE_CTL = str(BIN / "pyvde-ctl")
A, B = "52:54:00:12:34:01", "52:54:00:12:34:02"
BCAST = "ff:ff:ff:ff:ff:ff"

PORT_TEXT = [
    "Port 0001 untagged_vlan=0000 ACTIVE - Unnamed Allocatable",
    " Current User: root Access Control: (User: NONE - Group: NONE)",
    " IN:  pkts          1          bytes                   60",
    " OUT: pkts          0          bytes                    0",
    "  -- endpoint ID 0003 module unix prog   : vm1 user=root pid=6083",
    "Port 0007 untagged_vlan=0012 INACTIVE - NOT Unnamed Allocatable",
    " Current User: NONE Access Control: (User: alice - Group: kvm)",
    " IN:  pkts 4294967296          bytes 12345678901234567890",
    " OUT: pkts          5          bytes                  300",
    "Port 0009 untagged_vlan=0000 ACTIVE - Unnamed Allocatable",
    " Current User: root Access Control: (User: NONE - Group: NONE)",
    " IN:  pkts          0          bytes                    0",
    " OUT: pkts          0          bytes                    0",
    "  -- endpoint ID 0011 module unix prog   : second: a b  c ",
    "  -- endpoint ID 0010 module longmodulename: ",
]


# ------------------------------------------------------------------ parsers

def test_parse_ports_exact_formats():
    ports = cp.parse_ports(PORT_TEXT)
    assert ports[0] == {
        "port": 1, "untagged_vlan": 0, "active": True, "allocatable": True, "user": "root",
        "acl_user": None, "acl_group": None, "in": {"frames": 1, "bytes": 60},
        "out": {"frames": 0, "bytes": 0},
        "endpoints": [{"id": 3, "module": "unix prog", "description": "vm1 user=root pid=6083"}]}
    assert ports[1] == {
        "port": 7, "untagged_vlan": 12, "active": False, "allocatable": False, "user": None,
        "acl_user": "alice", "acl_group": "kvm",
        "in": {"frames": 4294967296, "bytes": 12345678901234567890},
        "out": {"frames": 5, "bytes": 300}, "endpoints": []}
    assert ports[2]["endpoints"] == [
        {"id": 11, "module": "unix prog", "description": "second: a b  c "},
        {"id": 10, "module": "longmodulename", "description": ""}]
    assert cp.parse_ports([]) == []


@pytest.mark.parametrize("lines,bad", [
    (PORT_TEXT[:2], "ends before its IN line"),
    (PORT_TEXT[:1] + PORT_TEXT[2:], "port user"),
    (PORT_TEXT[:2] + PORT_TEXT[3:4], "port IN counter"),
    (PORT_TEXT[:4] + ["  -- endpoint 3"], "endpoint 3"),
    (["Port 0001 untagged_vlan=0000 ACTIVE"], "Port 0001 untagged_vlan=0000 ACTIVE"),
    ([" Current User: root Access Control: (User: NONE - Group: NONE)"], "Current User"),
])
def test_parse_ports_rejects_and_names_the_line(lines, bad):
    with pytest.raises(cp.ParseError, match=bad.replace("(", r"\(")):
        cp.parse_ports(lines)


def test_parse_hash():
    lines = ["Hash: 0077 Addr: 52:54:00:12:34:01 VLAN 0000 to port: 001  age 3 secs",
             "Hash: 0001 Addr: 02:00:00:00:00:0b VLAN 0012 to port: 017  age 0 secs"]
    assert cp.parse_hash(lines) == [
        {"bucket": 77, "mac": "52:54:00:12:34:01", "vlan": 0, "port": 1, "age": 3},
        {"bucket": 1, "mac": "02:00:00:00:00:0b", "vlan": 12, "port": 17, "age": 0}]
    with pytest.raises(cp.ParseError, match="Hash: 0077 Addr: 52:54:00:12:34"):
        cp.parse_hash(["Hash: 0077 Addr: 52:54:00:12:34 VLAN 0000 to port: 001  age 3 secs"])


def test_parse_vlans():
    lines = ["VLAN 0000", " -- Port 0001 tagged=0 active=1 status=Forwarding",
             " -- Port 0004 tagged=1 active=0 status=Discarding", "VLAN 0012"]
    assert cp.parse_vlans(lines) == [
        {"vlan": 0, "ports": [
            {"port": 1, "tagged": False, "active": True, "status": "Forwarding"},
            {"port": 4, "tagged": True, "active": False, "status": "Discarding"}]},
        {"vlan": 12, "ports": []}]
    with pytest.raises(cp.ParseError, match="-- Port 0001"):
        cp.parse_vlans([" -- Port 0001 tagged=0 active=1 status=Forwarding"])   # no VLAN yet


def test_parse_showinfo():
    lines = ["VDE switch V.2.3.2",
             "(C) Virtual Square Team (coord. R. Davoli) 2005,2006,2007 - GPLv2", "",
             "pid 2059 MAC 00:ff:f0:31:94:61 uptime 17", "mgmt /tmp/my mgmt perm 0660"]
    assert cp.parse_showinfo(lines) == {
        "banner": lines[:2], "pid": 2059, "mac": "00:ff:f0:31:94:61", "uptime": 17,
        "mgmt": {"path": "/tmp/my mgmt", "mode": "0660"}}
    assert cp.parse_showinfo(lines[:4])["mgmt"] is None
    with pytest.raises(cp.ParseError, match="no 'pid"):
        cp.parse_showinfo(lines[:3])
    with pytest.raises(cp.ParseError, match="extra"):
        cp.parse_showinfo(lines + ["extra"])


def test_parse_port_and_hash_showinfo():
    assert cp.parse_port_showinfo(["Numports=32", "HUB=false", "counters=true"]) == {
        "numports": 32, "hub": False, "counters": True}
    assert cp.parse_hash_showinfo(["Hash size 128", "GC interval 2 secs", "GC expire 100 secs",
                                   "Min persistence 3 secs"]) == {
        "hash_size": 128, "gc_interval": 2, "gc_expire": 100, "min_persistence": 3}
    with pytest.raises(cp.ParseError, match="Numports 32"):
        cp.parse_port_showinfo(["Numports 32"])
    with pytest.raises(cp.ParseError, match="GC interval two"):
        cp.parse_hash_showinfo(["GC interval two secs"])


def test_to_json_picks_the_parser_by_command_word():
    assert cp.to_json("port/print 1", PORT_TEXT[:5])[0]["port"] == 1
    assert cp.to_json("port/allprint", PORT_TEXT)[1]["active"] is False
    assert cp.to_json("hash/find 52:54:00:12:34:01",
                      ["Hash: 0077 Addr: 52:54:00:12:34:01 VLAN 0000 to port: 001  age 3 secs"]
                      )[0]["port"] == 1
    assert cp.to_json("vlan/allprint", ["VLAN 0003"]) == [{"vlan": 3, "ports": []}]
    assert cp.to_json("ds/showinfo", ["ctl dir /x", "std mode 0600"]) == {
        "lines": ["ctl dir /x", "std mode 0600"]}


# hypothesis: text made of pieces of the real formats reaches deep into the parsers
PIECES = [ln[:k] for ln in PORT_TEXT for k in (0, 5, 12, len(ln))] + [
    "Hash: 0001 Addr: 02:00:00:00:00:0b VLAN 0012 to port: 017  age ", "0 secs", "VLAN 0000",
    " -- Port 0001 tagged=0 active=1 status=", "pid 1 MAC 00:ff:f0:31:94:61 uptime 1",
    "mgmt /x perm 0", "600", "Numports=", "Hash size ", " secs", "\u0663", "=", "", " ", ":",
]
line = st.one_of(st.text(max_size=40),
                 st.lists(st.sampled_from(PIECES) | st.text(max_size=4), max_size=4).map("".join))


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(sorted(cp.PARSERS)), st.lists(line, max_size=12))
def test_parsers_raise_only_parse_error(command, lines):
    try:
        doc = cp.to_json(command, lines)
    except cp.ParseError:
        return
    json.dumps(doc)          # whatever parsed is plain JSON


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(
    [b"0000 DATA END WITH '.'\n", b".\n", b"1000 Success\n", b"1006 No such device\n",
     b"\nvde$ ", b"3021 port/+ 01\n", b"9999 END OF SESSION", b"x\n", b"\n", b"\xff"])
    | st.binary(max_size=6), max_size=10).map(b"".join), st.booleans())
def test_reply_framing_never_raises_unexpectedly(data, eof):
    try:
        got = cp.parse_reply(data, "vde$ ", eof)
    except EOFError:
        assert eof
        return
    if got is not None:
        _, rest = got
        assert len(rest) < len(data) and data.endswith(rest)


# ------------------------------------------------------------------ framing

def test_banner_and_prompt():
    assert cp.parse_banner(b"VDE switch V.2.3.2\n(C) Virtual Square\n\nvde") is None
    assert cp.parse_banner(b"VDE switch V.2.3.2\n(C) Virtual Square\n\nvde$ ") == (
        ["VDE switch V.2.3.2", "(C) Virtual Square"], "vde$ ")


REPLY = (b"0000 DATA END WITH '.'\nPort 0001 untagged_vlan=0000 ACTIVE - Unnamed Allocatable\n"
         b"\n.\n1000 Success\n\nvde$ ")


def test_reply_with_data_block_at_every_split_point():
    for cut in range(len(REPLY)):
        assert cp.parse_reply(REPLY[:cut]) is None, cut
    reply, rest = cp.parse_reply(REPLY + b"3021 po")
    assert (reply.code, reply.text, reply.ok) == (0, "Success", True)
    assert reply.data == ["Port 0001 untagged_vlan=0000 ACTIVE - Unnamed Allocatable", ""]
    assert reply.output == reply.data and rest == b"3021 po"


def test_error_reply_and_empty_block():
    reply, _ = cp.parse_reply(b"0000 DATA END WITH '.'\n.\n1006 No such device or address\n\nvde$ ")
    assert (reply.code, reply.text, reply.data, reply.ok) == (6, "No such device or address", [], False)
    reply, _ = cp.parse_reply(b"1038 Function not implemented\n\nvde$ ")
    assert (reply.code, reply.data) == (38, None)


def test_events_are_skipped_anywhere():
    stream = (b"3031 port/ep/+ Port 01 FD  6\n0000 DATA END WITH '.'\n3022 port/- 01\nline 1\n"
              b".\n3023 port/descr Port 01 FD  6 -> \"ev\"\n1000 Success\n3021 port/+ 02\n\nvde$ ")
    reply, rest = cp.parse_reply(stream)
    assert reply.data == ["line 1"] and reply.code == 0 and rest == b""
    assert [e[:4] for e in reply.events] == ["3031", "3022", "3023", "3021"]


def test_load_transcript_status_lines_are_output():
    stream = (b"vde[/x]: hash/setexpire 60\n1000 Success\nvde[/x]: bogus\n"
              b"1038 Function not implemented\n1000 Success\n\nvde$ ")
    reply, _ = cp.parse_reply(stream)
    assert reply.code == 0 and reply.data is None
    assert reply.output == ["vde[/x]: hash/setexpire 60", "1000 Success", "vde[/x]: bogus",
                            "1038 Function not implemented"]


def test_end_of_session_and_eof():
    reply, _ = cp.parse_reply(b"3021 port/+ 01\n9999 END OF SESSION")
    assert reply.ended
    assert cp.parse_reply(b"0000 DATA END WITH '.'\nhalf\n") is None
    with pytest.raises(EOFError):
        cp.parse_reply(b"0000 DATA END WITH '.'\nhalf\n", eof=True)


# ------------------------------------------------------------------ the command, for real

def ctl(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([PYVDE_CTL, *args], check=False, capture_output=True, text=True,
                          timeout=timeout)


def ctl_json(*args: str):
    r = ctl("--json", *args)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    return json.loads(r.stdout)


def port_of(lines: list[str], description: str) -> int:
    """From the switch's own port/print: the port whose endpoint has this description."""
    number = None
    for ln in lines:
        if ln.startswith("Port "):
            number = int(ln.split()[1])
        elif f": {description} user=" in ln:
            return number
    raise AssertionError(f"no endpoint described {description!r} in {lines}")


def two_talking_plugs(sw, plugs, wait_ready):
    """Two vde_plugs that have each sent a frame the other received: counters and MACs."""
    a = plugs(str(sw.dir), "-D", "vm1 first")
    b = plugs(str(sw.dir), "-D", "vm2")
    wait_ready()
    a.send(frame(BCAST, A, bytes(46)))
    assert b.recv() == frame(BCAST, A, bytes(46))
    b.send(frame(A, B, bytes(46)))
    assert a.recv() == frame(A, B, bytes(46))
    return a, b


def test_json_matches_the_switch_console(switch, plugs):
    def ready():
        wait_for(lambda: sum(ln.startswith("Port ") for ln in switch.command("port/print")) == 2,
                 what="two ports")
    two_talking_plugs(switch, plugs, ready)
    mgmt = switch.mgmt_path
    reference = switch.command("port/print")
    pa, pb = port_of(reference, "vm1 first"), port_of(reference, "vm2")

    r = ctl(mgmt, "port/print")                       # text mode: the data block, unframed
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == "".join(ln + "\n" for ln in reference)

    ports = ctl_json(mgmt, "port/print")
    assert [p["port"] for p in ports] == sorted([pa, pb])
    by_port = {p["port"]: p for p in ports}
    ep_a, = by_port[pa]["endpoints"]
    assert ep_a["module"] == "unix prog"
    assert ep_a["description"].startswith("vm1 first user=root pid=")
    assert f"endpoint ID {ep_a['id']:04d} module unix prog   : {ep_a['description']}" in \
        "\n".join(reference)
    assert by_port[pa]["in"] == {"frames": 1, "bytes": 60}
    assert by_port[pa]["out"] == {"frames": 1, "bytes": 60}
    assert by_port[pb]["in"] == {"frames": 1, "bytes": 60}
    assert all(p["active"] and p["allocatable"] and p["user"] == "root" and p["acl_user"] is None
               for p in ports)
    assert ctl_json(mgmt, "port/print", str(pb)) == [by_port[pb]]   # words joined into one line

    table = ctl_json(mgmt, "hash/print")
    assert sorted((e["mac"], e["vlan"], e["port"]) for e in table) == sorted(
        [(A, 0, pa), (B, 0, pb)])
    assert all(0 <= e["age"] < 100 for e in table)
    found, = ctl_json(mgmt, "hash/find", B)
    assert (found["mac"], found["port"]) == (B, pb)

    info = ctl_json(mgmt, "showinfo")
    assert info["pid"] == switch.proc.pid
    assert info["mgmt"] == {"path": mgmt, "mode": "0600"}
    assert info["banner"][0].startswith("pyvde-switch V.")
    assert info["mac"].startswith("00:ff:")
    assert ctl_json(mgmt, "port/showinfo") == {"numports": 32, "hub": False, "counters": True}
    assert ctl_json(mgmt, "hash/showinfo") == {"hash_size": 128, "gc_interval": 2,
                                               "gc_expire": 100, "min_persistence": 3}
    ds = ctl_json(mgmt, "ds/showinfo")
    assert ds == {"lines": switch.command("ds/showinfo")}


def test_error_command_exits_1_with_the_switch_text(switch):
    r = ctl(switch.mgmt_path, "port/print", "99")
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == "pyvde-ctl: port/print 99: Invalid argument\n"     # out of range
    r = ctl(switch.mgmt_path, "port/print", "7")                              # no such port
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == "pyvde-ctl: port/print 7: No such device or address\n"
    r = ctl("--json", switch.mgmt_path, "no/such/command")
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == "pyvde-ctl: no/such/command: Function not implemented\n"


def test_connection_errors_exit_2_with_one_line(sockdir):
    missing = str(sockdir / "nothing")
    r = ctl(missing, "showinfo")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith(f"pyvde-ctl: {missing}: no such socket") and r.stderr.count("\n") == 1

    dead = str(sockdir / "dead")                       # a socket file nobody listens on
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(dead)
    s.close()
    r = ctl(dead, "showinfo")
    assert r.returncode == 2 and "connection refused" in r.stderr and r.stderr.count("\n") == 1

    mute = str(sockdir / "mute")                       # accepts (backlog) but never speaks
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(mute)
    s.listen(1)
    try:
        r = ctl("--timeout", "0.5", mute, "showinfo")
    finally:
        s.close()
    assert r.returncode == 2 and r.stderr == (
        f"pyvde-ctl: {mute}: timed out after 0.5 s waiting for its prompt\n")


def fake_console(path: str, replies: dict[bytes, bytes]):
    """A one-connection console server in a thread: banner, then for each read the reply
    registered for it; it closes after a reply that does not end in a prompt, or when it
    has none. Returns the list of reads and the thread."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    reads: list[bytes] = []

    def serve():
        conn, _ = srv.accept()
        with conn:
            conn.sendall(b"Fake console\n\nvde$ ")
            while True:
                data = conn.recv(4096)
                if not data:
                    break
                reads.append(data)
                if data not in replies:
                    break
                conn.sendall(replies[data])
                if not replies[data].endswith(b"$ "):
                    break
        srv.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return reads, t


def test_one_write_per_command_events_skipped_and_logout(sockdir):
    path = str(sockdir / "fake")
    reads, t = fake_console(path, {
        b"hash/showinfo\n": b"3021 port/+ 01\n0000 DATA END WITH '.'\nHash size 64\n3022 port/- 01\n"
                            b".\n1000 Success\n\nvde$ ",
        b"logout\n": b"3021 port/+ 02\n9999 END OF SESSION"})
    r = ctl("--json", path, "hash/showinfo")
    t.join(5)
    assert (r.returncode, r.stderr) == (0, "")
    assert json.loads(r.stdout) == {"hash_size": 64}
    assert reads == [b"hash/showinfo\n", b"logout\n"]


def test_server_closing_mid_reply_and_bad_format_exit_2(sockdir):
    path = str(sockdir / "half")
    _, t = fake_console(path, {b"port/print\n": b"0000 DATA END WITH '.'\nPort 0001 untag"})
    r = ctl(path, "port/print")
    t.join(5)
    assert r.returncode == 2
    assert r.stderr == f"pyvde-ctl: {path}: the server closed the connection in the middle of a reply\n"

    path = str(sockdir / "odd")
    _, t = fake_console(path, {b"port/print\n": b"0000 DATA END WITH '.'\nPort one\n.\n1000 Success\n\nvde$ ",
                               b"logout\n": b"9999 END OF SESSION"})
    r = ctl("--json", path, "port/print")
    t.join(5)
    assert r.returncode == 2 and r.stdout == "" and "Traceback" not in r.stderr
    assert r.stderr == "pyvde-ctl: port/print: cannot parse the output: not a port line: 'Port one'\n"


def test_file_mode_runs_in_order_and_stops_at_the_first_failure(switch, sockdir):
    script = sockdir / "cmds"
    script.write_text("# set the expiry, then look\n\nhash/setexpire 50\n  hash/showinfo  \n"
                      "bogus command\nport/sethub 1\n")
    r = ctl("-f", str(script), switch.mgmt_path)
    assert r.returncode == 1
    assert r.stdout == "Hash size 128\nGC interval 2 secs\nGC expire 50 secs\nMin persistence 3 secs\n"
    assert r.stderr == "pyvde-ctl: bogus command: Function not implemented\n"
    assert switch.command("port/showinfo")[1] == "HUB=false"      # the line after was not run

    script.write_text("port/sethub 1\nport/showinfo\nds/showinfo\n")
    docs = ctl_json("--file", str(script), switch.mgmt_path)
    assert docs == [{"command": "port/sethub 1", "result": {"lines": []}},
                    {"command": "port/showinfo",
                     "result": {"numports": 32, "hub": True, "counters": True}},
                    {"command": "ds/showinfo", "result": {"lines": switch.command("ds/showinfo")}}]


def test_usage_errors_exit_2(switch, sockdir):
    for args in ([switch.mgmt_path], ["-f", str(sockdir / "x"), switch.mgmt_path, "help"],
                 ["--timeout", "-1", switch.mgmt_path, "help"], [switch.mgmt_path, "#", "x"]):
        r = ctl(*args)
        assert r.returncode == 2 and r.stdout == "" and "usage: pyvde-ctl" in r.stderr, args
    r = ctl("-f", str(sockdir / "missing"), switch.mgmt_path)
    assert r.returncode == 2 and r.stderr.startswith("pyvde-ctl: ") and "cannot read" in r.stderr


def test_debian_vde_switch(debian_switch, plugs):
    sw = debian_switch()
    two_talking_plugs(sw, plugs, lambda: wait_data_sockets(sw.dir, 2))
    reference = sw.command("port/print")
    pa, pb = port_of(reference, "vm1 first"), port_of(reference, "vm2")
    ports = ctl_json(sw.mgmt_path, "port/print")
    assert sorted(p["port"] for p in ports) == sorted([pa, pb])
    by_port = {p["port"]: p for p in ports}
    assert by_port[pa]["endpoints"][0]["description"].startswith("vm1 first user=root pid=")
    assert by_port[pa]["in"]["frames"] == 1 and by_port[pb]["in"]["frames"] == 1
    assert ctl(sw.mgmt_path, "port/print").stdout == "".join(ln + "\n" for ln in reference)
    assert sorted((e["mac"], e["port"]) for e in ctl_json(sw.mgmt_path, "hash/print")) == sorted(
        [(A, pa), (B, pb)])
    vlans = ctl_json(sw.mgmt_path, "vlan/print")
    assert [v["vlan"] for v in vlans] == [0]
    assert sorted(p["port"] for p in vlans[0]["ports"]) == sorted([pa, pb])
    assert all(p["active"] and not p["tagged"] and p["status"] == "Forwarding"
               for p in vlans[0]["ports"])
    info = ctl_json(sw.mgmt_path, "showinfo")
    assert info["pid"] == sw.proc.pid and info["banner"][0] == "VDE switch V.2.3.2"
    assert info["mgmt"] == {"path": sw.mgmt_path, "mode": "0600"}
    assert ctl_json(sw.mgmt_path, "port/showinfo")["numports"] == 32
    assert ctl_json(sw.mgmt_path, "hash/showinfo")["hash_size"] == 128
    r = ctl(sw.mgmt_path, "port/print 99")
    assert (r.returncode, r.stderr) == (1, "pyvde-ctl: port/print 99: Invalid argument\n")

    # several commands in one session, one read() each, as vde_switch requires
    script = sw.dir.parent / "vdesw.cmds"
    script.write_text("hash/setexpire 40\nhash/showinfo\nvlan/allprint\n")
    docs = ctl_json("-f", str(script), sw.mgmt_path)
    assert docs[1]["result"]["gc_expire"] == 40 and docs[2]["result"] == vlans


def test_debian_vde_switch_debug_events_are_skipped(debian_switch, plugs):
    sw = debian_switch()
    client = ConsoleClient(sw.mgmt_path, timeout=5)
    try:
        assert client.banner[0] == "VDE switch V.2.3.2" and client.prompt == "vde$ "
        assert client.command("debug/add port").ok
        plugs(str(sw.dir), "-D", "late")
        wait_data_sockets(sw.dir, 1)
        wait_for(lambda: client.sock.recv(4096, socket.MSG_PEEK), what="a debug event")
        reply = client.command("port/print")
        assert reply.ok and reply.events and all(e[0] == "3" for e in reply.events)
        ports = cp.parse_ports(reply.data)
        assert ports[0]["endpoints"][0]["description"].startswith("late user=")
    finally:
        client.logout()
        client.close()
    assert os.path.exists(sw.mgmt_path)


def test_json_vlans_on_pyvde_switch(switch, plugs):
    def ready():
        wait_for(lambda: sum(ln.startswith("Port ") for ln in switch.command("port/print")) == 2,
                 what="two ports")
    two_talking_plugs(switch, plugs, ready)
    mgmt = switch.mgmt_path
    pa, pb = (port_of(switch.command("port/print"), d) for d in ("vm1 first", "vm2"))
    for cmd in ("vlan/create 12", f"vlan/addport 12 {pb}", "port/create 30",
                "port/setvlan 30 12"):
        r = ctl(mgmt, *cmd.split())
        assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), cmd
    assert ctl_json(mgmt, "vlan/print") == [
        {"vlan": 0, "ports": [{"port": p, "tagged": False, "active": True, "status": "Forwarding"}
                              for p in sorted([pa, pb])]},
        {"vlan": 12, "ports": [{"port": pb, "tagged": True, "active": True,
                                "status": "Forwarding"}]}]
    assert ctl_json(mgmt, "vlan/allprint", "12") == [
        {"vlan": 12, "ports": [
            {"port": pb, "tagged": True, "active": True, "status": "Forwarding"},
            {"port": 30, "tagged": False, "active": False, "status": "Learning"}]}]
    r = ctl(mgmt, "vlan/remove", "12")
    assert (r.returncode, r.stderr) == (1, "pyvde-ctl: vlan/remove 12: Address already in use\n")
