"""Debian's other VDE programs on pyvde-switch: wirefilter, dpipe cables, slirpvde."""
import subprocess

import pytest
from test_tap_netns import plug2tap
from vdetest import frame, need_tool, wait_data_sockets

BCAST = "ff:ff:ff:ff:ff:ff"
A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


def exchange(left, right):
    f = frame(BCAST, A, b"left to right" * 10)
    left.send(f)
    assert right.recv() == f
    g = frame(A, B, b"right to left" * 10)
    right.send(g)
    assert left.recv() == g


def test_wirefilter_between_two_pyvde_switches(switches, plugs):
    need_tool("wirefilter")
    s1, s2 = switches(name="s1"), switches(name="s2")
    wf = subprocess.Popen(["wirefilter", "-v", f"{s1.dir}:{s2.dir}"], stdin=subprocess.PIPE,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_data_sockets(s1.dir, 1), wait_data_sockets(s2.dir, 1)
        assert any("vde_crosscable" in l for l in s1.command("port/print"))
        left, right = plugs(str(s1.dir)), plugs(str(s2.dir))
        wait_data_sockets(s1.dir, 2), wait_data_sockets(s2.dir, 2)
        exchange(left, right)
    finally:
        wf.kill()
        wf.wait()


def test_dpipe_cable_between_pyvde_and_debian_switch(switches, debian_switch, plugs):
    need_tool("dpipe")
    ours, theirs = switches(name="ours"), debian_switch(name="theirs")
    cable = subprocess.Popen(["dpipe", "vde_plug", str(ours.dir), "=", "vde_plug", str(theirs.dir)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_data_sockets(ours.dir, 1), wait_data_sockets(theirs.dir, 1)
        left, right = plugs(str(ours.dir)), plugs(str(theirs.dir))
        wait_data_sockets(ours.dir, 2), wait_data_sockets(theirs.dir, 2)
        exchange(left, right)
    finally:
        cable.kill()
        cable.wait()


@pytest.mark.netns
def test_slirpvde_answers_a_namespace_host(switch, netns):
    need_tool("slirpvde")
    ns = netns()
    slirp = subprocess.Popen(["slirpvde", "-s", str(switch.dir)], stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tap = plug2tap(ns, switch.dir, "tap0", "10.0.2.15/24")
    try:
        wait_data_sockets(switch.dir, 2)
        r = ns.ping("10.0.2.2", count=3)
        assert r.returncode == 0, r.stdout + r.stderr
        assert any("slirpvde" in l for l in switch.command("port/print"))
    finally:
        tap.terminate(), slirp.kill()
        tap.wait(), slirp.wait()
