"""A real QEMU guest (TCG, Debian kernel + busybox) on pyvde-switch, pinging a host tap."""
import subprocess

import pytest
from guest import build_initramfs, kernel, run_guest
from test_tap_netns import plug2tap
from vdetest import wait_data_sockets, wait_for

pytestmark = [pytest.mark.qemu, pytest.mark.netns]

GUEST_SCRIPT = """
ip link set eth0 up
ip addr add 10.21.0.2/24 dev eth0
if ping -c 3 -W 3 10.21.0.1; then echo PING-OK; else echo PING-FAILED; fi
cat /sys/class/net/eth0/address
"""


@pytest.mark.parametrize("form", ["nic", "netdev-port"])
def test_qemu_guest_pings_a_namespace_tap(switch, netns, sockdir, form):
    ns = netns()
    tap = plug2tap(ns, switch.dir, "tap0", "10.21.0.1/24")
    initrd = build_initramfs(GUEST_SCRIPT, sockdir / "initrd.cpio")
    mac = "52:54:00:12:34:56"
    if form == "nic":
        nic = ["-nic", f"vde,sock={switch.dir},model=virtio-net-pci,mac={mac}"]
    else:
        nic = ["-netdev", f"vde,id=n0,sock={switch.dir},port=5",
               "-device", f"virtio-net-pci,netdev=n0,mac={mac}"]
    try:
        wait_data_sockets(switch.dir, 1)
        out = run_guest(initrd, nic)
        assert "PING-OK" in out, out[-3000:]
        assert "3 packets transmitted, 3 packets received" in out
    finally:
        tap.terminate()
        tap.wait()
    assert mac in out


def test_qemu_guest_shows_up_on_the_console(switch, sockdir):
    """The guest's endpoint is described as QEMU and its MAC is learned on its port."""
    # ARP requests, for ever: the guest's MAC keeps showing up until we stop QEMU
    initrd = build_initramfs("ip link set eth0 up\nip addr add 10.22.0.2/24 dev eth0\n"
                             "while true; do ping -c 1 -W 1 10.22.0.9; done\n", sockdir / "i.cpio")
    proc = subprocess.Popen(
        ["qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-nographic", "-no-reboot",
         "-monitor", "none", "-kernel", str(kernel()[0]),
         "-initrd", str(initrd), "-append", "console=ttyS0 panic=-1 quiet",
         "-nic", f"vde,sock={switch.dir}[3],model=virtio-net-pci,mac=52:54:00:aa:bb:cc"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        lines = wait_for(lambda: [l for l in switch.try_command("port/print 3")[0] if "QEMU user=" in l],
                         timeout=30, what="QEMU endpoint on port 3")
        assert "module unix prog   : QEMU user=root pid=" in lines[0]
        wait_for(lambda: any("52:54:00:aa:bb:cc VLAN 0000 to port: 003" in l
                             for l in switch.command("hash/print")), timeout=90,
                 what="the guest's MAC learned on port 3")
    finally:
        proc.kill()
        proc.wait()
