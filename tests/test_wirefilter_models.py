"""pyvde-wirefilter's Markov model, interface speed, blink and netem's models, between
real pyvde-switches: measured on the frames that arrive."""
from __future__ import annotations

import socket
import subprocess
import threading
import time

import pytest
from test_wirefilter import (
    PYVDE_WIREFILTER,
    WF,
    A,
    B,
    drain,
    exchange,
    two,
    wait_cable,
    wf,
)
from vdetest import Console, frame

__all__ = ["two", "wf"]     # fixtures, imported for pytest


def arrival_times(client, out: list, idle: float) -> None:
    """Appends the arrival time of every frame client receives until it is idle."""
    client.data.settimeout(idle)
    while True:
        try:
            client.data.recv(65536)
        except TimeoutError:
            return
        out.append(time.monotonic())


def test_markov_nodes_switch_the_parameters_live(two, wf):
    s1, s2, a, b = two
    w = wf(s1.dir, s2.dir, "--seed", "3")
    wait_cable(s1, s2)
    c = Console(w.mgmt, prompt=WF)
    for cmd in ("markov-numnodes 2", "markov-name 1,dead", "loss 100[1]", "markov-setnode 1"):
        assert c.ok(cmd) == []
    assert c.ok("showcurrent") == ['Current Markov Node 1 "dead" (0,..,1)']
    info = c.ok("showinfo")
    assert info[1] == 'Node 1 "dead" (0,..,1) Markov-time 100'
    assert info[2] == "Loss   L->R 100+0U   R->L 100+0U"
    assert c.ok("showinfo 0")[2] == "Loss   L->R 0+0U   R->L 0+0U"
    assert exchange(a, b, 200) == 0                 # node 1 loses everything
    c.ok("markov-setnode 0")
    assert exchange(a, b, 200) == 200               # node 0 is a clean wire
    assert c.ok("setedge 0,1,25") == []
    assert c.ok("showedges 0") == ['Edge 0 ->0  ""->"" weight 75',
                                   'Edge 0 ->1  ""->"dead" weight 25']
    assert c.raw("setedge 0,1,125").startswith(b"1022 ")
    # a data command announces its block before it fails, as wirefilter's console does
    assert c.raw("showinfo 2") == b"0000 DATA END WITH '.'\n.\n1022 Invalid argument\n\nVDEwf$ "
    assert c.raw("markov-setnode 5").startswith(b"1022 ")
    assert c.raw("loss 5[2]").startswith(b"1022 ")


def test_markov_chain_time_in_each_node(two, wf):
    """Node 1 loses everything; 0 -> 1 with 20%, 1 -> 0 with 60% every 5 ms: the wire
    spends 25% of its time in node 1, so 25% of a steady stream is lost."""
    s1, s2, a, b = two
    w = wf(s1.dir, s2.dir, "--seed", "5")
    wait_cable(s1, s2)
    c = Console(w.mgmt, prompt=WF)
    for cmd in ("markov-numnodes 2", "loss 100[1]", "setedge 0,1,20", "setedge 1,0,60",
                "markov-time 5"):
        c.ok(cmd)
    sent = got = 0
    t_end = time.monotonic() + 4
    while time.monotonic() < t_end:
        for i in range(20):
            a.send(frame(B, A, bytes(80)))
        sent += 20
        time.sleep(0.002)
        got += len(drain(b, 0.0005))
    got += len(drain(b, 0.3))
    # ~800 steps: the fraction of time in node 1 has sd ~ 0.025
    assert 1 - got / sent == pytest.approx(0.25, abs=0.08)


def test_speed_limits_what_the_input_takes(two, wf):
    s1, s2, a, b = two
    speed = 200_000                                  # bytes/s
    wf(s1.dir, s2.dir, "--speed", f"LR{speed}")
    wait_cable(s1, s2)
    b.send(frame("ff:ff:ff:ff:ff:ff", B, b"learn"))
    a.recv()
    arrivals = []
    receiver = threading.Thread(target=arrival_times, args=(b, arrivals, 1.0))
    receiver.start()
    t_end = time.monotonic() + 2.5
    while time.monotonic() < t_end:                  # offer ~3x the speed
        for _ in range(6):
            a.send(frame(B, A, bytes(986)))          # 1000-byte frames
        time.sleep(0.01)
    receiver.join()
    steady = [t for t in arrivals if arrivals[0] + 0.5 <= t <= t_end]
    rate = (len(steady) - 1) * 1000 / (steady[-1] - steady[0])
    assert rate == pytest.approx(speed, rel=0.05)


def test_blink_announces_every_frame(two, wf, sockdir):
    s1, s2, a, b = two
    path = str(sockdir / "blink")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(path)
    listener.settimeout(3)
    w = wf(s1.dir, s2.dir, "--blink", path, "--blinkid", "wire7")
    wait_cable(s1, s2)
    a.send(frame("ff:ff:ff:ff:ff:ff", A, bytes(86)))        # 100 bytes
    b.recv()
    b.send(frame(A, B, bytes(36)))                          # 50 bytes
    a.recv()
    lines = set()
    while len(lines) < 2:
        lines.add(listener.recv(100))
    assert lines >= {b"wire7 LR 102\n", b"wire7 RL 52\n"}   # wirefilter counts the header
    info = Console(w.mgmt, prompt=WF).ok("showinfo")
    assert f"Blink socket: {path}" in info and "Blink id:     wire7" in info
    listener.close()


def test_gemodel_through_switches_counts_losses(two, wf):
    s1, s2, a, b = two
    w = wf(s1.dir, s2.dir, "--gemodel", "LR2,20", "--seed", "9")
    wait_cable(s1, s2)
    b.send(frame("ff:ff:ff:ff:ff:ff", B, b"learn"))
    a.recv()
    n = 6000
    got = exchange(a, b, n)
    c = Console(w.mgmt, prompt=WF)
    counters = c.ok("counters")[0]
    assert f"drop loss {n - got} " in counters
    # P(bad) = 2 / 22, everything lost in bad: 9.1%; a bursty chain varies more
    assert (n - got) / n == pytest.approx(2 / 22, abs=0.03)
    info = c.ok("showinfo")
    assert "gemodel L->R 2,20,100,0   R->L -" in info


def test_rate_within_two_percent(two, wf):
    s1, s2, a, b = two
    wf(s1.dir, s2.dir, "--rate", "LR8mbit,0", "--capacity", "LR4M")   # 1 MB/s
    wait_cable(s1, s2)
    b.send(frame("ff:ff:ff:ff:ff:ff", B, b"learn"))
    a.recv()
    n = 1500
    times = []
    receiver = threading.Thread(target=arrival_times, args=(b, times, 1.0))
    receiver.start()
    for i in range(n):                               # 1.5 MB offered in 0.1 s
        a.send(frame(B, A, i.to_bytes(4, "big") + bytes(982)))
        if i % 200 == 199:
            time.sleep(0.01)
    receiver.join()
    assert len(times) == n
    rate = (n - 1) * 1000 / (times[-1] - times[0])
    assert rate == pytest.approx(1_000_000, rel=0.02)


def test_reorder_and_corrupt_live(two, wf):
    s1, s2, a, b = two
    w = wf(s1.dir, s2.dir, "--seed", "4")
    wait_cable(s1, s2)
    c = Console(w.mgmt, prompt=WF)
    for cmd in ("delay LR20", "reorder LR30", "corrupt LR10"):
        assert c.ok(cmd) == []
    b.send(frame("ff:ff:ff:ff:ff:ff", B, b"learn"))
    a.recv()
    n = 2000
    sent = []
    for i in range(n):
        f = frame(B, A, i.to_bytes(4, "big") + bytes(82))
        sent.append(f)
        a.send(f)
        if i % 100 == 99:
            time.sleep(0.005)
    got = drain(b, 0.5)
    # a bit flipped in an address may send a frame elsewhere (or make the switch drop it)
    assert n - 5 <= len(got) <= n
    clean = set(sent)
    damaged = sum(1 for f in got if f not in clean)
    assert damaged / len(got) == pytest.approx(0.10, abs=0.025)
    order = [int.from_bytes(f[14:18], "big") for f in got if f in clean]
    ahead, earliest_after = 0, n               # frames that arrived before an older one
    for i in reversed(order):
        ahead += earliest_after < i
        earliest_after = min(earliest_after, i)
    assert ahead / len(order) == pytest.approx(0.30, abs=0.05)
    assert "corrupted" in c.ok("counters")[0]


@pytest.mark.parametrize("argv,message", [
    (["--gemodel", "150", "a", "b"], "option --gemodel: 150 is more than 100 percent"),
    (["--rate", "fast", "a", "b"], "option --rate: 'fast' is not a rate"),
    (["--slot", "20,10", "a", "b"], "option --slot: MAX 10 is less than MIN 20"),
    (["--delay-distribution", "cauchy", "a", "b"], "option --delay-distribution: expected one"),
    (["--loss", "5[1]", "a", "b"], "option --loss: '5[1]': Markov nodes other than 0"),
])
def test_bad_netem_options_one_line(argv, message):
    r = subprocess.run([PYVDE_WIREFILTER, *argv], capture_output=True, text=True, timeout=10,
                       check=False)
    assert r.returncode == 2 and message in r.stderr.splitlines()[0], r.stderr


def test_markov_debug_announces_node_changes(two, wf):
    s1, s2, _a, _b = two
    w = wf(s1.dir, s2.dir, "--seed", "8")
    c = Console(w.mgmt, prompt=WF)
    watcher = Console(w.mgmt, prompt=WF)
    for cmd in ("markov-numnodes 2", "markov-name 1,bad", "setedge 0,1,100",
                "setedge 1,0,100"):
        c.ok(cmd)
    assert watcher.ok("markov-debug 1") == []
    c.ok("markov-time 50")                  # a change every 50 ms
    time.sleep(0.6)
    watcher.sock.settimeout(1)
    lines = [ln for ln in watcher.sock.recv(65536).decode().splitlines()
             if ln.startswith("38")]
    assert len(lines) >= 6
    assert set(lines) == {'3801 Node 0 "" -> 1 "bad"', '3800 Node 1 "bad" -> 0 ""'}
    c.sock.settimeout(0.2)
    with pytest.raises(TimeoutError):
        c.sock.recv(100)                    # only the session that asked gets them


def test_every_netem_setting_works_live(two, wf):
    """Names that start with another command's name (loss-state, delay-corr...) reach
    their own command."""
    s1, s2, _a, _b = two
    w = wf(s1.dir, s2.dir)
    c = Console(w.mgmt, prompt=WF)
    settings = {"gemodel": "LR1,10", "loss-state": "LR2", "loss-corr": "LR25",
                "delay-distribution": "LRpareto", "delay-corr": "LR50", "dup-corr": "LR10",
                "reorder": "LR5", "reorder-gap": "LR3", "corrupt": "LR1", "discard-corrupt": "LR1",
                "rate": "LR10mbit", "slot": "LR1,2"}
    for name, value in settings.items():
        assert c.raw(f"{name} {value}") == b"1000 Success\n\nVDEwf$ ", name
    info = c.ok("showinfo")
    shown = {ln.split(" L->R ")[0]: ln for ln in info if " L->R " in ln}
    assert shown["loss-state"] == "loss-state L->R 2,98,0,100,0   R->L -"
    assert shown["reorder-gap"] == "reorder-gap L->R 3   R->L -"
    assert shown["rate"] == "rate L->R 10mbit,0,0,0   R->L -"
    assert c.raw("loss-state LR50,60,50").startswith(b"1022 ")
