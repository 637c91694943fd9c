"""pyvde-slirp on a tap (-s tap://NAME --netns PATH --userns PATH), slirp4netns's set-up:
a rootless "container" (a user namespace owning a network namespace, made by an
unprivileged user) gets a DHCP lease, moves data both ways intact (the C data path and
--no-fast-path, MTU 1500 and 65520), and -L reaches a service inside it. pyvde-slirp and
the container run without privileges: the tap is opened by pyvde-slirp entering the
container's namespaces, as slirp4netns does."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
from test_slirp import PYVDE_SLIRP, UDHCPC_SCRIPT, Slirp, unprivileged
from test_slirp_fastpath import HashServer, handed_and_taken_back, report, transfer
from vdetest import need_tool, wait_for

pytestmark = pytest.mark.netns
# The interpreter for scripts inside the container: the system's, since the tests' own may
# live where the container's user cannot reach (a home directory).
PYTHON = "/usr/bin/python3"
# the lease script of test_slirp, minus /etc/resolv.conf (not the container's to write)
LEASE_SCRIPT = "\n".join(ln for ln in UDHCPC_SCRIPT.splitlines() if "resolv.conf" not in ln)


INSIDE_SERVER = """
import socket
s = socket.create_server(("10.0.2.15", 7777))
c, _ = s.accept()
c.sendall(b"inside:" + c.recv(100))
c.close()
"""


class Container:
    """A user namespace and a network namespace made by an unprivileged user (`unshare
    -U -r -n`), like a rootless container's; exec() runs a command in them as that user
    (root inside, nobody outside)."""

    def __init__(self, tmp):
        need_tool("unshare", "nsenter", "setpriv", "busybox", PYTHON)
        self.who = unprivileged()
        self.proc = subprocess.Popen([*self.who, "unshare", "-U", "-r", "-n", "sleep", "600"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.pid = self.proc.pid
        # the sleep runs in its own namespaces once its user namespace differs from ours
        wait_for(lambda: self._own_ns() or self.proc.poll() is not None, what="unshare")
        assert self.proc.poll() is None, self.proc.stderr.read().decode()
        self.userns = f"/proc/{self.pid}/ns/user"
        self.netns = f"/proc/{self.pid}/ns/net"
        self.script = tmp / "lease.sh"
        self.script.write_text(LEASE_SCRIPT + "\n")
        self.script.chmod(0o755)

    def _own_ns(self) -> bool:
        try:
            return os.readlink(f"/proc/{self.pid}/ns/user") != os.readlink("/proc/self/ns/user")
        except OSError:
            return False

    def exec(self, *cmd: str, check: bool = True, timeout: float = 60):
        if cmd[0] == sys.executable:                    # test_slirp_fastpath's client
            cmd = (PYTHON, *cmd[1:])
        r = subprocess.run([*self.who, "nsenter", "-t", str(self.pid), "-U", "-n",
                            "--preserve-credentials", *cmd], capture_output=True, text=True,
                           timeout=timeout, check=False)
        if check and r.returncode:
            raise AssertionError(f"{cmd}: {r.returncode}\n{r.stdout}{r.stderr}")
        return r

    def lease(self) -> dict[str, str]:
        r = self.exec("busybox", "udhcpc", "-i", "tap0", "-f", "-q", "-n", "-t", "5", "-T", "1",
                      "-s", str(self.script), check=False, timeout=30)
        lease = [ln for ln in r.stdout.splitlines() if ln.startswith("LEASE ")]
        assert lease, r.stdout + r.stderr
        return dict(kv.split("=", 1) for kv in lease[0].split()[1:])

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def container(sockdir):
    c = Container(sockdir)
    yield c
    c.close()


@pytest.fixture
def slirp_on_tap(container, sockdir):
    made = []

    def start(*args: str) -> Slirp:
        s = Slirp("tap://tap0", sockdir, "--netns", container.netns, "--userns",
                  container.userns, *args)
        made.append(s)
        return s
    yield start
    for s in made:
        s.stop()


@pytest.mark.parametrize("mtu", [1500, 65520])
@pytest.mark.parametrize("mode", ["C", "--no-fast-path"])
def test_rootless_container_lease_and_bulk_both_ways(mode, mtu, container, slirp_on_tap):
    s = slirp_on_tap("-D", "--mtu", str(mtu), *([] if mode == "C" else [mode]))
    assert f"mtu {mtu} " in container.exec("ip", "-o", "link", "show", "tap0").stdout
    lease = container.lease()
    assert lease["ip"] == "10.0.2.15" and lease["router"] == "10.0.2.2", lease
    assert lease["mtu"] == str(mtu), lease
    server = HashServer()
    try:
        transfer(container, server)
    finally:
        server.close()
    line = report(s)
    if mode == "C":
        handed, _ = handed_and_taken_back(s)
        assert handed >= 1, line
    else:
        assert "handed to C" not in line, line


def test_forward_into_the_container(container, slirp_on_tap):
    """-L: a host connection to 127.0.0.1:PORT reaches a server inside the container."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    slirp_on_tap("-D", "-L", f"{port}:10.0.2.15:7777")
    container.lease()
    server = subprocess.Popen(
        [*container.who, "nsenter", "-t", str(container.pid), "-U", "-n",
         "--preserve-credentials", PYTHON, "-c",
         INSIDE_SERVER],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: ":7777 " in container.exec("ss", "-Hltn", check=False).stdout
                 or server.poll() is not None, 10, what="the server in the container")
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                    c.sendall(b"hello")
                    got = c.recv(100)
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert got == b"inside:hello"
    finally:
        server.kill()
        server.wait()


def test_a_namespace_that_is_not_there(sockdir):
    r = subprocess.run([*unprivileged(), PYVDE_SLIRP, "-s", "tap://tap0", "--netns",
                        str(sockdir / "nothing")], capture_output=True, text=True, timeout=20,
                       check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == (f"pyvde-slirp: network namespace {sockdir / 'nothing'}:"
                                " No such file or directory"), r.stderr


def test_a_namespace_it_may_not_enter(netns):
    """A network namespace owned by root: an unprivileged pyvde-slirp is refused, and
    says so (slirp4netns would need root here too)."""
    ns = netns()
    r = subprocess.run([*unprivileged(), PYVDE_SLIRP, "-s", "tap://tap0", "--netns",
                        f"/run/netns/{ns.name}"], capture_output=True, text=True, timeout=20,
                       check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == (f"pyvde-slirp: cannot enter network namespace"
                                f" /run/netns/{ns.name}: Operation not permitted"), r.stderr
    assert "tap0" not in ns.exec("ip", "-o", "link").stdout
