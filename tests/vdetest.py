"""Test helpers: real processes (pyvde-switch, Debian's vde_switch and vde_plug), a raw
VDE client for crafting requests, the management console, and network namespaces.

Every helper waits on a condition with a deadline instead of sleeping blindly.
"""
from __future__ import annotations

import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from switchd import control_request

BIN = Path(sys.executable).parent
PYVDE_SWITCH = str(BIN / "pyvde-switch")
IN_CI = os.environ.get("CI") == "true"


def need(ok: bool, what: str) -> None:
    """A missing prerequisite fails the run under CI=true and skips elsewhere."""
    if ok:
        return
    if IN_CI:
        pytest.fail(f"missing prerequisite (CI=true): {what}")
    pytest.skip(f"missing prerequisite: {what}")


def need_tool(*names: str) -> None:
    for name in names:
        need(shutil.which(name) is not None, f"{name} (apt-get install vde2 ... see README)")


def need_root() -> None:
    need(os.geteuid() == 0, "root")


def wait_for(cond, timeout: float = 5.0, interval: float = 0.02, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def data_sockets(directory) -> list[str]:
    """The switch's NNN.F data sockets (clients' own .PID-SEQ sockets come and go)."""
    return sorted(f for f in os.listdir(directory) if re.fullmatch(r"\d{3,}\.\d+", f))


def wait_data_sockets(directory, count: int, timeout: float = 5.0) -> list[str]:
    return wait_for(lambda: len(data_sockets(directory)) == count and data_sockets(directory),
                    timeout, what=f"{count} data sockets in {directory}")


def mac(text: str) -> bytes:
    return bytes(int(x, 16) for x in text.split(":"))


def frame(dst: str, src: str, payload: bytes = b"", ethertype: int = 0x88B5) -> bytes:
    return mac(dst) + mac(src) + struct.pack(">H", ethertype) + payload


# ------------------------------------------------------------------ console

class Console:
    """A management console client speaking vde_switch's framing (wirefilter's with
    prompt=b"\nVDEwf$ ")."""

    def __init__(self, path: str, timeout: float = 5.0, prompt: bytes = b"\nvde$ "):
        self.prompt = prompt
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while True:     # a switch's mgmt file exists from bind(); connect works from listen()
            try:
                self.sock.connect(path)
                break
            except (ConnectionRefusedError, FileNotFoundError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        self.banner = self.read_until(b"$ ")

    def read_until(self, marker: bytes) -> bytes:
        data = b""
        while not data.endswith(marker):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(data)
            data += chunk
        return data

    def raw(self, line: str) -> bytes:
        """Sends one line and returns everything up to and including the next prompt."""
        self.sock.sendall(line.encode() + b"\n")
        return self.read_until(self.prompt)

    def cmd(self, line: str) -> tuple[list[str], str]:
        """(data block lines, status line) of one command."""
        text = self.raw(line).decode()[: -len(self.prompt)]
        lines = text.split("\n")
        status = lines[-2] if text.endswith("\n") else lines[-1]
        data: list[str] = []
        if "0000 DATA END WITH '.'" in lines:
            start = lines.index("0000 DATA END WITH '.'") + 1
            end = lines.index(".", start)
            data = lines[start:end]
        return data, status

    def ok(self, line: str) -> list[str]:
        data, status = self.cmd(line)
        assert status == "1000 Success", f"{line!r} -> {status}"
        return data

    def close(self) -> None:
        self.sock.close()


class UnixTerm:
    """Debian's unixterm: stdin relayed to the socket, the socket to stdout; prompt is the
    one that ends each reply (vde_switch's by default)."""

    def __init__(self, path: str, prompt: bytes = b"\nvde$ "):
        self.prompt = prompt
        self.proc = subprocess.Popen(["unixterm", path], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE)
        self.out = b""

    def wait_for(self, marker: bytes, count: int = 1, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while self.out.count(marker) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"unixterm: no {marker!r} (x{count}) in {self.out!r}"
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = self.proc.stdout.read1(65536)
                assert chunk, f"unixterm ended early: {self.out!r}"
                self.out += chunk

    def type(self, line: str) -> None:
        """Types a line and waits for the prompt that ends its reply."""
        prompts = self.out.count(self.prompt)
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        self.wait_for(self.prompt, prompts + 1)

    def logout(self) -> int:
        self.proc.stdin.write(b"logout\n")
        self.proc.stdin.flush()
        self.out += self.proc.stdout.read()
        return self.proc.wait(5)


# ------------------------------------------------------------------ switches

class SwitchProcess:
    """pyvde-switch (or Debian's vde_switch) running in the background."""

    def __init__(self, directory: Path, *args: str, mgmt: bool = True, program: str | None = None,
                 stdin=subprocess.DEVNULL, wait: bool = True):
        self.dir = Path(directory)
        self.dir_existed = self.dir.exists()
        self.mgmt_path = str(self.dir) + ".mgmt" if mgmt else None
        self.log_path = Path(str(self.dir) + ".log")
        program = program or PYVDE_SWITCH
        cmd = [program, "-s", str(self.dir)]
        if mgmt:
            cmd += ["-M", self.mgmt_path]
        cmd += list(args)
        if program == PYVDE_SWITCH and stdin is subprocess.DEVNULL:
            cmd.append("--nostdin")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdin=stdin, stdout=self.log, stderr=subprocess.STDOUT)
        if wait:
            wait_for(lambda: (self.dir / "ctl").exists() or self.proc.poll() is not None,
                     what=f"{cmd} to create its ctl socket")
            assert self.proc.poll() is None, f"switch exited: {self.log_text()}"
            if mgmt:
                wait_for(lambda: os.path.exists(self.mgmt_path), what="mgmt socket")

    def console(self) -> Console:
        return Console(self.mgmt_path)

    def command(self, line: str) -> list[str]:
        """The data lines of a command that must succeed."""
        c = self.console()
        try:
            return c.ok(line)
        finally:
            c.close()

    def try_command(self, line: str) -> tuple[list[str], str]:
        """(data lines, status line) of a command that may fail."""
        c = self.console()
        try:
            return c.cmd(line)
        finally:
            c.close()

    def log_text(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text()

    def wait_log(self, pattern: str, timeout: float = 5.0) -> re.Match:
        return wait_for(lambda: re.search(pattern, self.log_text()), timeout,
                        what=f"log line matching {pattern!r}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


# ------------------------------------------------------------------ clients

class VdePlug:
    """Debian's vde_plug bridging a switch to our pipes as the 2-byte length stream."""

    def __init__(self, vnl: str, *args: str):
        need_tool("vde_plug")
        self.proc = subprocess.Popen(["vde_plug", *args, vnl], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        os.set_blocking(self.proc.stdout.fileno(), False)
        self._buf = b""
        self._frames: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.proc.stdin.write(struct.pack(">H", len(data)) + data)
        self.proc.stdin.flush()

    def _read(self) -> bool:
        """Reads what is available into parsed frames; False if nothing was there."""
        try:
            chunk = os.read(self.proc.stdout.fileno(), 1 << 20)
        except BlockingIOError:
            return False
        if chunk == b"":
            raise EOFError("vde_plug exited: " + self.proc.stderr.read().decode())
        self._buf += chunk
        while len(self._buf) >= 2:
            n = struct.unpack(">H", self._buf[:2])[0]
            if len(self._buf) < 2 + n:
                break
            self._frames.append(self._buf[2:2 + n])
            self._buf = self._buf[2 + n:]
        return True

    def recv(self, timeout: float = 3.0) -> bytes:
        deadline = time.monotonic() + timeout
        while not self._frames:
            if not self._read():
                if time.monotonic() > deadline:
                    raise TimeoutError("no frame arrived")
                time.sleep(0.005)
        return self._frames.pop(0)

    def recv_all(self, wait: float = 0.3) -> list[bytes]:
        """Every frame that arrives until `wait` seconds pass without one."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self._read():
                deadline = time.monotonic() + wait
            else:
                time.sleep(0.005)
        got, self._frames = self._frames, []
        return got

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class RawClient:
    """A VDE client written from the protocol, for requests no real client would send."""

    def __init__(self, switch_dir: Path, tmp: Path, name: str = "raw"):
        self.ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.ctl.settimeout(5)
        self.ctl.connect(str(Path(switch_dir) / "ctl"))
        self.path = str(Path(tmp) / f"{name}.{os.getpid()}.{id(self)}")
        self.data = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.data.bind(self.path)
        self.data.settimeout(3)

    def handshake(self, port: int | None = None, description: str = "raw", version: int = 3) -> str:
        self.ctl.sendall(control_request.build(self.path, port, description, version))
        reply = self.ctl.recv(200)
        switch_path = control_request.parse_reply(reply)
        self.data.connect(switch_path)
        return switch_path

    def send_request(self, data: bytes) -> bytes:
        """Sends raw bytes; returns what the switch answers before closing ('' on EOF)."""
        self.ctl.sendall(data)
        return self.ctl.recv(200)

    def send(self, data: bytes) -> None:
        self.data.send(data)

    def recv(self, timeout: float = 3.0) -> bytes:
        self.data.settimeout(timeout)
        return self.data.recv(70000)

    def recv_none(self, wait: float = 0.3) -> None:
        self.data.settimeout(wait)
        try:
            got = self.data.recv(70000)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected frame {got[:20].hex()}...")

    def close(self) -> None:
        self.ctl.close()
        self.data.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


# ------------------------------------------------------------------ namespaces

def run(*cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, **kw)


class Netns:
    """A network namespace made by a test; deleted with everything in it."""

    counter = 0

    def __init__(self, prefix: str = "pyvde"):
        need_root()
        need_tool("ip")
        Netns.counter += 1
        self.name = f"{prefix}{os.getpid() % 10000}x{Netns.counter}"
        r = run("ip", "netns", "add", self.name, check=False)
        need(r.returncode == 0, f"network namespaces (ip netns add: {r.stderr.strip()})")
        self.exec("ip", "link", "set", "lo", "up")

    def exec(self, *cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return run("ip", "netns", "exec", self.name, *cmd, check=check, timeout=timeout)

    def popen(self, *cmd: str, **kw) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.name, *cmd], **kw)

    def add_tap(self, name: str, addr: str, mtu: int | None = None) -> None:
        self.exec("ip", "tuntap", "add", "dev", name, "mode", "tap")
        if mtu:
            self.exec("ip", "link", "set", name, "mtu", str(mtu))
        self.exec("ip", "addr", "add", addr, "dev", name)
        self.exec("ip", "link", "set", name, "up")

    def ping(self, addr: str, count: int = 3, timeout: float = 20) -> subprocess.CompletedProcess:
        return self.exec("ping", "-c", str(count), "-W", "2", "-i", "0.2", addr, check=False,
                         timeout=timeout)

    def delete(self) -> None:
        run("ip", "netns", "delete", self.name, check=False)
